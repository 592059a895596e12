// Command hongbao runs the red-packet access server, its load client, a
// one-command demo and a benchmark. main only dispatches to a subcommand
// and maps its error to an exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

type subcommand struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

var subcommands = []subcommand{
	{"server", "run the access server", runServer},
	{"load", "simulate users at a global shake rate", runLoad},
	{"demo", "start a server and a load client on loopback, print a summary", runDemo},
	{"bench", "measure server and client as processes, print JSON", runBench},
	{"token", "mint a login token for a user", runToken},
	{"audit", "check a ledger's invariants (offline or on a running server)", runAudit},
	{"ledger", "operator actions on a ledger file: repair", runLedger},
	{"bench-ledger", "measure durable grants/s and shakes with the ledger on vs off, print JSON", runBenchLedger},
	{"monitor", "merge per-second samples, live dashboard, record a series", runMonitor},
	{"run", "the seed's scenario at scale: nodes, clients, three phases, a report", runRun},
	{"plot", "render a recorded series as a self-contained HTML report with charts", runPlot},
}

func usage() {
	fmt.Fprintf(os.Stderr, "hongbao: red packets for a million connections\n\nUsage: hongbao <command> [flags]\n\nCommands:\n")
	for _, c := range subcommands {
		fmt.Fprintf(os.Stderr, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'hongbao <command> --help' for a command's flags.\n")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:])
	stop()
	os.Exit(exitCode(err))
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		usage()
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage()
		return nil
	}
	for _, c := range subcommands {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	usage()
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// exitCode maps an error to the process's exit status: 0 success or help,
// 2 bad usage (already explained), 1 anything else.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		if err != errUsage {
			fmt.Fprintln(os.Stderr, "hongbao:", err)
		}
		return 2
	}
	fmt.Fprintln(os.Stderr, "hongbao:", err)
	return 1
}
