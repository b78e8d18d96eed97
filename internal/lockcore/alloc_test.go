package lockcore

import (
	"testing"

	"github.com/dlock-io/dlock"
)

// hotTable returns a table with one lock of type typ held by no one, its id,
// and the payloads client 1 sends.
func hotTable(tb testing.TB, typ dlock.LockType) (*Table, int32) {
	tb.Helper()
	t := NewTable(Limits{})
	id, st := t.Get(1, []byte("hot"), typ, 0, 0)
	if st != dlock.Success {
		tb.Fatal(st)
	}
	return t, id
}

// cycle runs trylock, extend, unlock once through Table.Lock(id).Exec and
// reports the first non-success status.
type cycle struct {
	t     *Table
	id    int32
	typ   dlock.LockType
	st    dlock.Stats
	wake  []Grant
	now   uint32
	cache dlock.LockState
}

func (c *cycle) exec(client int32, cmd dlock.Cmd, arg dlock.LockState) Reply {
	var r Reply
	r, c.wake = c.t.Lock(c.id).Exec(c.now, client, cmd, arg, &c.st, c.wake[:0])
	return r
}

func (c *cycle) trylock() Reply {
	switch c.typ {
	case dlock.Atomic:
		return c.exec(1, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: 1, Timeout: 5}.State())
	case dlock.RW:
		return c.exec(1, dlock.CmdExclusiveTrylock, dlock.RWState{Owner: 1, Timeout: 5}.State())
	}
	r := c.exec(1, dlock.CmdExclusiveTrylock, dlock.FairState{Timeout: 5}.State())
	c.cache = r.State
	return r
}

func (c *cycle) extend() Reply {
	switch c.typ {
	case dlock.Atomic:
		return c.exec(1, dlock.CmdExclusiveExtend, dlock.AtomicState{Owner: 1, Timeout: 7}.State())
	case dlock.RW: // RW has no extend: a refused shared trylock instead
		return c.exec(2, dlock.CmdSharedTrylock, dlock.RWState{}.State())
	}
	f := c.cache.Fair()
	f.Timeout = 7
	return c.exec(1, dlock.CmdExclusiveExtend, f.State())
}

func (c *cycle) unlock() Reply {
	switch c.typ {
	case dlock.Atomic:
		return c.exec(1, dlock.CmdExclusiveUnlock, dlock.AtomicState{Owner: 1}.State())
	case dlock.RW:
		return c.exec(1, dlock.CmdExclusiveUnlock, dlock.RWState{Owner: 1}.State())
	}
	return c.exec(1, dlock.CmdExclusiveUnlock, c.cache)
}

func TestExecAllocs(t *testing.T) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		t.Run(typ.String(), func(t *testing.T) {
			tb, id := hotTable(t, typ)
			c := &cycle{t: tb, id: id, typ: typ, now: 100, wake: make([]Grant, 0, 4)}
			check := func(name string, f func() Reply) {
				t.Helper()
				if n := testing.AllocsPerRun(200, func() { f() }); n != 0 {
					t.Errorf("%s: %v allocs/op", name, n)
				}
			}
			// Each measured function leaves the lock as it found it.
			check("trylock+unlock", func() Reply { c.trylock(); return c.unlock() })
			c.trylock()
			check("extend", c.extend)
			check("failed trylock", func() Reply {
				return c.exec(2, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: 2}.State())
			})
			c.unlock()
			if typ != dlock.Atomic {
				check("shared trylock+unlock", func() Reply {
					var arg dlock.LockState
					if typ == dlock.Fair {
						arg = c.exec(2, dlock.CmdSharedTrylock, arg).State
					} else {
						c.exec(2, dlock.CmdSharedTrylock, arg)
					}
					return c.exec(2, dlock.CmdSharedUnlock, arg)
				})
			}
		})
	}
}

