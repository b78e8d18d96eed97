package dlockserver

import "time"

// clock turns the monotonic clock into the whole seconds the lock state
// machines and the C ABI use. It is anchored at a wall-clock instant at start,
// so the seconds it reports match wall-clock Unix seconds, but they advance
// with the monotonic clock: a wall-clock step does not expire or extend any
// lease.
type clock struct {
	start    time.Time // carries a monotonic reading
	wallSec  int64     // start's Unix second
	wallFrac int64     // start's nanoseconds within that second
}

func newClock(now time.Time) clock {
	return clock{start: now, wallSec: now.Unix(), wallFrac: int64(now.Nanosecond())}
}

// seconds returns the clock's second at t.
func (c *clock) seconds(t time.Time) uint32 { return c.secondsAt(int64(t.Sub(c.start))) }

// secondsAt returns the clock's second ns nanoseconds after it started.
func (c *clock) secondsAt(ns int64) uint32 {
	ns += c.wallFrac
	s := c.wallSec + ns/int64(time.Second)
	if s < 0 {
		return 0
	}
	if s > 0xFFFFFFFF {
		return 0xFFFFFFFF
	}
	return uint32(s)
}

// at returns the instant at which the clock's second becomes sec.
func (c *clock) at(sec uint32) time.Time {
	d := (int64(sec)-c.wallSec)*int64(time.Second) - c.wallFrac
	return c.start.Add(time.Duration(d))
}

// The server reads time only through the functions below: every deadline,
// lease and timeout derives from them, so tests (testing/synctest) and
// readers find all of the server's uses of time in one place.

// now returns the current instant (with its monotonic reading).
func (c *clock) now() time.Time { return time.Now() }

// elapsed is the time since the clock started: one monotonic-clock read,
// what a request needs (instant).
func (c *clock) elapsed() time.Duration { return c.since(c.start) }

// since is the time elapsed since t, which must carry a monotonic reading:
// one monotonic-clock read, about half the cost of now where the clock is
// slow to read (virtual machines), for checks on every request.
func (c *clock) since(t time.Time) time.Duration { return time.Since(t) }

// until is the time left before t.
func (c *clock) until(t time.Time) time.Duration { return time.Until(t) }

// afterFunc calls f in its own goroutine after d, until stopped.
func (c *clock) afterFunc(d time.Duration, f func()) *time.Timer { return time.AfterFunc(d, f) }

// sleep pauses the calling goroutine for d.
func (c *clock) sleep(d time.Duration) { time.Sleep(d) }

// after returns the instant d from now: the deadline of a socket operation.
// Connections read the time for their deadlines here.
func (c *clock) after(d time.Duration) time.Time { return c.now().Add(d) }

// wallClock is the default Config.WallClock: the system's.
func wallClock() time.Time { return time.Now() }

// atNanos returns the instant of a nanos reading (with its monotonic
// reading), which deadlines derived from a request's time start from.
func (c *clock) atNanos(ns int64) time.Time { return c.start.Add(time.Duration(ns)) }
