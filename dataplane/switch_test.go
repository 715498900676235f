package dataplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

// TestSwitchBackendsUnderTraffic restarts the dataplane with the other
// rules backend, as a node does when dataplane.backend changes, while a
// client opens connection after connection to a VIP and holds one
// established connection across the switch. The new backend programs its
// objects while the old ones still serve; the old ones go only after that
// (removeOther). No new connection may fail, the held one must go on, and
// afterwards exactly the new backend's objects are in the kernel.
func TestSwitchBackendsUnderTraffic(t *testing.T) {
	for _, tc := range []struct{ from, to Backend }{
		{BackendIPTables, BackendNFTables},
		{BackendNFTables, BackendIPTables},
	} {
		t.Run(fmt.Sprintf("%s-to-%s", tc.from, tc.to), func(t *testing.T) {
			b := newBed(t, 2)
			b.backend = tc.from
			// 300 other services, so the switch's sync takes a while (a
			// restore of ~2,000 iptables lines, ~1,000 nftables elements).
			services := []model.VirtualService{vs("s", "web", "10.200.0.70", 80, model.TCP, model.RoundRobin, realV4(1), realV4(2))}
			for i := range 300 {
				services = append(services, vs("s", fmt.Sprintf("f%d", i), fmt.Sprintf("10.201.%d.%d", i/200, 1+i%200), 80, model.TCP, model.RoundRobin, realV4(1), realV4(2)))
			}
			reconcile(t, b.dataplane(t, true), services...)

			hold := helperCmd(b.client.Name, "EDGE_TEST_ROLE=hold", "EDGE_ADDR=10.200.0.70:80")
			stdin, _ := hold.StdinPipe()
			stdout, _ := hold.StdoutPipe()
			if err := hold.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); hold.Wait() }()
			dec := json.NewDecoder(stdout)
			var held probeResult
			if err := dec.Decode(&held); err != nil || held.Err != "" {
				t.Fatalf("hold: %v %+v", err, held)
			}

			var out bytes.Buffer
			traffic := helperCmd(b.client.Name, "EDGE_TEST_ROLE=probe", "EDGE_ADDR=10.200.0.70:80", "EDGE_PROTO=tcp", "EDGE_SRCS=", "EDGE_FOR=3s")
			traffic.Stdout = &out
			if err := traffic.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(700 * time.Millisecond) // the probe is running
			b.backend = tc.to
			d := b.dataplane(t, true)
			t0 := time.Now()
			reconcile(t, d, services...)
			t1 := time.Now()
			if err := traffic.Wait(); err != nil {
				t.Fatalf("probe: %v", err)
			}
			var all, during, failed int
			var firstAt, lastAt int64
			for dec := json.NewDecoder(&out); ; {
				var r probeResult
				if dec.Decode(&r) != nil {
					break
				}
				all++
				if firstAt == 0 {
					firstAt = r.At
				}
				lastAt = r.At
				if r.At+r.Ns >= t0.UnixNano() && r.At <= t1.UnixNano() {
					during++
				}
				if r.Err != "" {
					failed++
					t.Errorf("connection at %+.1f ms from the switch's start failed: %s", float64(r.At-t0.UnixNano())/1e6, r.Err)
				}
			}
			t.Logf("switch %s → %s took %v (new backend's sync and removal of the old one's objects); %d connections in all, %d overlapping the switch, %d failed",
				tc.from, tc.to, t1.Sub(t0).Round(time.Millisecond), all, during, failed)
			if firstAt > t0.UnixNano() || lastAt < t1.UnixNano() || during == 0 {
				t.Fatalf("the traffic did not span the switch (%d connections, %d during it)", all, during)
			}

			fmt.Fprintln(stdin, "again")
			var again probeResult
			if err := dec.Decode(&again); err != nil || again.Err != "" || again.Name != held.Name {
				t.Fatalf("established connection to %s after the switch: %v %+v", held.Name, err, again)
			}
			ipt, nft := iptablesState(t, b.edge), nftState(t, b.edge)
			if hasIPT, hasNFT := strings.Contains(ipt, ChainPrefix), nft != ""; hasIPT != (tc.to == BackendIPTables) || hasNFT != (tc.to == BackendNFTables) {
				t.Fatalf("after the switch to %s: EDGE- chains %v, table inet edgeagent %v", tc.to, hasIPT, hasNFT)
			}
			if w := d.Status().Warnings; len(w) != 0 {
				t.Fatalf("warnings after the switch: %q", w)
			}
		})
	}
}
