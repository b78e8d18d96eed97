package lockcore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dlock-io/dlock"
)

func fairArg(nx, ns, mx, ms uint16, e uint32) dlock.LockState {
	return dlock.FairState{Nx: nx, Ns: ns, Mx: mx, Ms: ms, Timeout: e}.State()
}

// setFairCounters moves a fresh lock's counters (test-only constructor for
// wrap-around tests).
func setFairCounters(l *Lock, v uint16) {
	l.f.nx, l.f.ns, l.f.mx, l.f.ms, l.f.rms = v, v, v, v, v
}

// TestFairWrapAround replays random walks and a bounded exhaustive search
// with the 16-bit counters starting just below the wrap: FIFO, passed-ticket
// detection and the holder invariants must hold across 0xFFFF → 0.
func TestFairWrapAround(t *testing.T) {
	for _, start := range []uint16{0xFFF0, 0xFFFE, 0xFFFF, 0x7FF8, 0x8000} {
		t.Run(fmt.Sprintf("%#x", start), func(t *testing.T) {
			for seed := range uint64(4) {
				rng := rand.New(rand.NewPCG(seed, uint64(start)))
				w := newWorld(dlock.Fair, 3)
				setFairCounters(w.l, start)
				for i := range 3000 {
					if i%64 == 0 {
						w.trace = w.trace[:0]
					}
					if rng.IntN(6) == 0 {
						w.tick(t, uint32(rng.IntN(3)))
						continue
					}
					ci, op := rng.IntN(3), rng.IntN(numClientOps)
					if w.applicable(&w.cl[ci], op) {
						w.step(t, ci, op)
					}
				}
			}
		})
	}
}

// TestFairWrapOrder queues waiters across the wrap of Mx/Ms and checks that
// they are served in ticket order.
func TestFairWrapOrder(t *testing.T) {
	tk := new(Tokens)
	l := NewLock(dlock.Fair, tk)
	setFairCounters(l, 0xFFFD)
	now := uint32(100)
	r, _ := l.Exec(now, 1, dlock.CmdExclusiveTrylock, fairArg(0, 0, 0, 0, 5), nil, nil)
	if r.Status != dlock.Success {
		t.Fatalf("first trylock: %v", r.Status)
	}
	hold := r.State.Fair()
	modes := []dlock.Mode{dlock.Exclusive, dlock.Shared, dlock.Shared, dlock.Exclusive, dlock.Shared, dlock.Exclusive, dlock.Exclusive}
	for i, m := range modes {
		_, queued, _ := l.Acquire(now, Waiter{Tag: uint64(i + 1), Client: int32(i + 2), Mode: m, Expire: 5}, nil, nil)
		if !queued {
			t.Fatalf("waiter %d not queued", i)
		}
	}
	if s := l.fairState(); s.Mx != 0x0002 || s.Ms != 0x0000 {
		t.Fatalf("counters did not wrap: %+v", s)
	}
	var order []uint64
	holders := map[int32]dlock.FairState{1: hold}
	cur := []int32{1}
	for len(cur) > 0 {
		var wake []Grant
		c := cur[0]
		cur = cur[1:]
		cmd := dlock.CmdExclusiveUnlock
		if l.owner != c {
			cmd = dlock.CmdSharedUnlock
		}
		h := holders[c]
		r, wake = l.Exec(now, c, cmd, fairArg(h.Nx, h.Ns, 0, 0, 0), nil, wake)
		if r.Status != dlock.Success {
			t.Fatalf("unlock by %d: %v", c, r.Status)
		}
		for _, g := range wake {
			if g.Reply.Status != dlock.Success {
				t.Fatalf("grant %+v", g)
			}
			order = append(order, g.Tag)
			holders[g.Client] = g.Reply.State.Fair()
			cur = append(cur, g.Client)
		}
	}
	if got, want := fmt.Sprint(order), "[1 2 3 4 5 6 7]"; got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
}

