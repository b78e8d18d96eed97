// Command dlockctl is the dlock operator and user CLI.
//
//	dlockctl bench [flags]                  load generator (see dlockctl bench -h)
//	dlockctl lock -addr A -name N -- cmd…   run cmd while holding a lock
//	dlockctl stats -addr A                  print the server's debug counters
//	dlockctl locks [-prefix P] [-json]      list locks, holders and waiters
//	dlockctl top                            most contended locks, refreshing
//	dlockctl release -force NAME            take a lock away from its holders
//	dlockctl -version                       version and VCS revision
//	dlockctl cluster -etcd URLS -cluster C  show a highly available cluster: primary, epoch, standbys (per shard, with slot ranges, when sharded)
//	dlockctl cluster init -shards A,B,C     write a sharded cluster's slot map, split evenly
//	dlockctl cluster move [-wait] SLOTS TO  move slots (100-199,512) to shard TO
//	dlockctl cluster rebalance              split the slots evenly, shards that joined included
//	dlockctl cluster remove SHARD           hand a shard's slots to the others, then drop it from the map
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

	"github.com/dlock-io/dlock/internal/buildinfo"
)

func main() {
	ctx, stop := notifyContext(context.Background())
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var exit exitError
	var usage usageError
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0) // -h asked for help and got it
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "dlockctl:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "dlockctl:", err)
		os.Exit(1)
	}
}

// notifyContext is signal.NotifyContext for SIGINT and SIGTERM that also
// remembers which signal arrived (see signalOf).
func notifyContext(parent context.Context) (context.Context, func()) {
	sig := new(syscall.Signal)
	ctx, cancel := context.WithCancel(context.WithValue(parent, sigKey{}, sig))
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			*sig = s.(syscall.Signal)
			cancel()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
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
  locks   list locks with their holders and waiters (-prefix, -json)
  top     a refreshing view of the most contended locks
  release force-release a lock from its holders (release -force NAME)
  version print the version and VCS revision of this binary (also -version)
  cluster show a highly available cluster (primary, epoch, standbys; shards and slot ranges) from etcd;
          cluster init -shards A,B,C writes a sharded cluster's slot map;
          cluster move [-wait] SLOTS TO moves slots (100-199,512) to shard TO;
          cluster rebalance splits the slots evenly, shards that joined included
          (a shard that joins does this itself unless its dlockd runs with -auto-rebalance=false);
          cluster remove SHARD hands SHARD's slots to the other shards, then drops it from the map
          (its processes may stop then; a shard that is merely down keeps its slots)

Run "dlockctl <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError("no command")
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
	case "locks":
		return runLocks(ctx, args[1:], stdout, stderr)
	case "top":
		return runTop(ctx, args[1:], stdout, stderr)
	case "release":
		return runRelease(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "dlockctl", buildinfo.Read())
		return nil
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError(fmt.Sprintf("unknown command %q", args[0]))
}
