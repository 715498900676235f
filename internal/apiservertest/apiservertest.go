// Package apiservertest runs a real etcd + kube-apiserver pair on loopback
// for integration tests: generated CA and serving certificate, a static admin
// token, service-account signing keys, the project's CRDs installed. The
// binaries come from hack/get-apiserver.sh (default
// /var/cache/edgeagent/k8s-bin, or $EDGEAGENT_K8S_BIN, or
// $KUBEBUILDER_ASSETS). When they are missing, tests skip with a message
// saying how to build them — unless EDGEAGENT_REQUIRE_APISERVER=1 (CI), where
// a missing build fails the test instead.
//
// Ports are picked free per process, so packages tested in parallel never
// collide. Processes are stopped (by PID) when the server is stopped.
package apiservertest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/arraynetworks/edgeagent/internal/testreq"
)

// DefaultBinDir is where hack/get-apiserver.sh puts the binaries by default.
const DefaultBinDir = "/var/cache/edgeagent/k8s-bin"

// Server is one running etcd + kube-apiserver.
type Server struct {
	// Dir holds certificates, tokens, logs and etcd data.
	Dir string
	// URL is the apiserver's https URL.
	URL string
	// Port is the apiserver's secure port.
	Port int
	// Token is the admin bearer token (group system:masters).
	Token string
	// CAFile verifies the serving certificate; CAData is its content.
	CAFile string
	CAData []byte
	// Kubeconfig is a kubeconfig file for the admin.
	Kubeconfig string

	netns string // "" = the test process's namespace
	addr  string
	procs []*exec.Cmd
	done  []chan struct{}
}

// Options tune Start.
type Options struct {
	// Netns runs both processes inside this network namespace (made by
	// internal/testns); the server is then reachable only from inside it.
	Netns string
	// CRDDir is installed after start; default the repository's
	// deploy/daemonset/crds. "-" installs nothing.
	CRDDir string
	// Address is the IP the apiserver listens on and advertises, and the
	// one its serving certificate names (besides 127.0.0.1); default
	// 127.0.0.1. With Netns, an address of that namespace lets other
	// namespaces reach the server. etcd stays on loopback.
	Address string
}

// BinDir returns the directory holding kube-apiserver and etcd, or an error
// explaining how to get them.
func BinDir() (string, error) {
	var cands []string
	if d := os.Getenv("EDGEAGENT_K8S_BIN"); d != "" {
		cands = append(cands, d)
	}
	cands = append(cands, DefaultBinDir)
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		cands = append(cands, d)
	}
	for _, d := range cands {
		if isExec(filepath.Join(d, "kube-apiserver")) && isExec(filepath.Join(d, "etcd")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("kube-apiserver and etcd not found in %s; build them with hack/get-apiserver.sh (about 6.5 minutes once)", strings.Join(cands, ", "))
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// RequireBinaries skips the test when the binaries are missing, or fails
// it in CI, under make test, or with EDGEAGENT_REQUIRE_APISERVER=1.
func RequireBinaries(t testing.TB) string {
	t.Helper()
	missing := testreq.Missing
	if os.Getenv("EDGEAGENT_REQUIRE_APISERVER") == "1" {
		missing = func(t testing.TB, format string, args ...any) {
			t.Helper()
			t.Fatalf("EDGEAGENT_REQUIRE_APISERVER=1: "+format, args...)
		}
	}
	d, err := BinDir()
	if err != nil {
		missing(t, "%v", err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		missing(t, "kubectl not found (needed to install CRDs)")
	}
	return d
}

// Start starts a server for one test and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := RequireBinaries(t)
	dir := t.TempDir()
	s, err := newRetrying(bin, dir, opts)
	if err != nil {
		t.Fatalf("start apiserver: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// newRetrying is New, tried again with other ports when one was taken
// between picking and binding it (other suites run beside this one).
func newRetrying(bin, dir string, opts Options) (*Server, error) {
	var err error
	for range 3 {
		var s *Server
		if s, err = New(bin, dir, opts); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return s, err
		}
		_ = os.RemoveAll(filepath.Join(dir, "etcd-data"))
	}
	return nil, err
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedDir  string
)

// Shared returns one server for the whole test binary, started on first
// use; call StopShared from TestMain after m.Run. Tests using it must keep
// to their own namespaces.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := RequireBinaries(t)
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "apiservertest-")
		if sharedErr == nil {
			shared, sharedErr = newRetrying(bin, sharedDir, Options{})
		}
	})
	if sharedErr != nil {
		t.Fatalf("start shared apiserver: %v", sharedErr)
	}
	return shared
}

// StopShared stops the server Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
}

