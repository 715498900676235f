package healthcheck

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

func TestJudgeStatus(t *testing.T) {
	h := model.HealthSpec{Type: model.HealthHTTP}
	only204 := model.HealthSpec{Type: model.HealthHTTP, ExpectedStatus: []model.StatusRange{{Min: 204, Max: 204}, {Min: 300, Max: 302}}}
	cases := []struct {
		line string
		h    model.HealthSpec
		ok   bool
		res  string
	}{
		{"HTTP/1.1 200 OK\r", h, true, "ok"},
		{"HTTP/1.0 404 Not Found", h, false, "HTTP 404, expected 200-399"},
		{"HTTP/1.1 200", h, true, "ok"},
		{"HTTP/1.1 399 Whatever", h, true, "ok"},
		{"HTTP/1.1 302 Found", only204, true, "ok"},
		{"HTTP/1.1 200 OK", only204, false, "HTTP 200, expected 204,300-302"},
		{"HTTP/1.1 20", h, false, `read response: malformed status line "HTTP/1.1 20"`},
		{"HTTP/1.1 2000 OK", h, false, `read response: malformed status line "HTTP/1.1 2000 OK"`},
		{"HTTP/1.1 099 x", h, false, `read response: malformed status line "HTTP/1.1 099 x"`},
		{"SSH-2.0-OpenSSH_9.2", h, false, `read response: malformed status line "SSH-2.0-OpenSSH_9.2"`},
		{"", h, false, `read response: malformed status line ""`},
	}
	for _, c := range cases {
		ok, res := judgeStatus([]byte(c.line), c.h)
		if ok != c.ok || res != c.res {
			t.Errorf("%q: got %v %q, want %v %q", c.line, ok, res, c.ok, c.res)
		}
	}
}

// rawServer answers every connection with reply and closes it.
func rawServer(t *testing.T, reply string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Read(make([]byte, 4096))
				_, _ = c.Write([]byte(reply))
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestProbeHTTPOddServers(t *testing.T) {
	t.Parallel()
	h := httpSpec(time.Second)
	cases := []struct {
		reply string
		ok    bool
		res   string
	}{
		{"HTTP/1.1 204 No Content\r\n\r\n", true, "ok"},
		{"", false, "read response: connection closed before the status line"},
		{"SSH-2.0-OpenSSH_9.2\r\n", false, `read response: malformed status line "SSH-2.0-OpenSSH_9.2"`},
		{string(make([]byte, 600)), false, "read response: no status line in the first 512 bytes"},
	}
	for _, c := range cases {
		addr := rawServer(t, c.reply)
		if ok, res := probe(t, addr, h); ok != c.ok || res != c.res {
			t.Errorf("reply %.30q: got %v %q, want %v %q", c.reply, ok, res, c.ok, c.res)
		}
	}
}