// TestFairPassedAcrossWrap checks passed-ticket detection when the ticket and
// the counter are on different sides of the wrap.
func TestFairPassedAcrossWrap(t *testing.T) {
	for _, tc := range []struct {
		t, n uint16
		want bool
	}{
		{0xFFFF, 0x0000, true},
		{0x0000, 0xFFFF, false},
		{0x0005, 0xFFF0, false},
		{0xFFF0, 0x0005, true},
		{0x7FFF, 0x0000, false},
		{0x8000, 0x0000, true},
	} {
		if got := passed(tc.t, tc.n); got != tc.want {
			t.Errorf("passed(%#x, %#x) = %v, want %v", tc.t, tc.n, got, tc.want)
		}
	}
}

func TestFairReaderCap(t *testing.T) {
	l := NewLock(dlock.Fair, nil)
	now := uint32(100)
	for i := range dlock.MaxFairShared {
		r, _ := l.Exec(now, int32(i+1), dlock.CmdSharedTrylock, fairArg(0, 0, 0, 0, 5), nil, nil)
		if r.Status != dlock.Success {
			t.Fatalf("reader %d: %v", i+1, r.Status)
		}
	}
	var st dlock.Stats
	r, _ := l.Exec(now, 64, dlock.CmdSharedTrylock, fairArg(0, 0, 0, 0, 5), &st, nil)
	if r.Status != dlock.ErrAgain || st[dlock.StatEAgain] != 1 {
		t.Fatalf("64th reader: %v (stats %v)", r.Status, st[dlock.StatEAgain])
	}
	ticket := r.State.Fair()
	if ticket.Ms != 63 || ticket.RCnt != 63 {
		t.Fatalf("ticket %+v", ticket)
	}
	// The ticket waits until a reader leaves.
	r, _ = l.Exec(now, 64, dlock.CmdSharedTicketTrylock, ticket.State(), nil, nil)
	if r.Status != dlock.ErrAgain {
		t.Fatalf("ticket trylock at cap: %v", r.Status)
	}
	// Blocking readers beyond the cap queue; each release lets one in.
	for i := range 3 {
		_, queued, _ := l.Acquire(now, Waiter{Tag: uint64(i + 1), Client: int32(100 + i), Mode: dlock.Shared, Expire: 5}, nil, nil)
		if !queued {
			t.Fatalf("blocking reader %d not queued", i)
		}
	}
	r, wake := l.Exec(now, 1, dlock.CmdSharedUnlock, fairArg(0, 0, 0, 0, 0), nil, nil)
	if r.Status != dlock.Success || len(wake) != 1 || wake[0].Tag != 1 {
		t.Fatalf("unlock: %v, wake %+v", r.Status, wake)
	}
	if got := wake[0].Reply.State.Fair().RCnt; got != 63 {
		t.Fatalf("rcnt %d", got)
	}
	if l.Waiters() != 2 {
		t.Fatalf("waiters %d", l.Waiters())
	}
	_, shared := l.Holders(nil)
	if len(shared) != 63 {
		t.Fatalf("%d shared holders", len(shared))
	}
}

func TestFairQueueLimit(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprint("shared=", shared), func(t *testing.T) {
			l := NewLock(dlock.Fair, nil)
			now := uint32(100)
			if r, _ := l.Exec(now, 1, dlock.CmdExclusiveTrylock, fairArg(0, 0, 0, 0, 5), nil, nil); r.Status != dlock.Success {
				t.Fatal(r.Status)
			}
			cmd := dlock.CmdExclusiveTrylock
			if shared {
				cmd = dlock.CmdSharedTrylock
			}
			var st dlock.Stats
			// With one exclusive ticket issued (the holder's), 0x7FFE more
			// exclusive tickets fit; shared ones fit 0x7FFF.
			n := dlock.MaxFairQueue - 1
			if shared {
				n = dlock.MaxFairQueue
			}
			for i := range n {
				r, _ := l.Exec(now, 2, cmd, fairArg(0, 0, 0, 0, 5), &st, nil)
				if r.Status != dlock.ErrAgain {
					t.Fatalf("ticket %d: %v", i, r.Status)
				}
			}
			arg := fairArg(1, 2, 3, 4, 5)
			r, _ := l.Exec(now, 2, cmd, arg, &st, nil)
			if r.Status != dlock.ErrFail || st[dlock.StatFairQueueLimit] != 1 || r.State != arg {
				t.Fatalf("over the limit: %v, stat %d, state echoed %v", r.Status, st[dlock.StatFairQueueLimit], r.State == arg)
			}
			m := dlock.Exclusive
			if shared {
				m = dlock.Shared
			}
			r, queued, _ := l.Acquire(now, Waiter{Tag: 1, Client: 3, Mode: m, Expire: 5}, &st, nil)
			if queued || r.Status != dlock.ErrFail || st[dlock.StatFairQueueLimit] != 2 {
				t.Fatalf("blocking over the limit: queued %v %v", queued, r.Status)
			}
			if st[dlock.StatEAgain] != uint64(n) {
				t.Fatalf("EAGAIN counted %d, want %d", st[dlock.StatEAgain], n)
			}
		})
	}
}

