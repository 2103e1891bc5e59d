// Command blockfs imports data into a blockfs store, mounts it read-only
// with FUSE and shows what a mount's shared buffer pool is doing.
//
// Exit status: 0 on success, 2 on usage errors, 1 on any other failure.
// Errors go to stderr as one line: what failed, on what, and why.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// command is one subcommand: its flags, its help and what it does.
type command struct {
	name    string
	args    string // synopsis after the flags, e.g. "SRC [DEST]"
	summary string
	help    string
	setup   func(fl *pflag.FlagSet) runFunc
}

// runFunc runs a command once its flags are parsed.
type runFunc func(ctx context.Context, e env, args []string) error

// env is what a command runs in besides its flags and arguments: where its
// output goes. It is passed explicitly, rather than in the context, so that
// tests can run commands in-process with their own writers and the
// compiler checks every command gets one.
type env struct {
	stdout, stderr io.Writer
	// argv is the command line as run (command first, after mount-helper
	// translation), for a command that re-executes itself (--daemon).
	argv []string
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// usageError is a mistake in how blockfs was called: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitError ends a command with a status of its own (import's 23 for some
// paths not imported, 130/143 for an interrupt); its message, if any, is
// printed like any error.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

func main() {
	args := os.Args[1:]
	if isHelperName(os.Args[0]) {
		args = append([]string{helperCall}, args...)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// helperCall marks arguments that are a mount helper's, whatever argv[0].
const helperCall = "\x00helper"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printOverview(stderr)
		return 2
	}
	args, err := normalize(args)
	if err != nil {
		fmt.Fprintf(stderr, "blockfs: %v (see 'blockfs help mount')\n", err)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		return runHelp(rest, stdout, stderr)
	case "--version", "-V":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "blockfs: unknown command %q%s (see 'blockfs help')\n", name, suggest(name))
		return 2
	}
	fl := newFlagSet(c)
	fl.SetOutput(io.Discard)
	runFn := c.setup(fl)
	if err := fl.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			printUsage(stdout, c, fl)
			return 0
		}
		fmt.Fprintf(stderr, "blockfs %s: %v (see 'blockfs help %s')\n", name, err, name)
		return 2
	}
	ctx, stop := withSignals(context.Background())
	defer stop()
	err = runFn(ctx, env{stdout: stdout, stderr: stderr, argv: args}, fl.Args())
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "blockfs %s: %v (see 'blockfs help %s')\n", name, err, name)
		return 2
	}
	code := 1
	var ee exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "blockfs %s: %s\n", name, oneLine(msg))
	}
	return code
}

// normalize turns the ways blockfs can be called into COMMAND ARGS: a
// mount helper's STORE MOUNTPOINT -o OPTS (helper.go), and flags given
// before the command (`blockfs --store S mount /mnt`).
func normalize(args []string) ([]string, error) {
	if args[0] == helperCall {
		return mountHelperArgs(args[1:])
	}
	if _, ok := commands[args[0]]; ok {
		return args, nil
	}
	if strings.HasPrefix(args[0], "-") && !isTopLevelFlag(args[0]) {
		for i, a := range args {
			if _, ok := commands[a]; ok {
				return append(append([]string{a}, args[:i]...), args[i+1:]...), nil
			}
		}
	}
	if looksLikeHelperCall(args) {
		return mountHelperArgs(args)
	}
	return args, nil
}

func isTopLevelFlag(a string) bool {
	return a == "-h" || a == "--help" || a == "--version" || a == "-V"
}

// mountHelperArgs checks a helper's options against the mount's flags.
func mountHelperArgs(args []string) ([]string, error) {
	c := commands["mount"]
	fl := newFlagSet(c)
	c.setup(fl)
	return helperArgs(args, fl)
}

// runHelp is `blockfs help [COMMAND]`.
func runHelp(rest []string, stdout, stderr io.Writer) int {
	if len(rest) == 0 || rest[0] == "help" {
		printOverview(stdout)
		return 0
	}
	c, ok := commands[rest[0]]
	if !ok {
		fmt.Fprintf(stderr, "blockfs help: unknown command %q%s (see 'blockfs help')\n", rest[0], suggest(rest[0]))
		return 2
	}
	fl := newFlagSet(c)
	c.setup(fl)
	printUsage(stdout, c, fl)
	return 0
}

// interrupted is the cause of a context ended by SIGINT or SIGTERM, so that
// a command can say which and exit 128+signal as shells expect.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + signalName(i.sig) }

func signalName(s syscall.Signal) string {
	if s == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

// withSignals returns a context cancelled, with cause interrupted, by the
// first SIGINT or SIGTERM; a second one gets the default action (the
// process dies), for a user who does not want to wait for a clean stop.
func withSignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			signal.Stop(ch)
			cancel(interrupted{s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

func newFlagSet(c *command) *pflag.FlagSet {
	fl := pflag.NewFlagSet("blockfs "+c.name, pflag.ContinueOnError)
	fl.SortFlags = false
	return fl
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, "blockfs serves shared, content-addressed data to compute jobs as a read-only filesystem.\n\n")
	fmt.Fprint(w, "Usage: blockfs COMMAND [FLAGS] [ARGS]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, "  help     show help for a command: blockfs help COMMAND\n")
	fmt.Fprint(w, "\nSTORE is a store directory; BLOCKFS_STORE supplies the default --store.\n")
	fmt.Fprint(w, "As a mount helper: mount -t fuse.blockfs STORE MOUNTPOINT -o OPTIONS (blockfs help mount).\n")
}

func printUsage(w io.Writer, c *command, fl *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: blockfs %s [FLAGS] %s\n\n%s\n", c.name, c.args, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	fmt.Fprintf(w, "\nFlags:\n%s", fl.FlagUsages())
}

// oneLine keeps an error on one line of stderr, as scripts expect.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
