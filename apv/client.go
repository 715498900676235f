package apv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/arraynetworks/edgeagent/config"
)

// CLIPath is the REST endpoint that runs one ArrayOS CLI line.
const CLIPath = "/rest/apv/cli_extend"

// ErrAuth is returned when the device refuses the credentials.
var ErrAuth = errors.New("authentication refused")

// HTTPError is a non-200 answer other than an authentication failure.
type HTTPError struct {
	Code int
	Body string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body)
}

// CLIError is a command the device ran and rejected (HTTP 200, an error in
// the output).
type CLIError struct {
	Cmd    string
	Output string
}

func (e *CLIError) Error() string {
	return fmt.Sprintf("device rejected %q: %s", e.Cmd, strings.TrimSpace(e.Output))
}

// Transport reports whether err means the device could not be reached or did
// not answer properly (as opposed to refusing one command).
func Transport(err error) bool {
	var ce *CLIError
	return err != nil && !errors.As(err, &ce)
}

// ClientConfig says how to reach one device.
type ClientConfig struct {
	// URL is the management base URL, "https://192.0.2.10:9997"; the
	// cli_extend path is appended unless the URL already ends with it.
	URL string
	// UsernameFile and PasswordFile hold the credentials (mounted Secret
	// files); they are read on every request so a rotated Secret is picked
	// up, and never logged.
	UsernameFile string
	PasswordFile string
	// CAFile verifies the device's certificate; empty means the system
	// roots. InsecureSkipVerify turns verification off (lab use only).
	CAFile             string
	InsecureSkipVerify bool
	// ServerName is verified (and sent as SNI) instead of the URL's host.
	ServerName string
	// PinnedCertSHA256, set, replaces chain verification: the device must
	// present the certificate with this SHA-256 fingerprint (see
	// config.NormalizeFingerprint for the accepted spellings).
	PinnedCertSHA256 string
	// Timeout bounds one request (default 30s); it is also sent as the
	// command's "timeout".
	Timeout time.Duration
}

// Client runs CLI lines on one device over cli_extend.
type Client struct {
	endpoint string
	cfg      ClientConfig
	http     *http.Client
}

// NewClient builds a client. It fails if the URL is not https:// (basic
// auth credentials travel in every request), the CA file cannot be read or
// the pin is malformed.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("url %q: must be an https:// URL", cfg.URL)
	}
	endpoint := strings.TrimRight(cfg.URL, "/")
	if !strings.HasSuffix(endpoint, CLIPath) {
		endpoint += CLIPath
	}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg,
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &Client{endpoint: endpoint, cfg: cfg, http: &http.Client{Transport: tr}}, nil
}

// tlsConfig verifies the device the way the configuration says: the chain
// against caFile (or the system roots) and serverName (or the URL's host);
// or, with a pin, exactly the pinned certificate, which is how a device
// with a self-signed certificate is reached without turning verification
// off.
func tlsConfig(cfg ClientConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in, documented as lab use only
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.PinnedCertSHA256 == "" {
		return tc, nil
	}
	pin, err := config.NormalizeFingerprint(cfg.PinnedCertSHA256)
	if err != nil {
		return nil, fmt.Errorf("pinnedCertSHA256: %w", err)
	}
	// The standard chain check is replaced, not skipped: VerifyConnection
	// runs on every handshake (resumed ones included) and refuses any
	// certificate but the pinned one.
	tc.InsecureSkipVerify = true //nolint:gosec // verified by the pin below
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("device presented no certificate")
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if got := hex.EncodeToString(sum[:]); got != pin {
			return fmt.Errorf("device certificate SHA-256 %s does not match pinnedCertSHA256", got)
		}
		return nil
	}
	return tc, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

type cliRequest struct {
	Cmd     string `json:"cmd"`
	Timeout int    `json:"timeout"`
}

type cliResponse struct {
	Contents string `json:"contents"`
}

// Run sends one CLI line and returns its output. The line is checked first
// (checkLine): nothing that could smuggle a second command is ever sent.
func (c *Client) Run(ctx context.Context, cmd string) (string, error) {
	if err := checkLine(cmd); err != nil {
		return "", fmt.Errorf("refused to send: %w", err)
	}
	user, pass, err := c.credentials()
	if err != nil {
		return "", err
	}
	body, _ := json.Marshal(cliRequest{Cmd: cmd, Timeout: int(c.cfg.Timeout / time.Second)})
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(user, pass)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmdWord(cmd), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("%s: read answer: %w", cmdWord(cmd), err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("%s: HTTP %d: %w", cmdWord(cmd), resp.StatusCode, ErrAuth)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%s: %w", cmdWord(cmd), &HTTPError{Code: resp.StatusCode, Body: trimBody(raw)})
	}
	var out cliResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("%s: answer is not {\"contents\": ...}: %w", cmdWord(cmd), err)
	}
	if looksLikeError(out.Contents) {
		return out.Contents, &CLIError{Cmd: cmd, Output: out.Contents}
	}
	return out.Contents, nil
}

// credentials reads the username and password files. Errors name the file,
// never its content.
func (c *Client) credentials() (string, string, error) {
	read := func(field, path string) (string, error) {
		if path == "" {
			return "", fmt.Errorf("%s: not configured", field)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	u, err := read("usernameFile", c.cfg.UsernameFile)
	if err != nil {
		return "", "", err
	}
	p, err := read("passwordFile", c.cfg.PasswordFile)
	if err != nil {
		return "", "", err
	}
	return u, p, nil
}

// looksLikeError recognises a rejected command in the CLI output. ArrayOS
// prints a message instead of the (empty) output of a successful
// configuration command; the exact wording is not published, so the common
// forms are matched. An unrecognised rejection still shows up: the next read
// of the configuration finds the object missing and the device stays
// "not in sync".
func looksLikeError(out string) bool {
	s := strings.ToLower(strings.TrimSpace(out))
	for _, p := range []string{"error", "% ", "invalid", "unknown command", "failed", "incomplete command"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// cmdWord shortens a command for error messages: the verb and object kind,
// never the values.
func cmdWord(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

func trimBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return printable(s)
}
