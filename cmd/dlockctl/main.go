// Command dlockctl is the dlock operator and user CLI.
//
//	dlockctl bench [flags]                  load generator (see dlockctl bench -h)
//	dlockctl lock -addr A -name N -- cmd…   run cmd while holding a lock
//	dlockctl stats -addr A                  print the server's debug counters
//	dlockctl cluster -etcd URLS -cluster C  show a highly available cluster: primary, epoch, standbys
//
// bench measures N clients × M locks (lock type and mode, uncontended or
// contended, trylock or blocking lock, batches, pipelined requests) and
// prints throughput, latency quantiles from an HDR-style histogram and the
// server's CPU time per operation. With -baseline echo it measures, in the
// same run and at the same concurrency, a raw TCP ping-pong of the same frame
// sizes (44-byte request, 40-byte reply), so each figure can be read as a
// ratio to the machine's floor. -scenario runs the predefined targets.
//
// Unless -addr names a server, bench spawns one: it runs itself as
// "dlockctl serve" (a hidden subcommand) and reads the child's CPU time and
// memory from /proc.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var exit exitError
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "dlockctl:", err)
		os.Exit(1)
	}
}

// exitError is the exit status of a command run by "lock".
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: dlockctl <command> [flags]

commands:
  bench   load generator: throughput, latency and server CPU per operation
  lock    run a command while holding a lock
  stats   print a server's debug counters
  cluster show a highly available cluster (primary, epoch, standbys) from etcd

Run "dlockctl <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdin, stdout, stderr)
	case "lock":
		return runLock(ctx, args[1:], stdin, stdout, stderr)
	case "stats":
		return runStats(ctx, args[1:], stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
