package dlock_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
)

// startServer runs a server on a loopback port for the examples and returns
// its address and a function that stops it.
func startServer() (string, func()) {
	srv, err := dlockserver.New(dlockserver.Config{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }
}

// A leased exclusive lock: take it, do the work, release it. The fencing
// token lets the resource refuse a holder whose lease ran out.
func Example() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	c, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)

	l, err := c.OpenLock(ctx, "orders/42", dlock.LockOptions{Type: dlock.Atomic, TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	// Tokens grow with every grant; a fresh server starts them at the
	// current time in microseconds, above anything an earlier primary issued.
	fmt.Println("holding orders/42, fencing token issued:", l.Token() > 0)
	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: holding orders/42, fencing token issued: true
}

// TryLock does not wait: a lock held by another client reports false.
func ExampleLock_TryLock() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	a, _ := dlock.Dial(ctx, addr, nil)
	b, _ := dlock.Dial(ctx, addr, nil)
	defer a.Close()
	defer b.Close()

	la, _ := a.OpenLock(ctx, "job", dlock.LockOptions{Type: dlock.Atomic})
	lb, _ := b.OpenLock(ctx, "job", dlock.LockOptions{Type: dlock.Atomic})
	ok, _ := la.TryLock(ctx)
	fmt.Println("a:", ok)
	ok, _ = lb.TryLock(ctx)
	fmt.Println("b:", ok)
	la.Unlock(ctx)
	ok, _ = lb.TryLock(ctx)
	fmt.Println("b after a unlocked:", ok)
	// Output:
	// a: true
	// b: false
	// b after a unlocked: true
}

// Readers share an RW lock; a writer waits for them, queued on the server.
func ExampleLock_RLock() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	r, _ := dlock.Dial(ctx, addr, nil)
	w, _ := dlock.Dial(ctx, addr, nil)
	defer r.Close()
	defer w.Close()

	lr, _ := r.OpenLock(ctx, "config", dlock.LockOptions{Type: dlock.RW})
	lw, _ := w.OpenLock(ctx, "config", dlock.LockOptions{Type: dlock.RW})
	lr.RLock(ctx)
	fmt.Println("readers:", lr.State().RW().RCount)

	granted := make(chan struct{})
	go func() {
		lw.Lock(ctx) // waits on the server, woken by the push when the reader leaves
		close(granted)
	}()
	time.Sleep(10 * time.Millisecond)
	lr.Unlock(ctx)
	<-granted
	fmt.Println("writer holds it:", lw.Held())
	// Output:
	// readers: 1
	// writer holds it: true
}

// A distributed counter: FetchAndAdd returns the value before the addition.
func ExampleAtomic64_FetchAndAdd() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	c, _ := dlock.Dial(ctx, addr, nil)
	defer c.Close()

	ctr, err := c.CreateAtomic64(ctx, "sequence", 100, dlock.Atomic64Options{})
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		old, _ := ctr.FetchAndAdd(ctx, 1)
		fmt.Print(old, " ")
	}
	ok, _ := ctr.CompareAndSwap(ctx, 103, 0)
	v, _ := ctr.Load(ctx)
	fmt.Println(ok, v)
	// Output: 100 101 102 true 0
}

// Up to 31 locks in one round trip; each entry has its own result.
func ExampleClient_BatchTryLock() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	c, _ := dlock.Dial(ctx, addr, nil)
	defer c.Close()

	names := []string{"row/1", "row/2", "row/3"}
	locks := make([]*dlock.Lock, len(names))
	if err := c.BatchOpenLock(ctx, names, dlock.LockOptions{Type: dlock.Atomic}, locks); err != nil {
		log.Fatal(err)
	}
	reqs := make([]dlock.LockRequest, len(locks))
	for i, l := range locks {
		reqs[i] = dlock.LockRequest{Lock: l, Mode: dlock.Exclusive}
	}
	res := make([]dlock.Result, len(reqs))
	if err := c.BatchTryLock(ctx, reqs, res); err != nil {
		log.Fatal(err)
	}
	for i, r := range res {
		fmt.Println(names[i], r.Status.String())
	}
	// Output:
	// row/1 DLOCK_SUCCESS
	// row/2 DLOCK_SUCCESS
	// row/3 DLOCK_SUCCESS
}
