// Package apvemu emulates the cli_extend REST endpoint of an Array Networks
// APV for tests: an httptest TLS server that checks basic auth, runs the
// ArrayOS command forms the apv package sends against an in-memory device
// (running and saved configuration, HA, interfaces, SSL certificates, SLB
// status), answers the show commands the package reads, and injects faults:
// HTTP errors, a failure in the middle of a command sequence, slow answers,
// refused credentials, dropped connections, a reboot into an empty
// configuration, an HA failover, a link going down, a certificate close to
// expiry.
//
// The grammar and the show formats follow public Array material where it
// exists (see docs/apv.md); where it does not, the emulator is stricter than
// a device is assumed to be (it refuses to delete an object that is still
// referenced), so the driver's command order is really exercised.
package apvemu

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Emulator is one emulated APV.
type Emulator struct {
	Server *httptest.Server

	mu       sync.Mutex
	user     string
	pass     string
	running  *config
	saved    *config
	commands []string
	cmdUsers []string          // who sent commands[i]
	users    map[string]string // AddUser accounts: user → password
	readOnly map[string]bool   // AddReadOnlyUser accounts
	// normalize makes `show running` print lines differently from how they
	// were sent (SetNormalize).
	normalize bool
	// refuseEnable makes the device reject `slb <kind> enable` (a release
	// without the command).
	refuseEnable bool

	// faults
	failStatus   int
	failCount    int
	failAfterCfg int // fail the config command after this many more (0: off)
	failAfterSt  int
	skipReqs     int // FailAfterRequests: requests still to pass
	skipFail     int
	skipStatus   int
	delay        time.Duration
	authFail     bool
	drop         bool

	// device state outside the configuration
	haState    string // local unit: active, standby, init, off
	peerState  string // "" = the opposite of haState
	peerDown   bool
	haUnits    bool // the HA configuration lists the two units
	interfaces []iface
	cpu        float64
	certs      map[string]time.Time // vhost → notAfter
	realDown   map[string]bool
	conns      map[string]int
}

type iface struct {
	name, port string
	up         bool
}

// New starts an emulator that accepts user/pass on a loopback port. It is
// closed with the test.
func New(t interface {
	Cleanup(func())
	Fatalf(string, ...any)
}, user, pass string) *Emulator {
	e, err := Start("", user, pass)
	if err != nil {
		t.Fatalf("apvemu: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// Start starts an emulator listening on addr ("" for a free loopback
// port), for tests and for hack/apvemu (manual runs of the agent binary).
func Start(addr, user, pass string) (*Emulator, error) {
	e := &Emulator{
		user: user, pass: pass,
		running: newConfig(), saved: newConfig(),
		haState: "active", haUnits: true,
		interfaces: []iface{
			{name: "port1", port: "port1", up: true},
			{name: "port2", port: "port2", up: true},
		},
		cpu:      0.12,
		certs:    map[string]time.Time{},
		realDown: map[string]bool{},
		conns:    map[string]int{},
	}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		_ = e.Server.Listener.Close()
		e.Server.Listener = l
	}
	// Handshake failures are expected in tests of TLS verification.
	e.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.Server.StartTLS()
	return e, nil
}

// Close stops the server.
func (e *Emulator) Close() { e.Server.Close() }

// URL is the device's management base URL (without the cli_extend path).
func (e *Emulator) URL() string { return e.Server.URL }

// WriteCA writes the server's certificate as a PEM CA file into dir and
// returns its path, for the client's caFile.
func (e *Emulator) WriteCA(dir string) (string, error) {
	cert := e.Server.Certificate()
	path := filepath.Join(dir, fmt.Sprintf("apvemu-ca-%p.pem", e))
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return path, os.WriteFile(path, b, 0o600)
}

// CertPool returns a pool trusting the server.
func (e *Emulator) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.Server.Certificate())
	return p
}

type reply struct {
	Contents string `json:"contents"`
}

