package nftables

import (
	"os"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
)

func TestMain(m *testing.M) {
	lbbed.Main()
	os.Exit(m.Run())
}

// nsBackend returns a backend programming namespace ns, closed when the
// test ends.
func nsBackend(t testing.TB, ns *testns.NS, opt Options) *Backend {
	t.Helper()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	opt.NetNS = h
	b := New(opt)
	t.Cleanup(func() {
		b.Close()
		h.Close()
	})
	return b
}