// New starts etcd and kube-apiserver from binDir with state in dir and
// waits until the apiserver is ready and the CRDs are established.
func New(binDir, dir string, opts Options) (*Server, error) {
	s := &Server{Dir: dir, netns: opts.Netns, addr: opts.Address}
	if s.addr == "" {
		s.addr = "127.0.0.1"
	}
	if net.ParseIP(s.addr) == nil {
		return nil, fmt.Errorf("apiserver address %q is not an IP", s.addr)
	}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	var err error
	ports, err := s.freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	s.Port = apiPort
	s.URL = "https://" + net.JoinHostPort(s.addr, strconv.Itoa(apiPort))
	if err := s.writeCredentials(); err != nil {
		return nil, err
	}

	etcdData := filepath.Join(dir, "etcd-data")
	if err := os.MkdirAll(etcdData, 0o700); err != nil {
		return nil, err
	}
	etcdArgs := []string{
		"--name", "test",
		"--data-dir", etcdData,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("test=http://127.0.0.1:%d", peerPort),
		"--log-level", "warn",
	}
	if help, _ := exec.Command(filepath.Join(binDir, "etcd"), "--help").CombinedOutput(); bytes.Contains(help, []byte("--unsafe-no-fsync")) {
		// Tests need no durability; fsync dominates etcd latency on CI disks.
		etcdArgs = append(etcdArgs, "--unsafe-no-fsync")
	}
	if err := s.spawn("etcd", filepath.Join(binDir, "etcd"), etcdArgs); err != nil {
		return nil, err
	}

	apiArgs := []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", s.addr,
		"--advertise-address", s.addr,
		// Without this the apiserver tries to reconcile the kubernetes
		// Service endpoints for 127.0.0.1 and exits.
		"--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(apiPort),
		"--tls-cert-file", filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file", filepath.Join(dir, "serving.key"),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--allow-privileged=true",
		// No controller-manager runs, so no token controller either.
		"--disable-admission-plugins", "ServiceAccount",
	}
	if err := s.spawn("kube-apiserver", filepath.Join(binDir, "kube-apiserver"), apiArgs); err != nil {
		return nil, err
	}
	if err := s.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := s.waitReady(90 * time.Second); err != nil {
		return nil, err
	}
	crds := opts.CRDDir
	if crds == "" {
		crds = filepath.Join(RepoRoot(), "deploy", "daemonset", "crds")
	}
	if crds != "-" {
		if err := s.InstallCRDs(crds); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// RepoRoot is the module root (found from this source file).
func RepoRoot() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(f), "..", ".."))
}

// Config returns an admin rest.Config. Valid only from the server's network
// namespace.
func (s *Server) Config() *rest.Config {
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     s.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData},
		QPS:             200,
		Burst:           400,
	}
}

// Impersonating returns a rest.Config acting as the given ServiceAccount
// (with the groups the apiserver would give its token), so a test runs with
// exactly the permissions RBAC grants that account.
func (s *Server) Impersonating(namespace, name string) *rest.Config {
	c := s.Config()
	c.Impersonate = rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return c
}

// Kubectl runs kubectl against the server (inside its namespace when it has
// one) and returns combined output.
func (s *Server) Kubectl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--kubeconfig", s.Kubeconfig}, args...)
	cmd := s.command(ctx, "kubectl", full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// InstallCRDs applies every manifest in dir and waits until established.
func (s *Server) InstallCRDs(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := s.Kubectl(ctx, "apply", "--server-side", "-f", dir); err != nil {
		return err
	}
	_, err := s.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=50s", "-f", dir)
	return err
}

// Stop kills both processes (apiserver first) and waits for them.
func (s *Server) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		if p.Process == nil {
			continue
		}
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done[i]:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-s.done[i]
		}
	}
	s.procs, s.done = nil, nil
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if s.netns != "" {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.netns, name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

func (s *Server) spawn(name, path string, args []string) error {
	logf, err := os.Create(filepath.Join(s.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := s.command(context.Background(), path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, and die with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.procs = append(s.procs, cmd)
	s.done = append(s.done, done)
	return nil
}

// freePorts finds n free loopback ports. In a fresh network namespace every
// port is free, so fixed ones are used there. Elsewhere they are picked at
// random below the kernel's ephemeral range (32768-60999): a port the kernel
// handed out for ":0" would be handed out again to the next outgoing
// connection of any test running beside this one, which then takes it
// before etcd binds it.
func (s *Server) freePorts(n int) ([]int, error) {
	if s.netns != "" {
		return []int{2379, 2380, 6443}[:n], nil
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("find %d free ports in 20000-32767: too many in use", n)
		}
		p := 20000 + mrand.IntN(12768)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		out = append(out, p)
	}
	return out, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	check := func() bool {
		if s.netns != "" {
			err := s.command(context.Background(), "curl", "-fsS", "--max-time", "2", "--cacert", s.CAFile,
				"-H", "Authorization: Bearer "+s.Token, s.URL+"/readyz").Run()
			return err == nil
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.CAData)
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for time.Now().Before(deadline) {
		for i, p := range s.procs {
			select {
			case <-s.done[i]:
				return fmt.Errorf("%s exited: %s", filepath.Base(p.Path), s.logTail(p))
			default:
			}
		}
		if check() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("apiserver not ready in time; see " + filepath.Join(s.Dir, "kube-apiserver.log"))
}

func (s *Server) logTail(p *exec.Cmd) string {
	name := filepath.Base(p.Path)
	if s.netns != "" && len(p.Args) > 4 {
		name = filepath.Base(p.Args[4])
	}
	b, _ := os.ReadFile(filepath.Join(s.Dir, name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// writeCredentials makes a CA, a serving certificate for 127.0.0.1, an
// admin token and the service-account key pair.
func (s *Server) writeCredentials() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apiservertest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(s.addr)},
		DNSNames:     []string{"localhost", "kubernetes.default.svc"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	s.Token = hex.EncodeToString(tok)
	s.CAData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	files := map[string][]byte{
		"ca.crt":      s.CAData,
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"serving.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: srvKeyDER}),
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv":  fmt.Appendf(nil, "%s,admin,admin-uid,\"system:masters\"\n", s.Token),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(s.Dir, "certs"), 0o700)
}

func (s *Server) writeKubeconfig() error {
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, s.URL, s.CAFile, s.Token)
	return os.WriteFile(s.Kubeconfig, []byte(kc), 0o600)
}