// TestFairGhosts checks that abandoned tickets are retired without the
// hand-over grace, and that a passed ghost is simply forgotten.
func TestFairGhosts(t *testing.T) {
	l := NewLock(dlock.Fair, nil)
	now := uint32(100)
	l.Exec(now, 1, dlock.CmdExclusiveTrylock, fairArg(0, 0, 0, 0, 5), nil, nil)
	// c2 exclusive (tx=1, ts=0), c3 shared (tx=2, ts=0), c4 exclusive (tx=2, ts=1).
	for i, m := range []dlock.Mode{dlock.Exclusive, dlock.Shared, dlock.Exclusive} {
		if _, q, _ := l.Acquire(now, Waiter{Tag: uint64(i + 2), Client: int32(i + 2), Mode: m, Expire: 5}, nil, nil); !q {
			t.Fatal("not queued")
		}
	}
	// Abandon c2 and c3; releasing c1 must grant c4 at once.
	for _, tag := range []uint64{2, 3} {
		if r, found, _ := l.Cancel(now, tag, false, nil); !found || r.Status != dlock.ErrTimeout {
			t.Fatalf("cancel %d: %v %v", tag, found, r.Status)
		}
	}
	if len(l.ghosts) != 2 {
		t.Fatalf("ghosts %v", l.ghosts)
	}
	r, wake := l.Exec(now, 1, dlock.CmdExclusiveUnlock, fairArg(0, 0, 0, 0, 0), nil, nil)
	if r.Status != dlock.Success || len(wake) != 1 || wake[0].Client != 4 || wake[0].Reply.Status != dlock.Success {
		t.Fatalf("unlock: %v wake %+v", r.Status, wake)
	}
	if s := l.fairState(); s.Nx != 2 || s.Ns != 1 || len(l.ghosts) != 0 {
		t.Fatalf("state %+v ghosts %v", s, l.ghosts)
	}
	// A ghost passed by a grab is dropped.
	l.Acquire(now, Waiter{Tag: 9, Client: 9, Expire: 5}, nil, nil) // tx=3, ts=1
	r, _ = l.Exec(now, 8, dlock.CmdSharedTrylock, fairArg(0, 0, 0, 0, 5), nil, nil)
	if r.Status != dlock.ErrAgain {
		t.Fatal(r.Status)
	}
	tk := r.State.Fair() // tx=4, ts=1
	l.Cancel(now, 9, false, nil)
	if len(l.ghosts) != 1 {
		t.Fatal("no ghost")
	}
	now = 200
	r, _ = l.Exec(now, 8, dlock.CmdSharedTicketTrylock, tk.State(), nil, nil)
	if r.Status != dlock.Success || l.Grabs() != 1 {
		t.Fatalf("grab: %v", r.Status)
	}
	l.Advance(now, nil)
	if len(l.ghosts) != 0 {
		t.Fatalf("passed ghost kept: %v", l.ghosts)
	}
}

