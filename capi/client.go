package main

/*
#include "dlock_types.h"
*/
import "C"

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/dlock-io/dlock"
)

const (
	// maxClientInstances caps client_init per process (upstream: 32
	// documented, 64 in practice; we allow more).
	maxClientInstances = 256
	controlTimeout     = 10 * time.Second // CONTROL_SOCKET_TIMEOUT
	statsRateLimit     = 10000            // calls per window
	statsWindow        = time.Second
)

// clientLib is the process-wide client library (dclient_lib_init) and its
// registry of client instances, keyed by client id.
var clientLib struct {
	mu      sync.Mutex
	inited  bool
	port    int
	tpMode  uint8
	ssl     sslSettings
	clients map[int32]*instance

	// stats rate limit (10000 calls per second), process-wide
	statsStart time.Time
	statsCalls int
}

func init() { clientLib.statsStart = time.Now() }

// instance is one client instance: the Go client plus what the C API keeps
// around it.
type instance struct {
	id int32
	c  *dlock.Client // the server's client; nil for a sharded cluster (sh)
	sh *shardedState // a sharded cluster's router and id mappings; nil for one server

	mu    sync.Mutex
	locks map[int32]*dlock.Lock     // get_lock'd locks by id
	got   map[int32]*dlock.Atomic64 // objects this client has got (umo_atomic64_get)
	async *asyncOp                  // the outstanding async operation, if any
	extra dlock.Stats               // counters of outcomes decided here rather than in the Go client
}

func newInstance(c *dlock.Client) *instance {
	return &instance{
		id:    c.ID(),
		c:     c,
		locks: make(map[int32]*dlock.Lock),
		got:   make(map[int32]*dlock.Atomic64),
	}
}

// inc counts a C-layer outcome.
func (in *instance) inc(c dlock.Counter) {
	in.mu.Lock()
	in.extra.Inc(c)
	in.mu.Unlock()
}

// lookupClient returns the library state and the instance for id: inited
// false when the library is not initialised, in nil when the id is unknown.
func lookupClient(id C.int) (inited bool, in *instance) {
	clientLib.mu.Lock()
	defer clientLib.mu.Unlock()
	if !clientLib.inited {
		return false, nil
	}
	return true, clientLib.clients[int32(id)]
}

func clientConfig() *dlock.Config {
	clientLib.mu.Lock()
	defer clientLib.mu.Unlock()
	cfg := &dlock.Config{DialTimeout: controlTimeout, Logger: logger, TLS: tlsOptions(clientLib.ssl)}
	setTPMode(cfg, clientLib.tpMode)
	return cfg
}

// clientTPMode is the transport mode clients announce.
func clientTPMode() uint8 {
	clientLib.mu.Lock()
	defer clientLib.mu.Unlock()
	return clientLib.tpMode
}

// dclient_lib_init initialises the client library (checks in
// upstream's order).
//
//export dclient_lib_init
func dclient_lib_init(cfg *C.struct_client_cfg) C.int {
	const fn = "dclient_lib_init"
	if cfg == nil {
		return failed(fn, code(dlock.ErrInval), "cfg is NULL")
	}
	if !validPort(cfg.primary_port) {
		return failed(fn, code(dlock.ErrInval), "invalid primary_port: want 1024..65535, or 0 or less for the default 21616",
			"primary_port", int(cfg.primary_port))
	}
	if f := sslMissing(&cfg.ssl); f != "" {
		return failed(fn, code(dlock.ErrInval), "ssl.ssl_enable is set but ssl."+f+" is NULL")
	}
	clientLib.mu.Lock()
	defer clientLib.mu.Unlock()
	if clientLib.inited {
		return failed(fn, errGeneric, "the client library is already initialised")
	}
	if cfg.tp_mode != C.SEPERATE_CONN && cfg.tp_mode != C.UNI_CONN {
		return failed(fn, errGeneric, "invalid tp_mode: want 0 (SEPERATE_CONN) or 1 (UNI_CONN)", "tp_mode", int(cfg.tp_mode))
	}
	setLogLevel(cfg.log_level)
	if !selectDevice(fn, cfg.dev_name, &cfg.eid) {
		return errGeneric
	}
	ssl, err := readSSL(&cfg.ssl)
	if err != nil {
		return failed(fn, errGeneric, "TLS setup failed", "err", err)
	}
	clientLib.inited = true
	clientLib.port = portOrDefault(cfg.primary_port)
	clientLib.tpMode = uint8(cfg.tp_mode)
	clientLib.ssl = ssl
	clientLib.clients = make(map[int32]*instance)
	return 0
}

// dclient_lib_deinit destroys every client instance locally — closing its
// connection without deregistering, so the server keeps its registration
// and locks — and uninitialises the library (SEMANTICS.md §8.1).
//
//export dclient_lib_deinit
func dclient_lib_deinit() {
	clientLib.mu.Lock()
	if !clientLib.inited {
		clientLib.mu.Unlock()
		return
	}
	clients := clientLib.clients
	clientLib.clients = nil
	clientLib.inited = false
	clientLib.ssl = sslSettings{}
	clientLib.mu.Unlock()
	for _, in := range clients {
		if in.sh != nil {
			in.sh.r.Close()
			continue
		}
		in.c.Close()
	}
}

