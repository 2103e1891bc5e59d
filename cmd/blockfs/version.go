package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"
)

// version is the release this source is; the build info adds the commit.
const version = "0.1.0"

// Set by the Makefile with -ldflags -X (see its LDFLAGS). The build info
// knows the commit's time but not the build's, and the go command stamps
// no commit at all in a linked git worktree (it only takes a .git
// directory for a repository root, golang/go#58218) or a wrong one in a
// worktree nested in another checkout; git itself, asked by make, knows.
// A plain `go build` in a clone falls back to the build info.
var (
	buildDate  = ""
	commit     = ""
	commitTime = ""
	modified   = ""
)

func init() {
	register(&command{
		name:    "version",
		summary: "print the version, commit, build date and Go version",
		help:    "Also 'blockfs --version'. The commit comes from the Go build info (VCS stamping).",
		setup:   setupVersion,
	})
}

// versionInfo is what `blockfs version --json` prints.
type versionInfo struct {
	Version    string `json:"version"`
	Module     string `json:"module_version,omitempty"`
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	BuildDate  string `json:"build_date,omitempty"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

func readVersion() versionInfo {
	v := versionInfo{Version: version, BuildDate: buildDate, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Module = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if commit != "" {
		v.Commit, v.CommitTime, v.Modified = commit, commitTime, modified == "true"
	}
	return v
}

func (v versionInfo) String() string {
	commit := v.Commit
	if commit == "" {
		commit = "unknown (built without VCS stamping)"
	} else if v.Modified {
		commit += " (modified)"
	}
	s := fmt.Sprintf("blockfs %s\ncommit:    %s\n", v.Version, commit)
	if v.CommitTime != "" {
		s += fmt.Sprintf("committed: %s\n", v.CommitTime)
	}
	if v.BuildDate != "" {
		s += fmt.Sprintf("built:     %s\n", v.BuildDate)
	}
	return s + fmt.Sprintf("go:        %s %s\n", v.Go, v.Platform)
}

func setupVersion(fl *pflag.FlagSet) runFunc {
	asJSON := fl.Bool("json", false, "print JSON")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) != 0 {
			return usagef("version takes no arguments")
		}
		v := readVersion()
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		_, err := fmt.Fprint(e.stdout, v)
		return err
	}
}