// TestWaiterAllocs: a steady stream of blocking requests reuses the queue.
func TestWaiterAllocs(t *testing.T) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		t.Run(typ.String(), func(t *testing.T) {
			tb, id := hotTable(t, typ)
			c := &cycle{t: tb, id: id, typ: typ, now: 100, wake: make([]Grant, 0, 4)}
			l := tb.Lock(id)
			c.trylock()
			n := testing.AllocsPerRun(200, func() {
				var queued bool
				_, queued, c.wake = l.Acquire(c.now, Waiter{Tag: 1, Client: 2, Expire: 5}, nil, c.wake[:0])
				if !queued {
					t.Fatal("not queued")
				}
				c.unlock()
				if len(c.wake) != 1 {
					t.Fatalf("wake %+v", c.wake)
				}
				// the waiter (client 2) hands back to client 1
				g := c.wake[0].Reply.State
				switch typ {
				case dlock.Atomic:
					c.exec(2, dlock.CmdExclusiveUnlock, dlock.AtomicState{Owner: 2}.State())
				case dlock.RW:
					c.exec(2, dlock.CmdExclusiveUnlock, dlock.RWState{Owner: 2}.State())
				default:
					c.exec(2, dlock.CmdExclusiveUnlock, g)
				}
				c.trylock()
			})
			if n != 0 {
				t.Errorf("%v allocs per blocking cycle", n)
			}
		})
	}
}

func BenchmarkExecTrylockUnlock(b *testing.B) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		b.Run(typ.String(), func(b *testing.B) {
			tb, id := hotTable(b, typ)
			c := &cycle{t: tb, id: id, typ: typ, now: 100, wake: make([]Grant, 0, 4)}
			b.ReportAllocs()
			for b.Loop() {
				if c.trylock().Status != dlock.Success || c.unlock().Status != dlock.Success {
					b.Fatal("cycle failed")
				}
			}
		})
	}
}

func BenchmarkExecExtend(b *testing.B) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.Fair} {
		b.Run(typ.String(), func(b *testing.B) {
			tb, id := hotTable(b, typ)
			c := &cycle{t: tb, id: id, typ: typ, now: 100, wake: make([]Grant, 0, 4)}
			c.trylock()
			b.ReportAllocs()
			for b.Loop() {
				if c.extend().Status != dlock.Success {
					b.Fatal("extend failed")
				}
			}
		})
	}
}

func BenchmarkExecTrylockFail(b *testing.B) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		b.Run(typ.String(), func(b *testing.B) {
			tb, id := hotTable(b, typ)
			c := &cycle{t: tb, id: id, typ: typ, now: 100, wake: make([]Grant, 0, 4)}
			c.trylock()
			cmd, arg := dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: 2}.State()
			if typ == dlock.RW {
				arg = dlock.RWState{Owner: 2}.State()
			}
			if typ == dlock.Fair {
				// a ticket (tx=1) that is not yet served
				c.exec(2, dlock.CmdExclusiveTrylock, dlock.LockState{})
				cmd, arg = dlock.CmdExclusiveTicketTrylock, dlock.FairState{Mx: 1}.State()
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := c.exec(2, cmd, arg); r.Status == dlock.Success {
					b.Fatal("unexpected success")
				}
			}
		})
	}
}

func BenchmarkExecBlockingHandOver(b *testing.B) {
	tb, id := hotTable(b, dlock.Fair)
	c := &cycle{t: tb, id: id, typ: dlock.Fair, now: 100, wake: make([]Grant, 0, 4)}
	l := tb.Lock(id)
	c.trylock()
	b.ReportAllocs()
	for b.Loop() {
		_, _, c.wake = l.Acquire(c.now, Waiter{Tag: 1, Client: 2, Expire: 5}, nil, c.wake[:0])
		c.unlock()
		g := c.wake[0].Reply.State
		c.exec(2, dlock.CmdExclusiveUnlock, g)
		c.trylock()
	}
}
