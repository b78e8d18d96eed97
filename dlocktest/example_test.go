package dlocktest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// In a test of your own code, NewServer starts a real dlock server on a
// loopback port and stops it when the test ends; Dial registers clients
// that are closed then too. (t is the test's *testing.T; the example runs
// the body through runTest because examples have none.)
func ExampleNewServer() {
	runTest(func(t testing.TB) {
		srv := dlocktest.NewServer(t, nil)
		worker, other := srv.Dial(t), srv.Dial(t)

		ctx := context.Background()
		lw, err := worker.OpenLock(ctx, "jobs/42", dlock.LockOptions{Type: dlock.Atomic, TTL: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		lo, err := other.OpenLock(ctx, "jobs/42", dlock.LockOptions{Type: dlock.Atomic, TTL: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := lw.TryLock(ctx); !ok || err != nil {
			t.Fatalf("worker: TryLock = %v, %v", ok, err)
		}
		ok, err := lo.TryLock(ctx)
		fmt.Println("the other client gets it too:", ok, err)
	})
	// Output: the other client gets it too: false <nil>
}

// NewTLSServer is the same with mutual TLS and a throwaway PKI; its Dial
// presents a client certificate of that PKI.
func ExampleNewTLSServer() {
	runTest(func(t testing.TB) {
		srv := dlocktest.NewTLSServer(t, nil)
		c := srv.Dial(t)
		fmt.Println("heartbeat over TLS:", c.Heartbeat(context.Background()))
	})
	// Output: heartbeat over TLS: <nil>
}

// runTest runs body with a stand-in for *testing.T, running its cleanups
// at the end.
func runTest(body func(t testing.TB)) {
	t := &exampleT{}
	defer t.cleanup()
	body(t)
}

type exampleT struct {
	testing.TB // the methods not overridden below are not used
	cleanups   []func()
	dirs       []string
}

func (t *exampleT) Helper()                      {}
func (t *exampleT) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatal(args ...any)            { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleT) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, f+"\n", args...) }
func (t *exampleT) TempDir() string {
	d, err := os.MkdirTemp("", "dlocktest-example")
	if err != nil {
		panic(err)
	}
	t.dirs = append(t.dirs, d)
	return d
}

func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}
