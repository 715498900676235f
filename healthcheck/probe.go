package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/version"
)

// resultOK is the LastResult of a passing probe.
const resultOK = "ok"

var userAgent = "edgeagent-healthcheck/" + version.Version

// probe runs one check against addr from this node (a plain socket in the
// agent's network namespace, so it takes the path traffic takes) and
// returns whether it passed and what happened.
func probe(ctx context.Context, addr netip.AddrPort, h model.HealthSpec) (bool, string) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = model.DefaultHealth.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch h.Type {
	case model.HealthNone:
		return true, resultOK
	case model.HealthHTTP:
		err = probeHTTP(ctx, addr, h)
	default:
		err = probeTCP(ctx, addr)
	}
	if err != nil {
		return false, describe(err, timeout)
	}
	return true, resultOK
}

// dialer opens probe connections: no keep-alive (a probe lives for one
// exchange; skipping it saves four setsockopt calls per probe).
var dialer = net.Dialer{KeepAlive: -1}

func dial(ctx context.Context, addr netip.AddrPort) (*net.TCPConn, error) {
	return dialer.DialTCP(ctx, "tcp", netip.AddrPort{}, addr)
}

// closeHard closes with RST instead of FIN: probes are the active closer, and
// a normal close would leave every probe socket in TIME_WAIT on the node
// (10,000 reals every 5 s would hold ~120,000 of them). HAProxy's checks do
// the same.
func closeHard(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// probeTCP passes when a connection is established.
func probeTCP(ctx context.Context, addr netip.AddrPort) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	closeHard(c)
	return nil
}

// probeHTTP sends one GET on a fresh connection (no reuse: each probe tests
// that the real still accepts connections) and passes when the status is
// expected. Redirects are not followed: a 3xx is judged as it is.
func probeHTTP(ctx context.Context, addr netip.AddrPort, h model.HealthSpec) error {
	path := h.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Close = true
	req.Header.Set("User-Agent", userAgent)

	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer closeHard(c)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	// Cancellation (agent stopping) interrupts a blocked read or write.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := req.Write(c); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), req)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	_ = resp.Body.Close()
	if !h.Accepts(resp.StatusCode) {
		return fmt.Errorf("HTTP %d, expected %s", resp.StatusCode, expected(h))
	}
	return nil
}

func expected(h model.HealthSpec) string {
	if len(h.ExpectedStatus) == 0 {
		return "200-399"
	}
	s := make([]string, len(h.ExpectedStatus))
	for i, r := range h.ExpectedStatus {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// describe turns a probe error into a short LastResult: "timeout after 2s",
// "connect: connection refused", "read response: EOF", "HTTP 500, expected
// 200-399".
func describe(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout after %s", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect: connection refused"
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		prefix, _, _ := strings.Cut(err.Error(), ":")
		if strings.HasPrefix(prefix, "read response") || strings.HasPrefix(prefix, "send request") {
			return prefix + ": " + se.Error()
		}
		return se.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
