package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// blockfs runs as a mount helper in two ways: mount(8) runs
// /sbin/mount.fuse.blockfs (or mount.blockfs) as `NAME STORE MOUNTPOINT
// [-o OPTS] [-n] [-s] [-v]`, and fuse3's mount.fuse3 runs the type's
// subtype from PATH as `blockfs STORE MOUNTPOINT [-o OPTS]`. Both become
// `blockfs mount --daemon --store STORE [flags from OPTS] MOUNTPOINT`.

// helperNames are the names under which argv[0] makes us a mount helper.
var helperNames = map[string]bool{"mount.blockfs": true, "mount.fuse.blockfs": true}

// isHelperName reports whether blockfs was invoked as a mount helper.
func isHelperName(argv0 string) bool { return helperNames[filepath.Base(argv0)] }

// looksLikeHelperCall reports whether args (not starting with a command)
// are `STORE MOUNTPOINT ...`, as mount.fuse3 passes them: a store that
// reads as a path or URL and a directory. A mistyped command (`blockfs
// mout /mnt`) is neither, and gets "unknown command".
func looksLikeHelperCall(args []string) bool {
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		return false
	}
	store := args[0]
	if !strings.ContainsAny(store, "/:") {
		if _, err := os.Stat(store); err != nil {
			return false
		}
	}
	fi, err := os.Stat(args[1])
	return err == nil && fi.IsDir()
}

// ignoredOptions are the generic mount options mount(8) and mount.fuse3
// pass to every helper; like other FUSE file systems we accept and ignore
// them (the kernel mount is always ro,nosuid,nodev).
var ignoredOptions = map[string]bool{
	"ro": true, "defaults": true, "auto": true, "noauto": true, "user": true, "users": true, "nouser": true,
	"owner": true, "group": true, "dev": true, "nodev": true, "suid": true, "nosuid": true,
	"exec": true, "noexec": true, "_netdev": true, "nofail": true, "async": true, "sync": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true, "strictatime": true,
	"nodiratime": true, "diratime": true, "lazytime": true, "nolazytime": true, "dirsync": true,
	"silent": true, "loud": true, "default_permissions": true,
}

// ignoredPrefixes are option families meant for others: systemd's
// x-systemd.*, userspace x-*, comment=, and the names mount.fuse3 may
// forward (fsname, subtype).
var ignoredPrefixes = []string{"x-", "comment=", "fsname=", "subtype="}

// optionAliases spell flags the way FUSE options usually are.
var optionAliases = map[string]string{"nonempty": "allow-non-empty"}

// helperArgs turns a helper's arguments into those of `blockfs mount`,
// checking every -o option against the mount's flags in fl.
func helperArgs(args []string, fl *pflag.FlagSet) ([]string, error) {
	var pos, flags []string
	daemon := true
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || strings.HasPrefix(a, "-o"):
			list := strings.TrimPrefix(a, "-o")
			if list == "" {
				if i+1 >= len(args) {
					return nil, usagef("-o needs options")
				}
				i++
				list = args[i]
			}
			opts, fg, err := mountOptions(list, fl)
			if err != nil {
				return nil, err
			}
			flags = append(flags, opts...)
			daemon = daemon && !fg
		case a == "-n" || a == "-s" || a == "-v":
			// no mtab, sloppy, verbose: mount(8)'s business, not ours
		case strings.HasPrefix(a, "-"):
			return nil, usagef("unknown mount helper flag %s (want STORE MOUNTPOINT [-o OPTIONS])", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, usagef("as a mount helper: want STORE MOUNTPOINT [-o OPTIONS], got %d arguments", len(pos))
	}
	out := []string{"mount", "--store", pos[0]}
	if daemon {
		out = append(out, "--daemon")
	}
	return append(append(out, flags...), "--", pos[1]), nil
}

// mountOptions turns one -o list into flags. foreground reports whether
// the list asked to stay in the foreground.
func mountOptions(list string, fl *pflag.FlagSet) (flags []string, foreground bool, err error) {
	for _, o := range strings.Split(list, ",") {
		name, value, hasValue := strings.Cut(o, "=")
		switch {
		case o == "":
		case o == "rw":
			return nil, false, usagef("option rw: blockfs is a read-only file system: give ro (mount passes rw when ro is missing)")
		case o == "foreground":
			foreground = true
		case ignoredOptions[o] || hasAnyPrefix(o, ignoredPrefixes):
		default:
			flag := strings.ReplaceAll(name, "_", "-")
			if alias, ok := optionAliases[name]; ok {
				flag = alias
			}
			f := fl.Lookup(flag)
			if f == nil || f.Hidden || flag == "daemon" || flag == "store" && !hasValue {
				if _, isAlias := optionAliases[name]; isAlias {
					continue // a flag this build lacks: accept the option, as helpers do
				}
				return nil, false, usagef("unknown mount option %q (-o NAME=VALUE sets the mount flag --NAME)", o)
			}
			if !hasValue {
				if f.Value.Type() != "bool" {
					return nil, false, usagef("mount option %s needs a value: %s=VALUE", name, name)
				}
				flags = append(flags, "--"+flag)
				continue
			}
			flags = append(flags, "--"+flag+"="+value)
		}
	}
	return flags, foreground, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
