package config

import (
	"strings"
	"testing"
)

func TestAPVDeviceNeedsCredentialFiles(t *testing.T) {
	c, err := Parse([]byte(`apv: {devices: [{name: a, url: "https://192.0.2.10:9997"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c.NodeName = "n"
	c.ApplyDefaults()
	err = c.Validate()
	for _, want := range []string{"apv.devices[0].usernameFile", "apv.devices[0].passwordFile"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, want)
		}
	}
	if c.APV.SyncInterval.Duration.String() != "30s" || c.APV.ScanInterval.Duration.String() != "1m0s" {
		t.Errorf("defaults: sync %v scan %v", c.APV.SyncInterval, c.APV.ScanInterval)
	}
}

func validateAPV(t *testing.T, doc string) error {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c.NodeName = "n"
	c.ApplyDefaults()
	return c.Validate()
}

func TestAPVDeviceFields(t *testing.T) {
	const ok = `{name: a, url: "https://192.0.2.10:9997", usernameFile: u, passwordFile: p`
	for _, tc := range []struct {
		name, device, field string // field "" = valid
	}{
		{"https", ok + `}`, ""},
		{"http refused", `{name: a, url: "http://192.0.2.10:9997", usernameFile: u, passwordFile: p}`, "apv.devices[0].url"},
		{"no host", `{name: a, url: "https://", usernameFile: u, passwordFile: p}`, "apv.devices[0].url"},
		{"pin with colons", ok + `, pinnedCertSHA256: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"}`, ""},
		{"pin too short", ok + `, pinnedCertSHA256: "abcd"}`, "apv.devices[0].pinnedCertSHA256"},
		{"pin and insecure", ok + `, pinnedCertSHA256: "` + strings.Repeat("ab", 32) + `", insecureSkipVerify: true}`, "apv.devices[0].insecureSkipVerify"},
		{"scan account", ok + `, scanUsernameFile: su, scanPasswordFile: sp}`, ""},
		{"scan account half", ok + `, scanUsernameFile: su}`, "apv.devices[0].scanUsernameFile"},
		{"server name", ok + `, serverName: apv-a.example.net}`, ""},
		{"ha unit", ok + `, haUnit: unit_m}`, ""},
		{"ha unit injection", ok + `, haUnit: "u;write memory"}`, "apv.devices[0].haUnit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateAPV(t, "apv: {devices: ["+tc.device+"]}")
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestAPVEvents(t *testing.T) {
	c, err := Parse([]byte(`apv: {events: {sinkURL: "http://broker-ingress.knative-eventing.svc/ns/default"}}`))
	if err != nil {
		t.Fatal(err)
	}
	c.NodeName = "n"
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ev := c.APV.Events
	if ev.QueueSize != 1000 || ev.Timeout.Duration.String() != "5s" || ev.Retries != 3 {
		t.Errorf("defaults = %+v", ev)
	}
	for doc, field := range map[string]string{
		`apv: {events: {sinkURL: "ftp://x"}}`:                  "apv.events.sinkURL",
		`apv: {events: {sinkURL: "http://x", queueSize: -1}}`:  "apv.events.queueSize",
		`apv: {events: {sinkURL: "http://x", timeout: "-1s"}}`: "apv.events.timeout",
		`apv: {events: {sinkURL: "http://"}}`:                  "apv.events.sinkURL",
	} {
		if err := validateAPV(t, doc); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", doc, err, field)
		}
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	want := strings.Repeat("ab", 32)
	for _, in := range []string{want, strings.ToUpper(want), strings.TrimSuffix(strings.Repeat("AB:", 32), ":")} {
		if got, err := NormalizeFingerprint(in); err != nil || got != want {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "zz" + want[2:], want + "ab"} {
		if _, err := NormalizeFingerprint(in); err == nil {
			t.Errorf("NormalizeFingerprint(%q) accepted", in)
		}
	}
}
