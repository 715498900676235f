package apv

import (
	"context"
	"testing"

	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// scanHAWith scans one emulated device configured with haUnit and returns
// its status and metrics.
func scanHAWith(t *testing.T, haUnit string, setup func(*apvemu.Emulator)) (string, *metrics) {
	t.Helper()
	e := apvemu.New(t, testUser, testPass)
	setup(e)
	dir := t.TempDir()
	u, p := writeCreds(t, dir, testUser, testPass)
	ca, _ := e.WriteCA(dir)
	a, err := New(config.APV{Devices: []config.APVDevice{{Name: "apv-a", URL: e.URL(), UsernameFile: u, PasswordFile: p, CAFile: ca, HAUnit: haUnit}}},
		Options{Events: &recEvents{}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ScanOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a.Status()[0].HAState, a.metrics
}

func TestScanHA(t *testing.T) {
	for _, tc := range []struct {
		name       string
		haUnit     string
		setup      func(*apvemu.Emulator)
		state      string
		configured float64
	}{
		// The emulator prints the peer's line first: the local unit's state
		// is read from its own line.
		{"active, peer standby listed first", "", func(e *apvemu.Emulator) {}, "active", 1},
		{"standby, peer active listed first", "", func(e *apvemu.Emulator) { e.SetHA("standby") }, "standby", 1},
		{"haUnit names the other unit", "unit_s", func(e *apvemu.Emulator) {}, "standby", 1},
		{"haUnit names no unit: unknown, not a guess", "unit_x", func(e *apvemu.Emulator) {}, "unknown", 1},
		{"HA switched off, units configured", "", func(e *apvemu.Emulator) { e.SetHA("off") }, "off", 1},
		{"standalone", "", func(e *apvemu.Emulator) { e.SetHAUnconfigured() }, "off", 0},
		{"both units active", "", func(e *apvemu.Emulator) { e.SetPeerHA("active", false) }, "active", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, m := scanHAWith(t, tc.haUnit, tc.setup)
			if state != tc.state {
				t.Errorf("haState = %q, want %q", state, tc.state)
			}
			if v := testutil.ToFloat64(m.haState.WithLabelValues("apv-a", tc.state)); v != 1 {
				t.Errorf("edgeagent_apv_ha_state{state=%q} = %v", tc.state, v)
			}
			if v := testutil.ToFloat64(m.haConfigured.WithLabelValues("apv-a")); v != tc.configured {
				t.Errorf("edgeagent_apv_ha_configured = %v, want %v", v, tc.configured)
			}
		})
	}
	_, m := scanHAWith(t, "", func(e *apvemu.Emulator) { e.SetPeerHA("", true) })
	if up, peer := testutil.ToFloat64(m.haUnitUp.WithLabelValues("apv-a", "unit_m")), testutil.ToFloat64(m.haUnitUp.WithLabelValues("apv-a", "unit_s")); up != 1 || peer != 0 {
		t.Errorf("ha_unit_up unit_m %v unit_s %v, want 1 0", up, peer)
	}
}
