package healthcheck

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/version"
	"golang.org/x/sys/unix"
)

// The engine runs probes as non-blocking sockets on one epoll instance,
// driven by the prober's single goroutine. At 10,000 reals every 5 s a
// goroutine (and a Go netpoll hand-off, timer and thread wake-up) per probe
// costs more CPU than the probes themselves; here a probe is a socket, a
// connect, an epoll registration and a close, and one epoll_wait collects
// the results of many. Probes use plain sockets in the agent's network
// namespace, so they leave the node the way traffic to the reals does.

// resultOK is the LastResult of a passing probe.
const resultOK = "ok"

// statusLineMax bounds what a probe reads of an HTTP answer: the status
// line is all it judges.
const statusLineMax = 512

const (
	phaseConnecting = iota
	phaseReading
)

// probeConn is one probe in flight.
type probeConn struct {
	t        *target
	fd       int
	phase    int
	start    time.Time
	deadline time.Time
	index    int // in the engine's deadline heap
	n        int
	buf      []byte
}

// outcome is one finished probe.
type outcome struct {
	t      *target
	ok     bool
	result string
	took   time.Duration
}

type engine struct {
	ep, efd int
	// epf holds ep in the Go runtime's poller: waiting parks the goroutine
	// until ep has events instead of blocking a thread in epoll_wait (which
	// would keep the runtime's sysmon polling every 20µs to take its P back).
	epf    *os.File
	epc    syscall.RawConn
	conns  map[int]*probeConn
	byDL   deadlines
	events []unix.EpollEvent
	done   []outcome

	// mu guards efd against kick after close: kick runs on other goroutines.
	mu     sync.Mutex
	closed bool
}

func newEngine() (*engine, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("epoll nonblock: %w", err)
	}
	epf := os.NewFile(uintptr(ep), "healthcheck-epoll")
	epc, err := epf.SyscallConn()
	if err != nil {
		epf.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		epf.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		epf.Close()
		unix.Close(efd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return &engine{ep: ep, efd: efd, epf: epf, epc: epc, conns: map[int]*probeConn{}, events: make([]unix.EpollEvent, 256)}, nil
}

// close abandons the probes in flight and releases the engine.
func (e *engine) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	for fd := range e.conns {
		unix.Close(fd)
	}
	e.conns, e.byDL = nil, nil
	e.epf.Close()
	unix.Close(e.efd)
}

// kick interrupts a wait; safe from any goroutine, and after close.
func (e *engine) kick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		_, _ = unix.Write(e.efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

func (e *engine) inflight() int { return len(e.conns) }

// nextDeadline is when the earliest probe in flight times out.
func (e *engine) nextDeadline() (time.Time, bool) {
	if len(e.byDL) == 0 {
		return time.Time{}, false
	}
	return e.byDL[0].deadline, true
}

// take returns the probes finished since the last take.
func (e *engine) take() []outcome {
	d := e.done
	e.done = nil
	return d
}

// start opens a probe of t.
func (e *engine) start(t *target, now time.Time) {
	fail := func(res string) { e.done = append(e.done, outcome{t: t, result: res}) }
	ip, port := t.key.addr.Addr().Unmap(), int(t.key.addr.Port())
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	if ip.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail("socket: " + err.Error())
		return
	}
	// Close with RST rather than FIN: the prober closes first, and a normal
	// close would leave every probe socket in TIME_WAIT on the node (10,000
	// reals every 5 s would hold ~120,000 of them). HAProxy's checks do the
	// same.
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		unix.Close(fd)
		fail("connect: " + err.Error())
		return
	}
	// Edge-triggered, for both phases: the connect completing raises
	// EPOLLOUT, the answer arriving EPOLLIN, with no epoll_ctl in between.
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(e.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		fail("epoll_ctl: " + err.Error())
		return
	}
	timeout := t.spec.Timeout
	if timeout <= 0 {
		timeout = model.DefaultHealth.Timeout
	}
	c := &probeConn{t: t, fd: fd, start: now, deadline: now.Add(timeout)}
	e.conns[fd] = c
	heap.Push(&e.byDL, c)
}

