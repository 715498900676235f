package apvemu

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func post(t *testing.T, e *Emulator, user, pass, cmd string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CertPool()}}}
	body, _ := json.Marshal(map[string]any{"cmd": cmd, "timeout": 10})
	req, _ := http.NewRequest(http.MethodPost, e.URL()+"/rest/apv/cli_extend", bytes.NewReader(body))
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r reply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Contents
}

func TestGrammarAndReferences(t *testing.T) {
	e := New(t, "u", "p")
	if err := e.Apply(
		`slb real tcp "r1" 10.0.0.1 80 65535 none`,
		`slb group method "g1" rr`,
		`slb group member "g1" "r1" 2`,
		`slb health "h1" http 5 2 2 3 GET "/x" "200"`,
		`slb group health "g1" "h1"`,
		`slb virtual tcp "v1" 10.200.0.1 80 arp 0`,
		`slb policy default "v1" "g1"`,
	); err != nil {
		t.Fatal(err)
	}
	// Referenced objects cannot be deleted.
	for _, bad := range []string{`no slb real tcp "r1"`, `no slb group method "g1"`, `no slb health "h1"`, `no slb virtual tcp "v1"`} {
		if err := e.Apply(bad); err == nil {
			t.Errorf("%s accepted while referenced", bad)
		}
	}
	for _, bad := range []string{`slb real tcp "r1" 10.0.0.1 80`, `slb group member "g1" "nope" 1`, `slb policy default "v1" "g1"`, `slb real tcp "x 10.0.0.1 80`, `frobnicate`} {
		if err := e.Apply(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// In dependency order everything goes.
	if err := e.Apply(`no slb policy default "v1"`, `no slb virtual tcp "v1"`, `no slb group health "g1" "h1"`,
		`no slb group member "g1" "r1"`, `no slb group method "g1"`, `no slb health "h1"`, `no slb real tcp "r1"`); err != nil {
		t.Fatal(err)
	}
	if got := e.Running(); len(got) != 0 {
		t.Errorf("left %v", got)
	}
}

// cli_extend runs every line of a cmd: a newline in a value would be a
// second command. This is why the driver must never send one.
func TestMultiLineCommandRunsEveryLine(t *testing.T) {
	e := New(t, "u", "p")
	_, _ = post(t, e, "u", "p", `slb real tcp "r1" 10.0.0.1 80`+"\nwrite memory")
	if !slices.Equal(e.Saved(), e.Running()) || len(e.Saved()) != 1 {
		t.Errorf("second line did not run: saved %v", e.Saved())
	}
}

func TestFaultsAndReboot(t *testing.T) {
	e := New(t, "u", "p")
	if code, _ := post(t, e, "u", "wrong", "show running"); code != http.StatusUnauthorized {
		t.Errorf("bad password: %d", code)
	}
	e.FailNext(1, 503)
	if code, _ := post(t, e, "u", "p", "show running"); code != 503 {
		t.Errorf("FailNext: %d", code)
	}
	if code, _ := post(t, e, "u", "p", "show running"); code != 200 {
		t.Errorf("after FailNext: %d", code)
	}
	_ = e.Apply(`slb real tcp "r1" 10.0.0.1 80`)
	_, _ = post(t, e, "u", "p", "write memory")
	_ = e.Apply(`slb real tcp "r2" 10.0.0.2 80`)
	e.Reboot(false)
	if got := e.Running(); len(got) != 1 || !strings.Contains(got[0], `"r1"`) {
		t.Errorf("reboot from saved: %v", got)
	}
	e.Reboot(true)
	if len(e.Running()) != 0 || len(e.Saved()) != 0 {
		t.Error("reboot into empty kept configuration")
	}
	e.SetHA("standby")
	if _, out := post(t, e, "u", "p", "show ha status"); !strings.Contains(out, "Standby") {
		t.Errorf("ha: %q", out)
	}
}

// "; " joins two commands on one line (Array's LBaaS agent once sent
// policies that way), another reason the driver refuses ';' in a value.
func TestSemicolonRunsTwoCommands(t *testing.T) {
	e := New(t, "u", "p")
	_, _ = post(t, e, "u", "p", `slb real tcp "r1" 10.0.0.1 80; write memory`)
	if len(e.Saved()) != 1 {
		t.Errorf("second command did not run: saved %v", e.Saved())
	}
}

func TestNormalizeAndReadOnly(t *testing.T) {
	e := New(t, "u", "p")
	e.AddReadOnlyUser("ro", "pw")
	if _, out := post(t, e, "ro", "pw", `slb real tcp "r1" 10.0.0.1 80 65535 none`); !strings.Contains(out, "permission denied") || len(e.Running()) != 0 {
		t.Errorf("read-only account configured: %q", out)
	}
	if _, out := post(t, e, "ro", "pw", "show ha config"); !strings.Contains(out, `ha unit "unit_m"`) {
		t.Errorf("read-only account cannot read: %q", out)
	}
	_ = e.Apply(`slb real tcp "r1" 10.0.0.1 80 65535 none`, `slb health "h1" http 5 2 2 3 GET "/x" "200"`)
	e.SetNormalize(true)
	_, out := post(t, e, "u", "p", "show running")
	for _, want := range []string{"slb  health  h1  http  5  2  2  3\n", `slb  health  h1  request  GET  "/x"  "200"`, "slb  real  tcp  r1  10.0.0.1  80  65535  none  3  3"} {
		if !strings.Contains(out, want) {
			t.Errorf("normalized show running lacks %q:\n%s", want, out)
		}
	}
}