// TestFairDrop releases a removed client's exclusive and shared holds and
// abandons its tickets.
func TestFairDrop(t *testing.T) {
	l := NewLock(dlock.Fair, nil)
	now := uint32(100)
	l.Exec(now, 1, dlock.CmdSharedTrylock, fairArg(0, 0, 0, 0, 5), nil, nil)
	l.Exec(now, 2, dlock.CmdSharedTrylock, fairArg(0, 0, 0, 0, 5), nil, nil)
	l.Acquire(now, Waiter{Tag: 1, Client: 3, Expire: 5}, nil, nil)
	l.Acquire(now, Waiter{Tag: 2, Client: 1, Mode: dlock.Shared, Expire: 5}, nil, nil)
	wake := l.Drop(now, 1, nil)
	if len(wake) != 0 || l.Waiters() != 1 || l.f.rcnt != 1 {
		t.Fatalf("drop c1: wake %+v waiters %d rcnt %d", wake, l.Waiters(), l.f.rcnt)
	}
	wake = l.Drop(now, 2, nil)
	if len(wake) != 1 || wake[0].Client != 3 || wake[0].Reply.Status != dlock.Success {
		t.Fatalf("drop c2: wake %+v", wake)
	}
	// c1's abandoned shared ticket comes after c3: retired when c3 goes.
	wake = l.Drop(now, 3, nil)
	if len(wake) != 0 || len(l.ghosts) != 0 {
		t.Fatalf("drop c3: wake %+v ghosts %v", wake, l.ghosts)
	}
	s := l.fairState()
	if s.Nx != s.Mx || s.Ns != s.Ms || s.RCnt != 0 || l.owner != 0 {
		t.Fatalf("not free: %+v owner %d", s, l.owner)
	}
	if r, _ := l.Exec(now, 4, dlock.CmdExclusiveTrylock, fairArg(0, 0, 0, 0, 5), nil, nil); r.Status != dlock.Success {
		t.Fatalf("trylock after drops: %v", r.Status)
	}
}

// TestFairAcquireGrabsAtOnce: a blocking request on a lock whose holder's
// lease has run out takes it at once (its new ticket grabs).
func TestFairAcquireGrabsAtOnce(t *testing.T) {
	l := NewLock(dlock.Fair, nil)
	l.Exec(100, 1, dlock.CmdExclusiveTrylock, fairArg(0, 0, 0, 0, 1), nil, nil)
	r, queued, wake := l.Acquire(105, Waiter{Tag: 7, Client: 2, Expire: 5}, nil, nil)
	if queued || r.Status != dlock.Success || r.Token == 0 || len(wake) != 0 || l.owner != 2 {
		t.Fatalf("queued %v %+v wake %+v", queued, r, wake)
	}
	// Shared grab by a presented ticket also lets queued readers in.
	l2 := NewLock(dlock.Fair, nil)
	l2.Exec(100, 1, dlock.CmdExclusiveTrylock, fairArg(0, 0, 0, 0, 1), nil, nil)
	rt, _ := l2.Exec(100, 2, dlock.CmdSharedTrylock, fairArg(0, 0, 0, 0, 1), nil, nil)
	l2.Acquire(100, Waiter{Tag: 3, Client: 3, Mode: dlock.Shared, Expire: 1}, nil, nil)
	// At 102 the queued reader grabs first (the queue is evaluated before the
	// request), which passes c2's older ticket: as upstream, a ticket holder
	// that does not claim in time loses its place to whichever later ticket
	// grabs first.
	r, queued, wake = l2.Acquire(102, Waiter{Tag: 2, Client: 2, Mode: dlock.Shared, Expire: 5, HasTicket: true, Ticket: rt.State.Fair()}, nil, nil)
	if len(wake) != 1 || wake[0].Tag != 3 || queued {
		t.Fatalf("wake %+v queued %v", wake, queued)
	}
	if r.Status != dlock.ErrFail {
		// c2's ticket (ts=0) is older than c3's grab position (ts=1): passed.
		t.Fatalf("older shared ticket after a newer grab: %v", r.Status)
	}
}
