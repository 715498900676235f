package nftables

import (
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/internal/testreq"
)

func TestMain(m *testing.M) {
	lbbed.Main()
	os.Exit(m.Run())
}

// requireTools: the kernel tests read and tamper with the table through
// the nft CLI and look at flows with conntrack (hack/install-deps.sh
// installs both); without them they skip, or fail under CI and make test.
func requireTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			testreq.Missing(t, "%s (hack/install-deps.sh installs it): %v", tool, err)
		}
	}
}

// nsBackend returns a backend programming namespace ns, closed when the
// test ends.
func nsBackend(t testing.TB, ns *testns.NS, opt Options) *Backend {
	t.Helper()
	requireTools(t)
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