func serverAddr(ip string) string {
	clientLib.mu.Lock()
	port := clientLib.port
	clientLib.mu.Unlock()
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// client_init creates a client instance connected to ip_str:primary_port
// and writes its id.
//
//export client_init
func client_init(clientID *C.int, ipStr *C.char) C.int {
	const fn = "client_init"
	if clientID == nil || ipStr == nil {
		return failed(fn, code(dlock.ErrInval), "p_client_id or ip_str is NULL")
	}
	if inited, _ := lookupClient(0); !inited {
		return failed(fn, errGeneric, "the client library is not initialised (dclient_lib_init)")
	}
	ip, ok := dottedIPv4(ipStr)
	if !ok {
		return failed(fn, errGeneric, "ip_str is not a dotted IPv4 address", "ip_str", C.GoString(ipStr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	addr := serverAddr(ip)
	cfg := clientConfig()
	r, err := dialSharded(ctx, addr, cfg)
	switch {
	case err != nil:
		return connectFailed(fn, addr, clientTPMode(), err)
	case r != nil:
		return addSharded(fn, r, addr, clientID)
	}
	c, err := dlock.Dial(ctx, addr, cfg)
	if err != nil {
		return connectFailed(fn, addr, clientTPMode(), err)
	}
	in := newInstance(c)
	clientLib.mu.Lock()
	var why string
	switch {
	case !clientLib.inited:
		why = "the client library was deinitialised meanwhile"
	case len(clientLib.clients) >= maxClientInstances:
		why = "too many client instances in this process"
	case clientLib.clients[in.id] != nil:
		why = "the server gave an id this process already uses"
	}
	if why != "" {
		clientLib.mu.Unlock()
		c.Shutdown(ctx)
		return failed(fn, errGeneric, why, "client_id", in.id)
	}
	clientLib.clients[in.id] = in
	clientLib.mu.Unlock()
	*clientID = C.int(in.id)
	return 0
}

// addSharded registers the instance of a sharded cluster's router r, as
// client_init does an instance of one server.
func addSharded(fn string, r *dlock.Router, addr string, clientID *C.int) C.int {
	clientLib.mu.Lock()
	var why string
	switch {
	case !clientLib.inited:
		why = "the client library was deinitialised meanwhile"
	case len(clientLib.clients) >= maxClientInstances:
		why = "too many client instances in this process"
	}
	if why != "" {
		clientLib.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
		defer cancel()
		r.Shutdown(ctx)
		return failed(fn, errGeneric, why)
	}
	in := newShardedInstance(r, addr)
	clientLib.clients[in.id] = in
	clientLib.mu.Unlock()
	*clientID = C.int(in.id)
	return 0
}

// connectFailed logs why registering with the server at addr failed, and
// returns the code client_init and client_reinit return for err: a refused
// connection or a server not ready yet (a recovery in progress, which a
// program retries) at NOTICE, anything else at ERR.
func connectFailed(fn, addr string, tpMode uint8, err error) C.int {
	rc := connectStatus(err)
	var st dlock.Status
	switch {
	case rc == code(dlock.ErrNotReady):
		logger.Log(context.Background(), levelNotice, "dlock: "+fn+": the server is not ready (connection refused, or a recovery in progress)",
			"addr", addr, "err", err, "ret", int(rc))
	case errors.As(err, &st) && st == dlock.ErrGeneric:
		// The server refuses a registration with -1 when the client's
		// transport mode differs from its own (or, for client_reinit,
		// during a recovery this client already uploaded its locks in).
		failed(fn, rc, "the server refused the registration: is tp_mode the same on both sides?", "addr", addr, "tp_mode", int(tpMode))
	case errors.As(err, &st):
		failed(fn, rc, "the server refused the registration", "addr", addr, "err", err)
	default:
		failed(fn, rc, "cannot connect to the server", "addr", addr, "err", err)
	}
	return rc
}

// client_reinit re-registers an existing client instance, under the same
// id, over a new connection to ip_str (SEMANTICS.md §9).
//
//export client_reinit
func client_reinit(clientID C.int, ipStr *C.char) C.int {
	const fn = "client_reinit"
	if ipStr == nil {
		return failed(fn, code(dlock.ErrInval), "ip_str is NULL")
	}
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return failed(fn, errGeneric, "the client library is not initialised (dclient_lib_init)")
	case in == nil:
		return failed(fn, code(dlock.ErrInval), "no such client instance", "client_id", int(clientID))
	}
	ip, ok := dottedIPv4(ipStr)
	if !ok {
		return failed(fn, errGeneric, "ip_str is not a dotted IPv4 address", "ip_str", C.GoString(ipStr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	addr := serverAddr(ip)
	if in.sh != nil {
		if err := in.reinitShards(ctx, addr); err != nil {
			return connectFailed(fn, addr, clientTPMode(), err)
		}
	} else if err := in.c.Reinit(ctx, addr); err != nil {
		return connectFailed(fn, addr, clientTPMode(), err)
	}
	in.mu.Lock()
	in.forgetAsync()
	in.extra = dlock.Stats{}
	in.mu.Unlock()
	in.rekeyLocks()
	return 0
}

// rekeyLocks re-indexes the lock handles by their current ids (a recovery
// may have given a lock a new id). A sharded instance's C ids do not
// change: they are the library's own.
func (in *instance) rekeyLocks() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.sh != nil {
		return
	}
	m := make(map[int32]*dlock.Lock, len(in.locks))
	for _, l := range in.locks {
		m[l.ID()] = l
	}
	in.locks = m
}

// client_deinit deregisters a client instance and destroys it locally
// whatever the outcome (SEMANTICS.md §8.2).
//
//export client_deinit
func client_deinit(clientID C.int) C.int {
	clientLib.mu.Lock()
	if !clientLib.inited {
		clientLib.mu.Unlock()
		return errGeneric
	}
	in := clientLib.clients[int32(clientID)]
	delete(clientLib.clients, int32(clientID))
	clientLib.mu.Unlock()
	if in == nil {
		return errGeneric
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	if in.sh != nil {
		return statusOf(in.sh.r.Shutdown(ctx))
	}
	return statusOf(in.c.Shutdown(ctx))
}

// client_heartbeat checks that the server answers within timeout seconds
// (1..300).
//
//export client_heartbeat
func client_heartbeat(clientID C.int, timeout C.uint) C.int {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return errGeneric
	case timeout == 0 || timeout > dlock.MaxHeartbeatSeconds:
		return code(dlock.ErrInval)
	case in == nil:
		return code(dlock.ErrInval)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout)*time.Second)
	defer cancel()
	return statusOf(in.eachClient(func(c *dlock.Client) error { return c.Heartbeat(ctx) }))
}

// client_reinit_done tells the server the client finished re-registering
// (SEMANTICS.md §9).
//
//export client_reinit_done
func client_reinit_done(clientID C.int) C.int {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return errGeneric
	case in == nil:
		return code(dlock.ErrClientNotInit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	return statusOf(in.eachClient(func(c *dlock.Client) error { return c.ReinitDone(ctx) }))
}

// update_all_locks uploads the client's locks to a new primary in recovery
// (SEMANTICS.md §6.4, §9).
//
//export update_all_locks
func update_all_locks(clientID C.int) C.int {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return errGeneric
	case in == nil:
		return code(dlock.ErrClientNotInit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*controlTimeout)
	defer cancel()
	err := in.eachClient(func(c *dlock.Client) error {
		if in.sh != nil && !clientNewPrimary(c) {
			// A shard whose server kept running kept this client's
			// locks: it has nothing to take (and refuses an upload).
			return nil
		}
		return c.UpdateAllLocks(ctx)
	})
	in.rekeyLocks()
	return statusOf(err)
}

// statsAllowed applies the process-wide rate limit of the client stats
// calls: 10000 per 1-second window, get and clear together.
func statsAllowed() bool {
	clientLib.mu.Lock()
	defer clientLib.mu.Unlock()
	now := time.Now()
	if now.Sub(clientLib.statsStart) > statsWindow {
		clientLib.statsStart = now
		clientLib.statsCalls = 0
	}
	clientLib.statsCalls++
	return clientLib.statsCalls <= statsRateLimit
}

// get_client_debug_stats copies a client instance's counters.
//
//export get_client_debug_stats
func get_client_debug_stats(clientID C.int, stats *C.struct_debug_stats) C.int {
	if stats == nil {
		return code(dlock.ErrInval)
	}
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return code(dlock.ErrClientMgrNotInit)
	case !statsAllowed():
		return code(dlock.ErrAgain)
	case in == nil:
		return code(dlock.ErrClientNotInit)
	}
	var st dlock.Stats
	for _, c := range in.clients() {
		for i, v := range c.Stats() {
			st[i] += v
		}
	}
	in.mu.Lock()
	for i, v := range in.extra {
		st[i] += v
	}
	in.mu.Unlock()
	copyStats(stats, st)
	return 0
}

// clear_client_debug_stats zeroes a client instance's counters.
//
//export clear_client_debug_stats
func clear_client_debug_stats(clientID C.int) C.int {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return code(dlock.ErrClientMgrNotInit)
	case !statsAllowed():
		return code(dlock.ErrAgain)
	case in == nil:
		return code(dlock.ErrClientNotInit)
	}
	for _, c := range in.clients() {
		c.ResetStats()
	}
	in.mu.Lock()
	in.extra = dlock.Stats{}
	in.mu.Unlock()
	return 0
}
