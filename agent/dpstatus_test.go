package agent

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/dataplane"
)

// The dataplane's own status becomes /status's dataplane object field by
// field; the JSON is the contract (docs/DESIGN.md), so it is compared
// whole.
func TestDataplaneStatusConversion(t *testing.T) {
	since := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   dataplane.Status
		want string
	}{
		{
			name: "before the first sync",
			in:   dataplane.Status{Interface: "edge-vip0", Masquerade: true},
			want: `{"interface":"edge-vip0","interfaceKind":"","masquerade":true,"rules":0}`,
		},
		{
			name: "healthy, mode detected",
			in: dataplane.Status{Interface: "edge-vip0", InterfaceKind: dataplane.KindDummy, Masquerade: true,
				Sysctls: map[string]string{"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}, Rules: 60274,
				LastSync: since, IPTablesMode: dataplane.ModeNFT, IPTablesModeReason: "no kubelet chains; nft holds 0 rules, legacy 0"},
			want: `{"interface":"edge-vip0","interfaceKind":"dummy","masquerade":true,` +
				`"sysctls":{"net.ipv4.ip_forward":"1","net.ipv6.conf.all.forwarding":"1"},"rules":60274,` +
				`"lastSync":"2026-11-30T12:00:00Z","iptablesMode":"nft","iptablesModeReason":"no kubelet chains; nft holds 0 rules, legacy 0"}`,
		},
		{
			name: "two steps failing",
			in: dataplane.Status{Interface: "vips", InterfaceKind: dataplane.KindBridge, Sysctls: map[string]string{"net.ipv4.ip_forward": "0"},
				LastSync: since.Add(time.Minute), LastError: "set sysctl net.ipv4.ip_forward=1 (it is 0): read-only file system\napply IPv4 rules: exit status 1",
				IPTablesMode: dataplane.ModeLegacy, IPTablesModeReason: "set in the configuration (dataplane.iptablesMode)",
				Failures: []dataplane.Failure{
					{Step: "sysctl", Err: errors.New("set sysctl net.ipv4.ip_forward=1 (it is 0): read-only file system"), Since: since},
					{Step: "iptables-ipv4", Err: errors.New("apply IPv4 rules: exit status 1"), Since: since.Add(time.Minute)},
				},
				FailingSince: since},
			want: `{"interface":"vips","interfaceKind":"bridge","masquerade":false,"sysctls":{"net.ipv4.ip_forward":"0"},"rules":0,` +
				`"lastSync":"2026-11-30T12:01:00Z","lastError":"set sysctl net.ipv4.ip_forward=1 (it is 0): read-only file system\napply IPv4 rules: exit status 1",` +
				`"iptablesMode":"legacy","iptablesModeReason":"set in the configuration (dataplane.iptablesMode)",` +
				`"failures":[{"step":"sysctl","error":"set sysctl net.ipv4.ip_forward=1 (it is 0): read-only file system","since":"2026-11-30T12:00:00Z"},` +
				`{"step":"iptables-ipv4","error":"apply IPv4 rules: exit status 1","since":"2026-11-30T12:01:00Z"}],` +
				`"failingSince":"2026-11-30T12:00:00Z"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(dataplaneStatus(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("JSON:\n got %s\nwant %s", b, tc.want)
			}
		})
	}
	// The /status document does not share the dataplane's map.
	in := dataplane.Status{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}
	dataplaneStatus(in).Sysctls["net.ipv4.ip_forward"] = "0"
	if in.Sysctls["net.ipv4.ip_forward"] != "1" {
		t.Fatal("the converted status aliases the dataplane's sysctls")
	}
}