// wait blocks for up to d, then handles what happened: connections made or
// refused, answers read, probes timed out.
func (e *engine) wait(d time.Duration) error {
	n := 0
	var werr error
	if err := e.epf.SetReadDeadline(time.Now().Add(max(d, 0))); err != nil {
		return fmt.Errorf("epoll deadline: %w", err)
	}
	err := e.epc.Read(func(uintptr) bool {
		n, werr = unix.EpollWait(e.ep, e.events, 0)
		if werr == unix.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	})
	switch {
	case werr != nil:
		return fmt.Errorf("epoll_wait: %w", werr)
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("epoll wait: %w", err)
	}
	now := time.Now()
	for _, ev := range e.events[:max(n, 0)] {
		fd := int(ev.Fd)
		if fd == e.efd {
			var b [8]byte
			_, _ = unix.Read(e.efd, b[:])
			continue
		}
		if c := e.conns[fd]; c != nil {
			e.handle(c, now)
		}
	}
	for len(e.byDL) > 0 && !e.byDL[0].deadline.After(now) {
		c := e.byDL[0]
		e.finish(c, now, false, fmt.Sprintf("timeout after %s", c.deadline.Sub(c.start)))
	}
	return nil
}

func (e *engine) handle(c *probeConn, now time.Time) {
	switch c.phase {
	case phaseConnecting:
		soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = unix.Errno(soerr)
		}
		if err != nil {
			e.finish(c, now, false, "connect: "+err.Error())
			return
		}
		if c.t.spec.Type != model.HealthHTTP {
			e.finish(c, now, true, resultOK)
			return
		}
		// The request is a few hundred bytes: a fresh socket's buffer takes
		// it whole.
		if n, err := unix.Write(c.fd, c.t.request); err != nil || n != len(c.t.request) {
			e.finish(c, now, false, fmt.Sprintf("send request: %v", cmpErr(err, "short write")))
			return
		}
		c.phase, c.buf = phaseReading, make([]byte, statusLineMax)
	case phaseReading:
		// Edge-triggered: read until the socket has nothing more.
		for {
			n, err := unix.Read(c.fd, c.buf[c.n:])
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				return
			case err != nil:
				e.finish(c, now, false, "read response: "+err.Error())
				return
			case n == 0:
				e.finish(c, now, false, "read response: connection closed before the status line")
				return
			}
			c.n += n
			if i := bytes.IndexByte(c.buf[:c.n], '\n'); i >= 0 {
				ok, res := judgeStatus(c.buf[:i], c.t.spec)
				e.finish(c, now, ok, res)
				return
			}
			if c.n == len(c.buf) {
				e.finish(c, now, false, "read response: no status line in the first 512 bytes")
				return
			}
		}
	}
}

func cmpErr(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

func (e *engine) finish(c *probeConn, now time.Time, ok bool, res string) {
	unix.Close(c.fd) // also leaves the epoll set
	delete(e.conns, c.fd)
	heap.Remove(&e.byDL, c.index)
	e.done = append(e.done, outcome{t: c.t, ok: ok, result: res, took: now.Sub(c.start)})
}

// judgeStatus reads an HTTP status line ("HTTP/1.1 200 OK") and checks the
// code against the spec.
func judgeStatus(line []byte, h model.HealthSpec) (bool, string) {
	line = bytes.TrimRight(line, "\r")
	code := -1
	if rest, ok := bytes.CutPrefix(line, []byte("HTTP/")); ok {
		if _, after, ok := bytes.Cut(rest, []byte(" ")); ok && len(after) >= 3 && (len(after) == 3 || after[3] == ' ') {
			if n, err := strconv.Atoi(string(after[:3])); err == nil && n >= 100 && n <= 599 {
				code = n
			}
		}
	}
	if code < 0 {
		return false, fmt.Sprintf("read response: malformed status line %q", truncate(line, 64))
	}
	if !h.Accepts(code) {
		return false, fmt.Sprintf("HTTP %d, expected %s", code, expected(h))
	}
	return true, resultOK
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func expected(h model.HealthSpec) string {
	if len(h.ExpectedStatus) == 0 {
		return "200-399"
	}
	var b bytes.Buffer
	for i, r := range h.ExpectedStatus {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// httpRequest is the GET an HTTP check sends: HTTP/1.1 with Connection:
// close (each probe tests a fresh connection; nothing is reused), Host from
// the check or the real's address. Redirects are not followed: a 3xx is
// judged as it is.
func httpRequest(addr netip.AddrPort, h model.HealthSpec) []byte {
	path := h.Path
	if path == "" {
		path = "/"
	}
	host := h.Host
	if host == "" {
		host = addr.String()
	}
	return fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: edgeagent-healthcheck/%s\r\nAccept: */*\r\nConnection: close\r\n\r\n",
		path, host, version.Version)
}

// deadlines is a min-heap of probes in flight by deadline.
type deadlines []*probeConn

func (q deadlines) Len() int           { return len(q) }
func (q deadlines) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q deadlines) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *deadlines) Push(x any) {
	c := x.(*probeConn)
	c.index = len(*q)
	*q = append(*q, c)
}
func (q *deadlines) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	c.index = -1
	return c
}
