package ha_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// cpuTicks returns a process's user+system CPU time in clock ticks
// (/proc/PID/stat fields 14 and 15).
func cpuTicks(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// TestShardScaling measures lock throughput through a Router against 1, 2
// and 3 shards of one dlockd each, and each shard's CPU per operation. It
// reports and asserts nothing about speed; it runs only with
// DLOCK_SHARD_BENCH=1 (DLOCK_SHARD_BENCH_SECONDS sets the measured time,
// default 5):
//
//	DLOCK_SHARD_BENCH=1 go test -run TestShardScaling -v ./dlockserver/ha
//
// Workload: 4 routers (4 sessions per shard) × 16 goroutines, each taking
// and releasing its own lock (TryLock + Unlock, 2 round trips), names
// spread over the shards by slot.
func TestShardScaling(t *testing.T) {
	if os.Getenv("DLOCK_SHARD_BENCH") == "" {
		t.Skip("set DLOCK_SHARD_BENCH=1 to measure")
	}
	secs := 5
	if s := os.Getenv("DLOCK_SHARD_BENCH_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	const routers, perRouter = 4, 16
	var lines []string
	var base float64
	for n := 1; n <= 3; n++ {
		t.Run(fmt.Sprintf("shards=%d", n), func(t *testing.T) {
			ctx := testCtx(t, 5*time.Minute)
			c := newShardCluster(t, n, 1)
			var locks []*dlock.Lock
			for i := 0; i < routers; i++ {
				r := c.router(ctx, c.allAddrs()...)
				var names []string
				for j := 0; j < perRouter; j++ {
					names = append(names, fmt.Sprintf("bench/%d/%d", i, j))
				}
				locks = append(locks, openAll(ctx, t, r, names)...)
			}
			var ops atomic.Int64
			var stop atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, len(locks))
			for _, l := range locks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						ok, err := l.TryLock(ctx)
						if err == nil && ok {
							err = l.Unlock(ctx)
						} else if err == nil {
							err = fmt.Errorf("%s busy", l.Name())
						}
						if err != nil {
							errs <- err
							return
						}
						ops.Add(2)
					}
				}()
			}
			time.Sleep(500 * time.Millisecond) // warm up
			before := map[string]int64{}
			for _, s := range c.shards {
				before[s] = cpuTicks(t, c.procs[s][0].pid)
			}
			o0, t0 := ops.Load(), time.Now()
			time.Sleep(time.Duration(secs) * time.Second)
			o1, el := ops.Load(), time.Since(t0)
			var cpu []string
			var total int64
			for _, s := range c.shards {
				d := cpuTicks(t, c.procs[s][0].pid) - before[s] // 10 ms ticks (CLK_TCK 100)
				total += d
				cpu = append(cpu, fmt.Sprintf("%s %.0f%%", s, float64(d*10)/float64(el.Milliseconds())*100))
			}
			perOp := float64(total) * 1e4 / float64(o1-o0) // µs of server CPU per operation
			stop.Store(true)
			wg.Wait()
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			rate := float64(o1-o0) / el.Seconds()
			if n == 1 {
				base = rate
			}
			lines = append(lines, fmt.Sprintf("%d shard(s): %.0f ops/s (%.2f× one shard); server CPU %.1f µs/op; per shard (of one core): %s",
				n, rate, rate/base, perOp, strings.Join(cpu, ", ")))
		})
	}
	for _, l := range lines {
		t.Log(l)
	}
}
