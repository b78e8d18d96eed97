package dlockhttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/dlockhttp"
	"github.com/dlock-io/dlock/dlocktest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	return mf
}

// find returns the metric of family name whose labels include want.
func find(t *testing.T, mf map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := mf[name]
	if f == nil {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == k && lp.GetValue() == v
			}
			if !found {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s%v", name, want)
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return -1
}

// TestEndpoints scrapes a real server's endpoints while one client holds an
// atomic lock and another waits for it, then after the hand-over.
func TestEndpoints(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	web := httptest.NewServer(dlockhttp.NewHandler(srv.Server))
	defer web.Close()

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, web.URL+path); code != http.StatusOK {
			t.Errorf("%s: %d %q; want 200", path, code, body)
		}
	}
	if code, body := get(t, web.URL+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d; want 200 with the profile index", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := dlock.Dial(ctx, srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := dlock.Dial(ctx, srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	la, err := a.OpenLock(ctx, "orders/1", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.OpenLock(ctx, "orders/1", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	granted := make(chan error, 1)
	go func() { granted <- lb.Lock(ctx) }()
	for i := 0; ; i++ {
		mf := scrape(t, web.URL)
		if value(find(t, mf, "dlock_waiters", map[string]string{"type": "atomic"})) == 1 {
			break
		}
		if i == 500 {
			t.Fatal("dlock_waiters{type=atomic} never became 1")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mf := scrape(t, web.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dlock_clients", map[string]string{"state": "connected"}, 2},
		{"dlock_locks", map[string]string{"type": "atomic"}, 1},
		{"dlock_locks", map[string]string{"type": "fair"}, 0},
		{"dlock_locks_held", map[string]string{"type": "atomic"}, 1},
		{"dlock_waiters", map[string]string{"type": "atomic"}, 1},
		{"dlock_connections", nil, 2},
		{"dlock_ready", nil, 1},
		{"dlock_recovery_clients_pending", nil, 0},
		{"dlock_build_info", nil, 1},
	} {
		if got := value(find(t, mf, c.name, c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := len(mf["dlock_debug_events_total"].GetMetric()); n != dlock.NumCounters {
		t.Errorf("%d debug counter series, want %d", n, dlock.NumCounters)
	}

	time.Sleep(20 * time.Millisecond) // a measurable wait
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-granted; err != nil {
		t.Fatal(err)
	}
	if err := lb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mf = scrape(t, web.URL)
	wait := find(t, mf, "dlock_lock_wait_seconds", map[string]string{"type": "atomic"}).GetHistogram()
	if wait.GetSampleCount() != 2 || wait.GetSampleSum() < 0.02 {
		t.Errorf("wait histogram: %d samples, sum %v; want 2 (one at once, one queued ≥ 20ms)", wait.GetSampleCount(), wait.GetSampleSum())
	}
	hold := find(t, mf, "dlock_lock_hold_seconds", map[string]string{"type": "atomic"}).GetHistogram()
	if hold.GetSampleCount() != 2 || hold.GetSampleSum() < 0.02 {
		t.Errorf("hold histogram: %d samples, sum %v; want 2 holds, the first ≥ 20ms", hold.GetSampleCount(), hold.GetSampleSum())
	}
	if got := value(find(t, mf, "dlock_operations_total", map[string]string{"op": "EXCLUSIVE_UNLOCK", "status": "DLOCK_SUCCESS"})); got != 2 {
		t.Errorf("unlocks counted: %v, want 2", got)
	}
	if got := value(find(t, mf, "dlock_locks_held", map[string]string{"type": "atomic"})); got != 0 {
		t.Errorf("dlock_locks_held after the unlocks = %v", got)
	}
	// No series is named after a lock or a client.
	for name, f := range mf {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "orders/1") {
					t.Errorf("%s has a lock name as a label value", name)
				}
			}
		}
	}
}

// TestRecoveringIsHealthyNotReady: a server waiting for recovery answers
// /healthz but not /readyz, and exports what it waits for.
func TestRecoveringIsHealthyNotReady(t *testing.T) {
	srv := dlocktest.NewServer(t, &dlockserver.Config{RecoveryClients: 3})
	web := httptest.NewServer(dlockhttp.NewHandler(srv.Server))
	defer web.Close()
	if code, _ := get(t, web.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while recovering: %d, want 200", code)
	}
	if code, body := get(t, web.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "recovering") {
		t.Errorf("/readyz while recovering: %d %q, want 503 saying why", code, body)
	}
	mf := scrape(t, web.URL)
	if v := value(find(t, mf, "dlock_ready", nil)); v != 0 {
		t.Errorf("dlock_ready = %v while recovering", v)
	}
	if v := value(find(t, mf, "dlock_recovery_clients_pending", nil)); v != 3 {
		t.Errorf("dlock_recovery_clients_pending = %v, want 3", v)
	}
	srv.Close()
	if code, _ := get(t, web.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after shutdown: %d, want 503", code)
	}
}
