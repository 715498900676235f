package apv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/config"
)

func TestOnlyHTTPSURLs(t *testing.T) {
	for _, u := range []string{"http://192.0.2.10:9997", "192.0.2.10:9997", "https://", "ftp://x"} {
		if _, err := NewClient(ClientConfig{URL: u}); err == nil || !strings.Contains(err.Error(), "https://") {
			t.Errorf("NewClient(%q) = %v, want an https:// error", u, err)
		}
	}
}

// The emulator's certificate (Go's httptest one) is issued to example.com
// and 127.0.0.1; serverName picks the name to verify, and a pin admits
// exactly that certificate without any CA.
func TestServerNameAndPinnedCertificate(t *testing.T) {
	e := apvemu.New(t, testUser, testPass)
	dir := t.TempDir()
	u, p := writeCreds(t, dir, testUser, testPass)
	ca, err := e.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(e.Server.Certificate().Raw)
	pin := hex.EncodeToString(sum[:])
	colons := strings.ToUpper(strings.Join(chunks(pin, 2), ":"))
	wrong := strings.Repeat("00", 32)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		ok   bool
		msg  string
	}{
		{"server name in the certificate", ClientConfig{CAFile: ca, ServerName: "example.com"}, true, ""},
		{"server name not in the certificate", ClientConfig{CAFile: ca, ServerName: "apv-a.example.net"}, false, "apv-a.example.net"},
		{"pin, no CA", ClientConfig{PinnedCertSHA256: pin}, true, ""},
		{"pin with colons", ClientConfig{PinnedCertSHA256: colons}, true, ""},
		{"wrong pin", ClientConfig{PinnedCertSHA256: wrong}, false, "does not match pinnedCertSHA256"},
		{"no CA, no pin", ClientConfig{}, false, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.URL, cfg.UsernameFile, cfg.PasswordFile = e.URL(), u, p
			c, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := len(e.Commands())
			out, err := c.Run(ctx, "show version")
			switch {
			case tc.ok && (err != nil || !strings.Contains(out, "ArrayOS")):
				t.Fatalf("show version = %q, %v", out, err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.msg)):
				t.Fatalf("err = %v, want one saying %q", err, tc.msg)
			case !tc.ok && len(e.Commands()) != before:
				t.Fatal("the device answered over a connection that failed verification")
			}
		})
	}
	if _, err := NewClient(ClientConfig{URL: e.URL(), PinnedCertSHA256: "abc"}); err == nil {
		t.Error("malformed pin accepted")
	}
}

func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// Scans run on the read-only account when one is configured; syncs keep
// the configuration account. The emulator refuses configuration commands
// from a read-only account, as the device would.
func TestScanUsesReadOnlyAccount(t *testing.T) {
	e := apvemu.New(t, testUser, testPass)
	e.AddReadOnlyUser("reader", "r3ad")
	dir := t.TempDir()
	u, p := writeCreds(t, dir, testUser, testPass)
	su, sp := writeCreds(t, dir, "reader", "r3ad")
	ca, _ := e.WriteCA(dir)
	a, err := New(config.APV{Devices: []config.APVDevice{{Name: "apv-a", URL: e.URL(), UsernameFile: u, PasswordFile: p,
		ScanUsernameFile: su, ScanPasswordFile: sp, CAFile: ca}}}, Options{Events: &recEvents{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Reconcile(ctx, sampleState()); err != nil {
		t.Fatal(err)
	}
	if err := a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.ScanOnce(ctx); err != nil {
		t.Fatal(err)
	}
	reads := e.CommandsBy("reader")
	if len(reads) == 0 {
		t.Fatal("the scan did not use the read-only account")
	}
	for _, c := range reads {
		if !strings.HasPrefix(c, "show ") {
			t.Errorf("scan sent %q", c)
		}
	}
	if len(e.ConfigCommandsBy(testUser)) == 0 {
		t.Error("sync did not use the configuration account")
	}
	if s := a.Status()[0]; s.HAState != "active" || !s.Up {
		t.Errorf("scan through the read-only account: %+v", s)
	}
	// The emulator really is read-only for that account.
	rc, _ := NewClient(ClientConfig{URL: e.URL(), UsernameFile: su, PasswordFile: sp, CAFile: ca})
	if _, err := rc.Run(ctx, `slb real tcp "ea_x" 10.0.0.1 80 65535 none`); err == nil {
		t.Error("read-only account could configure")
	}
}
