package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"hongbao/internal/schedbatch"
)

// errUsage marks a bad command line; main exits 2 on it.
var errUsage = errors.New("usage")

// command is a subcommand's flag set with its help: flags are shown in
// named groups, followed by an example. Every flag can also be given as an
// environment variable HONGBAO_<NAME> (upper case, '-' as '_'); the command
// line wins.
type command struct {
	name, summary, example string
	fs                     *flag.FlagSet
	groups                 []flagGroup
}

type flagGroup struct {
	title string
	names []string
}

func newCommand(name, summary, example string) *command {
	c := &command{name: name, summary: summary, example: example, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(io.Discard)
	return c
}

// group declares the flags that define adds under a heading of the help.
func (c *command) group(title string, define func(fs *flag.FlagSet)) {
	before := map[string]bool{}
	c.fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	define(c.fs)
	g := flagGroup{title: title}
	c.fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			g.names = append(g.names, f.Name)
		}
	})
	c.groups = append(c.groups, g)
}

func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: hongbao %s [flags]\n\n%s\n", c.name, c.summary)
	for _, g := range c.groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, n := range g.names {
			f := c.fs.Lookup(n)
			kind, text := flag.UnquoteUsage(f)
			head := "  --" + f.Name
			if kind != "" {
				head += " " + kind
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "%-30s %s%s [%s]\n", head, text, def, envName(f.Name))
		}
	}
	if c.example != "" {
		fmt.Fprintf(w, "\nExample:\n  %s\n", c.example)
	}
}

func envName(flagName string) string {
	return "HONGBAO_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads args, then the environment for flags not on the command
// line. --help prints the help and returns flag.ErrHelp; a bad flag or
// value returns an error wrapping errUsage that says what is wrong.
func (c *command) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(os.Stdout)
			return flag.ErrHelp
		}
		return fmt.Errorf("%w: %s: %v (see 'hongbao %s --help')", errUsage, c.name, err, c.name)
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q (see 'hongbao %s --help')", errUsage, c.name, c.fs.Arg(0), c.name)
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%w: %s: %s=%q: %v", errUsage, c.name, envName(f.Name), v, e)
			}
		}
	})
	return err
}

// schedBatchFlag defines --sched-batch on fs.
func schedBatchFlag(fs *flag.FlagSet, on *bool) {
	fs.BoolVar(on, "sched-batch", true, "run under Linux SCHED_BATCH: a woken reader does not preempt the writer, so fewer context switches")
}

// applySchedBatch puts the process in SCHED_BATCH when on; a failure only
// costs speed, so it is logged, not fatal.
func applySchedBatch(on bool, log *slog.Logger) {
	if !on {
		return
	}
	if err := schedbatch.Apply(); err != nil {
		log.Warn("staying in the default scheduling policy", "err", err)
	}
}

// usageErr reports a bad flag value found after parsing.
func (c *command) usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s (see 'hongbao %s --help')", errUsage, c.name, fmt.Sprintf(format, a...), c.name)
}

// printJSON writes a command's report to stdout as indented JSON, the
// format other tools read.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printReport prints a benchmark's report (also a partial one that comes
// with an error) and passes the error on.
func printReport[R any](cmd string, rep *R, err error) error {
	if rep != nil {
		if e := printJSON(rep); e != nil {
			return e
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}
