package main

/*
#include "dlock_types.h"
*/
import "C"

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
)

const (
	maxServers  = 32      // MAX_NUM_SERVER
	maxServerID = 0xFFFFF // MAX_SERVER_ID
)

// serverLib is the process-wide server library (dserver_lib_init).
var serverLib struct {
	mu      sync.Mutex
	inited  bool
	max     int
	nextID  int
	servers map[int]*runningServer
}

type runningServer struct {
	srv  *dlockserver.Server
	done chan struct{}
}

// dserver_lib_init initialises the server library for up to max_server_num
// (1..32) servers.
//
//export dserver_lib_init
func dserver_lib_init(maxServerNum C.uint) C.int {
	if maxServerNum == 0 || maxServerNum > maxServers {
		return errGeneric
	}
	serverLib.mu.Lock()
	defer serverLib.mu.Unlock()
	if serverLib.inited {
		return errGeneric
	}
	serverLib.inited = true
	serverLib.max = int(maxServerNum)
	serverLib.nextID = 1
	serverLib.servers = make(map[int]*runningServer)
	return 0
}

// dserver_lib_deinit stops every server and uninitialises the
// library. Calling it twice is harmless.
//
//export dserver_lib_deinit
func dserver_lib_deinit() {
	serverLib.mu.Lock()
	if !serverLib.inited {
		serverLib.mu.Unlock()
		logger.Error("dlock: dserver_lib_deinit: server library not initialised")
		return
	}
	servers := serverLib.servers
	serverLib.servers = nil
	serverLib.inited = false
	serverLib.mu.Unlock()
	for _, rs := range servers {
		rs.stop()
	}
}

func (rs *runningServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs.srv.Shutdown(ctx)
	select {
	case <-rs.done:
	case <-ctx.Done():
	}
}

// server_start validates cfg and starts a primary server listening on
// server_ip_str:server_port (checks in upstream's order). The upstream
// C++ declaration takes references; at the ABI level they are these
// pointers.
//
//export server_start
func server_start(cfg *C.struct_server_cfg, serverID *C.int) C.int {
	if cfg == nil || serverID == nil {
		return errGeneric
	}
	if cfg._type != C.SERVER_PRIMARY {
		return errGeneric
	}
	pc := (*C.struct_primary_cfg)(unsafe.Pointer(&cfg.anon0[0]))
	if !validPort(pc.server_port) || !validPort(pc.replica_port) || bool(pc.replica_enable) ||
		pc.recovery_client_num > dlock.MaxClients || pc.num_of_replica != 0 {
		return errGeneric
	}
	if !sslComplete(&cfg.ssl) {
		return errGeneric
	}
	if cfg.tp_mode != C.SEPERATE_CONN && cfg.tp_mode != C.UNI_CONN {
		return errGeneric
	}

	serverLib.mu.Lock()
	defer serverLib.mu.Unlock()
	if !serverLib.inited {
		return errGeneric
	}
	if len(serverLib.servers) >= serverLib.max {
		*serverID = -1
		return code(dlock.ErrServerNoResource)
	}
	id := serverLib.nextID
	for serverLib.servers[id] != nil {
		id = nextServerID(id)
	}
	serverLib.nextID = nextServerID(id)
	*serverID = C.int(id)

	setLogLevel(cfg.log_level)
	ssl, ok := readSSL(&cfg.ssl)
	if !ok {
		return errGeneric
	}
	if !validCPUSet(pc.ctrl_cpuset) || !validCPUSet(pc.cmd_cpuset) {
		return errGeneric
	}
	if !selectDevice(cfg.dev_name, &cfg.eid) {
		return errGeneric
	}
	ip, ok := dottedIPv4(pc.server_ip_str)
	if !ok {
		return errGeneric
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(portOrDefault(pc.server_port)))
	scfg := dlockserver.Config{
		Addr:            addr,
		RecoveryClients: int(pc.recovery_client_num),
		TPMode:          uint8(cfg.tp_mode),
		// Upstream keeps a disconnected client's registration and locks
		// until it is evicted; so does the C library.
		SessionTimeout: -1,
		Logger:         logger,
		TLS:            tlsOptions(ssl),
	}
	srv, err := dlockserver.New(scfg)
	if err != nil {
		logger.Error("dlock: server_start", "err", err)
		return errGeneric
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		logger.Error("dlock: server_start: listen", "addr", addr, "err", err)
		return errGeneric
	}
	rs := &runningServer{srv: srv, done: make(chan struct{})}
	go func() {
		defer close(rs.done)
		srv.Serve(ln)
	}()
	serverLib.servers[id] = rs
	return 0
}

// nextServerID is the id after id: 1..0xFFFFF, wrapping.
func nextServerID(id int) int {
	if id >= maxServerID {
		return 1
	}
	return id + 1
}

// lookupServer returns the running server id (checks in upstream's order).
func lookupServer(id C.int) (*runningServer, bool) {
	if id <= 0 || id > maxServerID {
		return nil, false
	}
	serverLib.mu.Lock()
	defer serverLib.mu.Unlock()
	if !serverLib.inited {
		return nil, false
	}
	rs := serverLib.servers[int(id)]
	return rs, rs != nil
}

// server_stop stops a server: its clients' connections are closed and all
// its state is freed.
//
//export server_stop
func server_stop(serverID C.int) C.int {
	if serverID <= 0 || serverID > maxServerID {
		return errGeneric
	}
	serverLib.mu.Lock()
	if !serverLib.inited {
		serverLib.mu.Unlock()
		return errGeneric
	}
	rs := serverLib.servers[int(serverID)]
	delete(serverLib.servers, int(serverID))
	serverLib.mu.Unlock()
	if rs == nil {
		return errGeneric
	}
	rs.stop()
	return 0
}

// get_server_debug_stats copies a server's 45 counters.
//
//export get_server_debug_stats
func get_server_debug_stats(serverID C.int, stats *C.struct_debug_stats) C.int {
	if serverID <= 0 || serverID > maxServerID || stats == nil {
		return errGeneric
	}
	rs, ok := lookupServer(serverID)
	if !ok {
		return errGeneric
	}
	copyStats(stats, rs.srv.Stats())
	return 0
}

// clear_server_debug_stats zeroes a server's counters.
//
//export clear_server_debug_stats
func clear_server_debug_stats(serverID C.int) C.int {
	rs, ok := lookupServer(serverID)
	if !ok {
		return errGeneric
	}
	rs.srv.ResetStats()
	return 0
}

func copyStats(dst *C.struct_debug_stats, st dlock.Stats) {
	for i, v := range st {
		dst.stats[i] = C.uint64_t(v)
	}
}
