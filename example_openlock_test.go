package dlock_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/dlock-io/dlock"
)

// A lock used once: opened and taken in one round trip.
func ExampleClient_OpenAndLock() {
	addr, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)

	l, err := c.OpenAndLock(ctx, "reports/2026-12", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("holding", l.Name())
	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	// Release drops the client's reference to the lock.
	if err := l.Release(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: holding reports/2026-12
}
