package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"hongbao/internal/ledger"
)

// ledgerCommands are the subcommands of 'hongbao ledger'.
var ledgerCommands = []subcommand{
	{"repair", "rewrite a damaged ledger keeping every intact record; the dropped bytes go to a side file", runLedgerRepair},
}

func ledgerUsage() {
	fmt.Fprintf(os.Stderr, "Usage: hongbao ledger <command> [flags]\n\nOperator actions on a ledger file (a server must not have it open).\n\nCommands:\n")
	for _, c := range ledgerCommands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'hongbao ledger <command> --help' for a command's flags.\n")
}

func runLedger(ctx context.Context, args []string) error {
	if len(args) == 0 {
		ledgerUsage()
		return fmt.Errorf("%w: ledger: a command is required (see 'hongbao ledger --help')", errUsage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		ledgerUsage()
		return nil
	}
	for _, c := range ledgerCommands {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	ledgerUsage()
	return fmt.Errorf("%w: ledger: unknown command %q", errUsage, args[0])
}

func runLedgerRepair(_ context.Context, args []string) error {
	var (
		dir    string
		asJSON bool
	)
	c := newCommand("ledger repair", "Repair a ledger that the server refuses to start on (damage followed by intact records): keep every intact record, those after the damage too, in their order; "+
		"put a repair record where each damaged span was; write the dropped bytes, in hex with their offsets, to a side file ledger.log.dropped-TIME in the same directory; "+
		"replace the file atomically (new file, fsync, rename, fsync of the directory). A clean ledger is left untouched. Run 'hongbao audit --data-dir DIR' before and after: "+
		"records that depended on what was dropped (a funding, a balance) show there as violations.",
		"hongbao ledger repair --data-dir ./hongbao-data")
	c.group("Ledger", func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "data-dir", "", "the ledger's directory (the server's --data-dir); the server must be stopped")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print what was done as JSON")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if dir == "" {
		return c.usageErr("--data-dir is required")
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.FileName)); err != nil {
		return fmt.Errorf("ledger repair: no ledger in %s: %w", dir, err)
	}
	res, err := ledger.Repair(dir, time.Now())
	if err != nil {
		return fmt.Errorf("ledger repair: %w", err)
	}
	if asJSON {
		return printJSON(res)
	}
	if len(res.Dropped) == 0 {
		fmt.Printf("%s: %d bytes, %d intact records, no damage: nothing to repair\n", res.Path, res.SizeBefore, res.Records)
		return nil
	}
	fmt.Printf("%s: %d bytes, %d intact records; damaged spans: %d (%d bytes)\n", res.Path, res.SizeBefore, res.Records, len(res.Dropped), res.DroppedBytes)
	for _, d := range res.Dropped {
		tail := ""
		if d.Tail {
			tail = ", a torn tail"
		}
		fmt.Printf("  dropped %d bytes at offset %d (%s%s); %d intact records follow it\n", d.Length, d.Offset, d.Reason, tail, d.After)
	}
	fmt.Printf("dropped bytes kept in %s (hex, with their offsets)\n", res.SideFile)
	fmt.Printf("rewrote %s: %d bytes, all %d intact records kept, a repair record where each damaged span was\n", res.Path, res.SizeAfter, res.Records)
	fmt.Printf("next: hongbao audit --data-dir %s   (records that depended on the dropped bytes show there as violations)\n", shellArg(dir))
	return nil
}

// ledgerRefusal is the server's answer to a ledger it must not open: a
// damaged one (with what to run next) or one in use. Not a usage error:
// the command line was right, so the exit status is 1.
func ledgerRefusal(dir string, err error) error {
	var ce *ledger.CorruptError
	if !errors.As(err, &ce) {
		return fmt.Errorf("server: refusing to start: %w", err)
	}
	return fmt.Errorf("server: refusing to start: %w; cutting the file there would drop those durable records.\n"+
		"  inspect: hongbao audit --data-dir %s\n"+
		"  repair:  hongbao ledger repair --data-dir %s   (keeps every intact record; the damaged bytes go to a side file)",
		ce, shellArg(dir), shellArg(dir))
}

// shellArg quotes s for a shell when it needs it.
func shellArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
		return s
	}
	return strconv.Quote(s)
}
