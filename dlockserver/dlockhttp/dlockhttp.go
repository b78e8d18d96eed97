// Package dlockhttp serves a dlock server's operational HTTP endpoints:
//
//	/healthz        200 while the server is alive and serving (recovering included)
//	/readyz         200 only when it serves requests: not shut down, not recovering
//	/metrics        Prometheus exposition format (prometheus/client_golang)
//	/debug/pprof/   the Go profiler
//
// It is a separate package so that neither the client library nor programs
// that only embed dlockserver link the Prometheus client.
//
//	srv, _ := dlockserver.New(cfg)
//	go http.ListenAndServe("127.0.0.1:9616", dlockhttp.NewHandler(srv))
//
// The metrics are read from the server when scraped (Server.Observe); none
// is a per-lock series, so their number does not grow with the number of
// locks or clients. The HTTP listener has no authentication: bind it to an
// address only operators reach.
package dlockhttp

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/internal/buildinfo"
)

// NewHandler returns the handler of the endpoints for srv, with a registry
// of its own holding the dlock collector and the Go runtime and process
// collectors.
func NewHandler(srv *dlockserver.Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(srv),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !srv.Alive() {
			http.Error(w, "shut down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		o := srv.Observe()
		switch {
		case !o.Serving:
			http.Error(w, "shut down", http.StatusServiceUnavailable)
		case !srv.Serving():
			http.Error(w, "not the primary (a standby, or fenced from etcd)", http.StatusServiceUnavailable)
		case !o.Ready:
			http.Error(w, fmt.Sprintf("recovering: waiting for %d clients", o.RecoveryPending), http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

var typeNames = [3]string{dlock.Atomic.String(), dlock.RW.String(), dlock.Fair.String()}

// Collector exports a dlock server's state as Prometheus metrics.
type Collector struct {
	srv   *dlockserver.Server
	build buildinfo.Info

	buildInfo, ready, recoveryPending            *prometheus.Desc
	clients, conns, handshakes, objects          *prometheus.Desc
	locks, held, waiters                         *prometheus.Desc
	ops, wait, hold, counters, forced, adminReqs *prometheus.Desc
}

// NewCollector returns a collector of srv's metrics.
func NewCollector(srv *dlockserver.Server) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("dlock_"+name, help, labels, nil)
	}
	return &Collector{
		srv:             srv,
		build:           buildinfo.Read(),
		buildInfo:       d("build_info", "Build of the server: version, VCS revision and Go version (value 1).", "version", "revision", "goversion"),
		ready:           d("ready", "1 when the server serves requests, 0 while it recovers (or after shutdown)."),
		recoveryPending: d("recovery_clients_pending", "Clients the server still waits for before it ends recovery."),
		clients:         d("clients", "Registered clients, by whether their connection is up.", "state"),
		conns:           d("connections", "Open client connections."),
		handshakes:      d("tls_handshakes_in_progress", "Connections in the TLS handshake."),
		objects:         d("objects", "Atomic64 objects."),
		locks:           d("locks", "Lock objects, by lock type.", "type"),
		held:            d("locks_held", "Locks currently held (a lease that ran out does not count), by lock type.", "type"),
		waiters:         d("waiters", "Blocking lock requests queued on the server, by lock type.", "type"),
		ops:             d("operations_total", "Lock commands and atomic64 operations executed, by operation and status.", "op", "status"),
		wait:            d("lock_wait_seconds", "Time blocking lock requests waited before they were granted (0 when granted at once), by lock type.", "type"),
		hold:            d("lock_hold_seconds", "Time from a grant to the unlock that ended the hold, by lock type (holds that end by lease expiry, release or client removal are not observed).", "type"),
		counters:        d("debug_events_total", "The 45 DLock debug counters (reset by ResetStats).", "counter"),
		forced:          d("force_releases_total", "Holds ended by an operator's force-release."),
		adminReqs:       d("admin_requests_total", "Admin requests (lock listing, top, force-release) served."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.ready, c.recoveryPending, c.clients, c.conns, c.handshakes,
		c.objects, c.locks, c.held, c.waiters, c.ops, c.wait, c.hold, c.counters, c.forced, c.adminReqs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one snapshot of the server per
// scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	o := c.srv.Observe()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.buildInfo, 1, c.build.Version, c.build.Revision, c.build.GoVersion)
	ready := 0.0
	if o.Ready && o.Serving {
		ready = 1
	}
	gauge(c.ready, ready)
	gauge(c.recoveryPending, float64(o.RecoveryPending))
	gauge(c.clients, float64(o.Clients-o.AbnormalClients), "connected")
	gauge(c.clients, float64(o.AbnormalClients), "disconnected")
	gauge(c.conns, float64(o.Conns))
	gauge(c.handshakes, float64(o.Handshakes))
	gauge(c.objects, float64(o.Objects))
	for t, name := range typeNames {
		gauge(c.locks, float64(o.Locks[t]), name)
		gauge(c.held, float64(o.Held[t]), name)
		gauge(c.waiters, float64(o.Waiters[t]), name)
		for _, h := range []struct {
			d *prometheus.Desc
			v dlockserver.Histogram
		}{{c.wait, o.Wait[t]}, {c.hold, o.Hold[t]}} {
			buckets := make(map[float64]uint64, len(dlockserver.HistogramBounds))
			for i, b := range dlockserver.HistogramBounds {
				buckets[b] = h.v.Counts[i]
			}
			ch <- prometheus.MustNewConstHistogram(h.d, h.v.Count, h.v.Sum, buckets, name)
		}
	}
	for k := range o.Ops {
		for s, n := range o.Ops[k] {
			// Every operation has its success series; other statuses
			// appear once they happen.
			if n == 0 && s != 0 {
				continue
			}
			status := "other"
			if s < dlockserver.OpStatusOther {
				status = statusName(dlockserver.OpStatuses[s])
			}
			counter(c.ops, n, dlockserver.OpKindName(k), status)
		}
	}
	for i, v := range o.Counters {
		counter(c.counters, v, dlock.Counter(i).String())
	}
	counter(c.forced, o.ForceReleased)
	counter(c.adminReqs, o.AdminRequests)
}

// statusName is the DLOCK_* name of st ("-1" for ErrGeneric).
func statusName(st dlock.Status) string {
	if st == dlock.ErrGeneric {
		return "-1"
	}
	if st.Known() {
		return st.String()
	}
	return strconv.Itoa(int(st))
}