func (e *Emulator) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/rest/apv/cli_extend" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	// The body is read first: net/http notices a client that gave up (and
	// cancels r.Context()) only once the body has been consumed.
	var req struct {
		Cmd     string `json:"cmd"`
		Timeout int    `json:"timeout"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	delay, drop := e.delay, e.drop
	e.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		http.Error(w, "dropped", http.StatusServiceUnavailable)
		return
	}
	user, pass, ok := r.BasicAuth()
	e.mu.Lock()
	authOK := ok && !e.authFail && ((user == e.user && pass == e.pass) || (e.users[user] == pass && pass != ""))
	e.mu.Unlock()
	if !authOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="apv"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	e.mu.Lock()
	e.commands = append(e.commands, req.Cmd)
	e.cmdUsers = append(e.cmdUsers, user)
	if e.skipFail > 0 {
		if e.skipReqs > 0 {
			e.skipReqs--
		} else {
			e.skipFail--
			code := e.skipStatus
			e.mu.Unlock()
			http.Error(w, "injected failure", code)
			return
		}
	}
	if e.failCount > 0 {
		e.failCount--
		code := e.failStatus
		e.mu.Unlock()
		http.Error(w, "injected failure", code)
		return
	}
	if e.failAfterCfg > 0 && isConfig(req.Cmd) {
		e.failAfterCfg--
		if e.failAfterCfg == 0 {
			code := e.failAfterSt
			e.mu.Unlock()
			http.Error(w, "injected failure", code)
			return
		}
	}
	// cli_extend runs every line of a multi-line cmd, the way Array's own
	// driver answers confirmation prompts with "\nYES\n", and every
	// command of a line joined with "; " (the same driver's create_policy
	// sent two commands that way). This is why the apv package never lets
	// a newline or ';' into a command.
	var out []string
	for _, line := range strings.FieldsFunc(req.Cmd, func(r rune) bool { return r == '\n' || r == ';' }) {
		line = strings.TrimSpace(line)
		if line == "" || line == "YES" {
			continue
		}
		if e.readOnly[user] && isConfig(line) {
			out = append(out, errf("permission denied: %q is a configuration command and %s may only read", line, user))
			continue
		}
		out = append(out, e.exec(line))
	}
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply{Contents: strings.Join(out, "\n")})
}

func isConfig(cmd string) bool {
	c := strings.TrimSpace(cmd)
	return !strings.HasPrefix(c, "show ") && c != "write memory"
}

// Commands returns every cmd received, in order.
func (e *Emulator) Commands() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.commands)
}

// ConfigCommands returns the received cmds that change the configuration
// (neither show nor write memory).
func (e *Emulator) ConfigCommands() []string {
	var out []string
	for _, c := range e.Commands() {
		if isConfig(c) {
			out = append(out, c)
		}
	}
	return out
}

// AddUser adds another account, so that tests with several clients can
// tell their commands apart (ConfigCommandsBy).
func (e *Emulator) AddUser(user, pass string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.users == nil {
		e.users = map[string]string{}
	}
	e.users[user] = pass
}

// AddReadOnlyUser adds an account that may run show commands only; the
// configuration commands it sends are refused.
func (e *Emulator) AddReadOnlyUser(user, pass string) {
	e.AddUser(user, pass)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.readOnly == nil {
		e.readOnly = map[string]bool{}
	}
	e.readOnly[user] = true
}

// CommandsBy returns every cmd user sent.
func (e *Emulator) CommandsBy(user string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for i, c := range e.commands {
		if e.cmdUsers[i] == user {
			out = append(out, c)
		}
	}
	return out
}

// ConfigCommandsBy returns the configuration cmds (see ConfigCommands) that
// user sent.
func (e *Emulator) ConfigCommandsBy(user string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for i, c := range e.commands {
		if e.cmdUsers[i] == user && isConfig(c) {
			out = append(out, c)
		}
	}
	return out
}

// ResetLog forgets the received commands.
func (e *Emulator) ResetLog() {
	e.mu.Lock()
	e.commands, e.cmdUsers = nil, nil
	e.mu.Unlock()
}

// Running returns the running configuration's SLB and SSL lines, sorted.
func (e *Emulator) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running.lines()
}

// Saved returns the saved (startup) configuration's lines, sorted.
func (e *Emulator) Saved() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.saved.lines()
}

// Apply runs configuration lines directly (test setup, "hand edits"); it
// returns the first error output.
func (e *Emulator) Apply(lines ...string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range lines {
		if out := e.exec(l); strings.HasPrefix(out, "Error") {
			return fmt.Errorf("%s: %s", l, out)
		}
	}
	return nil
}

// FailNext makes the next n requests answer HTTP code.
func (e *Emulator) FailNext(n, code int) {
	e.mu.Lock()
	e.failCount, e.failStatus = n, code
	e.mu.Unlock()
}

// FailAfterRequests lets skip requests pass, then makes the next n answer
// HTTP code.
func (e *Emulator) FailAfterRequests(skip, n, code int) {
	e.mu.Lock()
	e.skipReqs, e.skipFail, e.skipStatus = skip, n, code
	e.mu.Unlock()
}

// FailConfigCommand makes the k-th configuration command from now answer
// HTTP code without running (k >= 1): a failure in the middle of a
// sequence.
func (e *Emulator) FailConfigCommand(k, code int) {
	e.mu.Lock()
	e.failAfterCfg, e.failAfterSt = k, code
	e.mu.Unlock()
}

// SetDelay delays every answer (slow device; longer than the client's
// timeout, a timeout).
func (e *Emulator) SetDelay(d time.Duration) {
	e.mu.Lock()
	e.delay = d
	e.mu.Unlock()
}

// SetAuthFail makes the device refuse every credential.
func (e *Emulator) SetAuthFail(on bool) {
	e.mu.Lock()
	e.authFail = on
	e.mu.Unlock()
}

// SetDown makes the device drop every connection without an answer.
func (e *Emulator) SetDown(on bool) {
	e.mu.Lock()
	e.drop = on
	e.mu.Unlock()
}

// Reboot restarts the device from its saved configuration, or with an
// empty one (a replaced or reset unit) when empty is true.
func (e *Emulator) Reboot(empty bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if empty {
		e.saved = newConfig()
	}
	e.running = e.saved.clone()
}

// SetHA sets the local unit's HA state: active, standby, init or off (HA
// switched off, the units still configured). The peer unit takes the
// opposite role unless SetPeerHA says otherwise.
func (e *Emulator) SetHA(state string) {
	e.mu.Lock()
	e.haState = state
	e.mu.Unlock()
}

// SetPeerHA sets the peer unit's role as the device reports it ("" = the
// opposite of the local unit's), and whether the HA domain sees it down.
func (e *Emulator) SetPeerHA(state string, down bool) {
	e.mu.Lock()
	e.peerState, e.peerDown = state, down
	e.mu.Unlock()
}

// SetHAUnconfigured removes the HA units from the configuration (a
// standalone device: `show ha config` holds only "ha off").
func (e *Emulator) SetHAUnconfigured() {
	e.mu.Lock()
	e.haUnits, e.haState = false, "off"
	e.mu.Unlock()
}

// SetNormalize makes the device print its configuration back differently
// from how it was sent, the way a device may: names without quotes, fields
// separated by runs of blanks, defaults appended to reals, and every HTTP
// health check split over two lines. The first three a tolerant parser
// reads through; the split check it cannot, which is what the driver's
// "normalizes differently" safety is for. The forms are synthetic: no
// public sample shows how a device normalizes.
func (e *Emulator) SetNormalize(on bool) {
	e.mu.Lock()
	e.normalize = on
	e.mu.Unlock()
}

// SetRefuseEnable makes the device reject every `slb <kind> enable`
// command, as a release without it would.
func (e *Emulator) SetRefuseEnable(on bool) {
	e.mu.Lock()
	e.refuseEnable = on
	e.mu.Unlock()
}

// Enabled reports whether an object (kind real, group or virtual) has been
// enabled with `slb <kind> enable <name>` since it was created.
func (e *Emulator) Enabled(kind, name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running.enabled[kind+" "+name]
}

// SetLink sets an interface's carrier, adding the interface if needed.
func (e *Emulator) SetLink(name string, up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.interfaces {
		if e.interfaces[i].name == name {
			e.interfaces[i].up = up
			return
		}
	}
	e.interfaces = append(e.interfaces, iface{name: name, port: name, up: up})
}

// SetCPU sets the CPU utilisation ratio (0..1).
func (e *Emulator) SetCPU(r float64) { e.mu.Lock(); e.cpu = r; e.mu.Unlock() }

// SetCert binds an SSL virtual host to a virtual service (in the running
// configuration) with a certificate that expires at notAfter.
func (e *Emulator) SetCert(vhost, vs string, notAfter time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running.sslHosts[vhost] = vs
	e.certs[vhost] = notAfter
}

// SetRealHealth sets the health-check verdict the device reports for a real.
func (e *Emulator) SetRealHealth(real string, up bool) {
	e.mu.Lock()
	e.realDown[real] = !up
	e.mu.Unlock()
}

// SetConnections sets the active connection count of a real or virtual.
func (e *Emulator) SetConnections(name string, n int) {
	e.mu.Lock()
	e.conns[name] = n
	e.mu.Unlock()
}
