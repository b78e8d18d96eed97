package dlock_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/dlock-io/dlock"
)

// Many lock requests in flight from one goroutine: a Pipeline sends the
// requests started since its last Next in one write, and Next returns them
// as their replies come in. Here every shard of a job is claimed with a
// TryLock, the claimed ones are processed and released with an Unlock, all
// through one window of reusable Requests.
func ExampleClient_NewPipeline() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	c, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)

	// Another worker holds shard 3 already.
	other, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer other.Shutdown(ctx)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	busy, err := other.OpenLock(ctx, "job/shard/3", opts)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := busy.TryLock(ctx); err != nil {
		log.Fatal(err)
	}

	const shards = 8
	reqs := make([]dlock.Request, shards) // owned by the caller, reused
	p := c.NewPipeline()
	for i := range reqs {
		l, err := c.OpenLock(ctx, fmt.Sprintf("job/shard/%d", i), opts)
		if err != nil {
			log.Fatal(err)
		}
		reqs[i].Tag = i
		if err := p.TryLock(&reqs[i], l); err != nil {
			log.Fatal(err)
		}
	}
	claimed := make([]bool, shards)
	for p.Outstanding() > 0 {
		r, err := p.Next(ctx) // the replies, in the order they arrive
		if err != nil {
			log.Fatal(err)
		}
		if err := r.Err(); err != nil {
			log.Fatalf("%v %s: %v", r.Op(), r.Lock().Name(), err)
		}
		if r.Op() == dlock.OpUnlock {
			continue // released
		}
		i := r.Tag.(int)
		if claimed[i] = r.Acquired(); claimed[i] {
			// ... process shard i while holding its lock, then release it,
			// reusing the request Next just returned.
			if err := p.Unlock(r, r.Lock()); err != nil {
				log.Fatal(err)
			}
		}
	}
	fmt.Println("claimed:", claimed)
	// Output: claimed: [true true true false true true true true]
}
