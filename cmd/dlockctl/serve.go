package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dlock-io/dlock/dlockserver"
)

// Frame sizes of the echo baseline: a TLockOp request (16-byte header +
// 28-byte body) and its reply (16 + 24).
const (
	echoRequestLen = 44
	echoReplyLen   = 40
)

// runServe is the hidden "serve" subcommand that bench spawns: a dlock
// server and, with -echo, a raw TCP echo listener. It prints one
// "listening <kind> <addr>" line per listener and serves until stdin
// reaches EOF (its parent went away) or SIGINT/SIGTERM.
func runServe(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "dlock server `address`; empty for none")
	echo := fs.String("echo", "", "also serve the echo baseline on this `address`")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the server to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	ls, err := startListeners(*addr, *echo)
	if err != nil {
		return err
	}
	defer ls.close()
	if ls.dlockAddr != "" {
		fmt.Fprintf(stdout, "listening dlock %s\n", ls.dlockAddr)
	}
	if ls.echoAddr != "" {
		fmt.Fprintf(stdout, "listening echo %s\n", ls.echoAddr)
	}
	fmt.Fprintln(stdout, "ready")
	<-ctx.Done()
	return nil
}

// listeners is a running dlock server and echo listener (either optional).
type listeners struct {
	dlockAddr, echoAddr string
	srv                 *dlockserver.Server
	echo                *echoServer
	done                chan error
}

func startListeners(addr, echo string) (*listeners, error) {
	ls := &listeners{done: make(chan error, 1)}
	if addr != "" {
		srv, err := dlockserver.New(dlockserver.Config{})
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		ls.srv, ls.dlockAddr = srv, ln.Addr().String()
		go func() { ls.done <- srv.Serve(ln) }()
	}
	if echo != "" {
		e, err := listenEcho(echo)
		if err != nil {
			ls.close()
			return nil, err
		}
		ls.echo, ls.echoAddr = e, e.ln.Addr().String()
	}
	return ls, nil
}

func (ls *listeners) close() {
	if ls.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ls.srv.Shutdown(ctx)
		cancel()
		<-ls.done
		ls.srv = nil
	}
	if ls.echo != nil {
		ls.echo.close()
		ls.echo = nil
	}
}

// echoServer answers every 44-byte frame with a 40-byte one: the floor of a
// request/reply exchange of a lock operation on this machine. Replies to
// pipelined frames are written together, as the dlock server does.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func listenEcho(addr string) (*echoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	e := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	e.wg.Add(1)
	go e.accept()
	return e, nil
}

func (e *echoServer) accept() {
	defer e.wg.Done()
	for {
		nc, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		if e.conns == nil {
			e.mu.Unlock()
			nc.Close()
			return
		}
		e.conns[nc] = struct{}{}
		e.mu.Unlock()
		e.wg.Add(1)
		go e.serve(nc)
	}
}

func (e *echoServer) serve(nc net.Conn) {
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		delete(e.conns, nc)
		e.mu.Unlock()
		nc.Close()
	}()
	br := bufio.NewReaderSize(nc, 16<<10)
	bw := bufio.NewWriterSize(nc, 16<<10)
	var req [echoRequestLen]byte
	var rep [echoReplyLen]byte
	for {
		if _, err := io.ReadFull(br, req[:]); err != nil {
			return
		}
		copy(rep[:], req[:16]) // header: magic, version, type, id ...
		rep[3] |= 0x80         // ... as a reply
		rep[8], rep[9], rep[10], rep[11] = echoReplyLen-16, 0, 0, 0
		copy(rep[16:], req[16:echoReplyLen])
		bw.Write(rep[:])
		if br.Buffered() < echoRequestLen {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for nc := range e.conns {
		nc.Close()
	}
	e.conns = nil
	e.mu.Unlock()
	e.wg.Wait()
}

// server is the server a bench run talks to: a child process (whose CPU time
// and memory can be read from /proc) or, with -inproc, listeners in this
// process.
type server struct {
	dlockAddr, echoAddr string
	pid                 int // 0 when in process or external

	cmd   *exec.Cmd
	stdin io.WriteCloser
	local *listeners
}

// startServer starts a server with a dlock listener (unless dlock is
// false) and an echo listener (if echo). inproc runs them in this process.
// A child is pinned to CPU cpu unless it is negative.
func startServer(inproc, dlock, echo bool, cpuprofile string, cpu int) (*server, error) {
	addr, echoAddr := "", ""
	if dlock {
		addr = "127.0.0.1:0"
	}
	if echo {
		echoAddr = "127.0.0.1:0"
	}
	if inproc {
		ls, err := startListeners(addr, echoAddr)
		if err != nil {
			return nil, err
		}
		return &server{dlockAddr: ls.dlockAddr, echoAddr: ls.echoAddr, local: ls}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "-addr", addr, "-echo", echoAddr}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if cpu >= 0 {
		err = startPinned(cmd.Start, cpu)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("spawn server: %w", err)
	}
	s := &server{pid: cmd.Process.Pid, cmd: cmd, stdin: stdin}
	lines := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "listening" && f[1] == "dlock":
				s.dlockAddr = f[2]
			case len(f) == 3 && f[0] == "listening" && f[1] == "echo":
				s.echoAddr = f[2]
			case len(f) == 1 && f[0] == "ready":
				lines <- nil
				io.Copy(io.Discard, stdout)
				return
			}
		}
		lines <- errors.New("server exited before it was ready")
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case err = <-lines:
	case <-t.C:
		err = errors.New("server not ready after 10 s")
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// stop ends the server: a child is asked to exit (SIGTERM, stdin closed)
// and killed by pid if it has not within 5 s.
func (s *server) stop() {
	if s.local != nil {
		s.local.close()
		return
	}
	if s.cmd == nil {
		return
	}
	s.stdin.Close()
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the CPU time (user + system) the server process has used,
// or -1 when it is not a child whose /proc entry can be read.
func (s *server) cpuTime() time.Duration {
	if s.pid == 0 {
		return -1
	}
	return procCPU("/proc/" + strconv.Itoa(s.pid) + "/stat")
}

// clientCPU returns the CPU time this process (the load tool) has used, or
// -1 when the server runs in it too.
func (s *server) clientCPU() time.Duration {
	if s.local != nil {
		return -1
	}
	return procCPU("/proc/self/stat")
}

// procCPU reads the user + system time from a /proc stat file, -1 if it
// cannot.
func procCPU(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	// Fields after the ")" closing the command name: state is field 3,
	// utime field 14, stime field 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(ut+st) * time.Second / clockTicks
}

// memory returns the server's resident set size and its peak in bytes
// (VmRSS, VmHWM of /proc/<pid>/status; of this process when in process).
func (s *server) memory() (rss, hwm int64, err error) {
	path := "/proc/self/status"
	if s.pid != 0 {
		path = "/proc/" + strconv.Itoa(s.pid) + "/status"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			hwm = n << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in %s", path)
	}
	return rss, hwm, nil
}
