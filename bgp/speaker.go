package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"github.com/arraynetworks/edgeagent/model"
)

// RouteInstaller is the kernel route table the speaker installs learned
// routes into; dataplane.RouteTable satisfies it. Every route it lists is
// the agent's own (one route protocol number), so the speaker can adopt
// what a previous run left and remove exactly what it owns.
type RouteInstaller interface {
	Replace(prefix netip.Prefix, nextHops []netip.Addr) error
	Delete(prefix netip.Prefix) error
	List() (map[netip.Prefix][]netip.Addr, error)
	// Metric is the kernel metric the routes are installed with.
	Metric() uint32
	// Preferred describes, per prefix, another routing daemon's route that
	// the kernel prefers to the agent's (calico-node's BIRD on the same
	// node, say); prefixes without one are absent.
	Preferred(prefixes []netip.Prefix) (map[netip.Prefix]string, error)
}

// Options are the speaker's collaborators.
type Options struct {
	// Routes receives learned routes; nil disables import.
	Routes RouteInstaller
	// Registerer takes the speaker's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Speaker is the embedded BGP speaker. Create it with New, then Start it;
// it implements the agent's Speaker interface.
//
// It holds the desired state (peers wanted, VIP paths wanted) and what the
// router has (peers configured, paths advertised), and makes the second
// equal to the first with small ordered reconcilers (reconcile.go): paths
// first, then peers, then hold-downs. The router (GoBGP, router.go) only
// executes.
type Speaker struct {
	cfg     Config
	log     *slog.Logger
	r       router
	imp     *importer
	met     *metrics
	clock   clock.Clock
	backoff *flowcontrol.Backoff
	readMD5 func() md5Counters
	// tick is the supervisor's interval (superviseInterval).
	tick time.Duration
	// events carries session state changes from the router to the
	// supervisor; when it is full they are dropped, and the supervisor
	// re-reads every state on its next tick.
	events chan routerEvent

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// opMu serialises every change made to the router: the reconcilers run
	// under it, one at a time. mu guards the fields below and is never held
	// across a router call, so status readers never wait behind a long
	// Announce.
	opMu sync.Mutex
	mu   sync.Mutex

	started, stopped bool
	// gateOpen: sessions may open (the first Announce came, or
	// InitialHold passed). Until then peers are wanted but not configured.
	gateOpen bool

	// Desired state. configured are the peers given to Start, discovered
	// the last set given to SetDiscoveredPeers; wantPeers is their merge
	// (or the set given to SetPeers), normalised, defaults applied.
	configured, discovered []Peer
	wantPeers              []Peer

	// What the router has.
	peers map[netip.Addr]Peer
	paths map[netip.Prefix]string // advertised VIP → attrKey
	// sessions is what the speaker tracks per configured peer beyond the
	// router's state.
	sessions map[netip.Addr]*session
	// restarting are wanted peers still to be added with the
	// graceful-restart Restart bits (those wanted when the gate opened).
	restarting map[netip.Addr]bool
	// peerErrs says why a wanted peer could not be configured.
	peerErrs map[netip.Addr]string
	// lastSessionErr is the last peers/hold-down error logged, so a retry
	// on every tick does not repeat it.
	lastSessionErr string
}

// session is one configured peer's history as the speaker sees it.
type session struct {
	state     string
	lastError string
	md5Hint   string
	// failures counts sessions that failed before Established in a row.
	failures int
	// holdUntil is the end of the peer's hold-down (zero: none); held says
	// the router has it disabled.
	holdUntil time.Time
	held      bool
}

// New checks the configuration and builds a speaker on GoBGP; nothing runs
// until Start.
func New(cfg Config, opts Options) (*Speaker, error) {
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("component", "bgp")
	return newSpeaker(cfg, opts, newGoBGPRouter(lg), lg, clock.RealClock{})
}

func newSpeaker(cfg Config, opts Options, r router, lg *slog.Logger, clk clock.Clock) (*Speaker, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Speaker{
		cfg:   cfg,
		log:   lg,
		r:     r,
		clock: clk,
		// Hold-downs after backoffAfter failures in a row: backoffBase,
		// doubling to backoffMax (docs/bgp.md).
		backoff:    flowcontrol.NewFakeBackOff(backoffBase, backoffMax, clk),
		readMD5:    readMD5Counters,
		tick:       superviseInterval,
		events:     make(chan routerEvent, 256),
		peers:      map[netip.Addr]Peer{},
		paths:      map[netip.Prefix]string{},
		sessions:   map[netip.Addr]*session{},
		restarting: map[netip.Addr]bool{},
		peerErrs:   map[netip.Addr]string{},
	}
	if opts.Routes != nil && cfg.Import {
		if len(cfg.ImportCIDRs) == 0 {
			lg.Warn("bgp.importCIDRs is empty: no learned route will be installed")
		}
		s.imp = newImporter(r, opts.Routes, cfg.ImportCIDRs, cfg.RestartTime, s.sessionsWanted, clk, lg)
	}
	s.met = newMetrics(s)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.met); err != nil {
			return nil, fmt.Errorf("register bgp metrics: %w", err)
		}
	}
	return s, nil
}

// validate checks the global settings (defaults applied).
func (c Config) validate() error {
	if c.RouterID != "" {
		if a, err := netip.ParseAddr(c.RouterID); err != nil || !a.Is4() {
			return fmt.Errorf("bgp.routerID: %q is not an IPv4 address", c.RouterID)
		}
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		return fmt.Errorf("bgp.listenPort: %d must be -1 (do not listen) or 1-65535", c.ListenPort)
	}
	for i, a := range c.ListenAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("bgp.listenAddresses[%d]: %q is not an IP address", i, a)
		}
	}
	return nil
}

// Start runs the router with the global settings and remembers the peers.
// Sessions open at the first Announce (or after Config.InitialHold), so a
// restarted agent has its VIPs back in the RIB before it sends End-of-RIB.
func (s *Speaker) Start(ctx context.Context, peers []Peer) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("speaker already started")
	}
	s.started = true
	discovered := s.discovered
	s.mu.Unlock()

	wanted, err := s.normalise(mergePeers(peers, discovered))
	cfg := s.cfg
	if err == nil && cfg.RouterID == "" {
		cfg.RouterID, err = deriveRouterID(cfg.ListenAddresses, wanted)
	}
	if err != nil {
		s.markStopped()
		return err
	}
	s.mu.Lock()
	s.wantPeers = wanted
	s.configured = slices.Clone(peers)
	s.mu.Unlock()

	// The speaker's goroutines and the router's event stream live until
	// Stop, not until the caller's ctx ends.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if err := s.r.Start(runCtx, cfg, s.onRouterEvent); err != nil {
		cancel()
		s.markStopped()
		return err
	}
	s.run(runCtx)
	s.log.Info("bgp speaker started", "asn", cfg.ASN, "routerID", cfg.RouterID, "listenPort", cfg.ListenPort,
		"peers", len(wanted), "gracefulRestart", cfg.GracefulRestart)
	return nil
}

// run starts the supervisor and, with import on, adopts the kernel's
// learned routes and starts the importer; both end with ctx (Stop).
func (s *Speaker) run(ctx context.Context) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.supervise(ctx)
	}()
	if s.imp == nil {
		return
	}
	if err := s.imp.adopt(); err != nil {
		s.log.Warn("cannot read the kernel's learned routes; starting empty", "err", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.imp.run(ctx)
	}()
}

func (s *Speaker) markStopped() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// running reports whether the speaker is started and not stopped.
func (s *Speaker) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started && !s.stopped
}

// deriveRouterID picks the first IPv4 listen address, or the IPv4 source
// address the kernel would use towards the first IPv4 peer (a UDP
// "connect" sends nothing), or the node's first global IPv4 address.
func deriveRouterID(listen []string, peers []Peer) (string, error) {
	for _, l := range listen {
		if a, err := netip.ParseAddr(l); err == nil && a.Is4() && !a.IsUnspecified() {
			return a.String(), nil
		}
	}
	for _, p := range peers {
		if p.LocalAddress.Is4() {
			return p.LocalAddress.String(), nil
		}
		if !p.Address.Is4() {
			continue
		}
		c, err := net.Dial("udp4", netip.AddrPortFrom(p.Address, 179).String())
		if err != nil {
			continue
		}
		a := c.LocalAddr().(*net.UDPAddr).IP.String()
		c.Close()
		return a, nil
	}
	// No peer yet (they may be discovered later): the node's first global
	// IPv4 address.
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
					return ip.Unmap().String(), nil
				}
			}
		}
	}
	return "", errors.New("bgp.routerID: not set, and no IPv4 peer, listen address or interface address to derive it from")
}

// normalise applies defaults and drops (reporting each) invalid peers and
// second entries for an address already listed.
func (s *Speaker) normalise(peers []Peer) ([]Peer, error) {
	var errs []error
	out := make([]Peer, 0, len(peers))
	seen := map[netip.Addr]bool{}
	for _, p := range peers {
		p.Address = p.Address.Unmap()
		p = p.withDefaults(s.cfg.ASN)
		if err := validatePeer(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[p.Address] {
			errs = append(errs, fmt.Errorf("peer %s (%s): listed twice, keeping the first", p.Address, p.Source))
			continue
		}
		seen[p.Address] = true
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// SetPeers makes the peer set equal to peers (config and discovered ones
// together). Only added, removed or changed peers are touched; a changed
// peer's session is reset, nobody else's. An invalid peer is skipped and
// reported; the others are applied.
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	wanted, verr := s.normalise(peers)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	s.wantPeers = wanted
	s.mu.Unlock()
	if !s.running() {
		return verr
	}
	return errors.Join(verr, s.reconcilePeers(ctx))
}

// SetDiscoveredPeers sets the peers found outside the configuration (the
// Kubernetes Nodes matching bgp.nodePeers) and applies them together with
// the configured ones. A discovered peer at the address of a configured one
// is ignored: the configuration wins.
func (s *Speaker) SetDiscoveredPeers(ctx context.Context, peers []Peer) error {
	s.mu.Lock()
	if slices.Equal(s.discovered, peers) {
		s.mu.Unlock()
		return nil
	}
	s.discovered = slices.Clone(peers)
	merged := mergePeers(s.configured, peers)
	s.mu.Unlock()
	return s.SetPeers(ctx, merged)
}

// Announce makes the advertised VIP routes equal to routes. Only new,
// changed and removed routes produce updates. A route with bad attributes
// is skipped and reported; the others are applied. The first call opens
// the sessions. Errors configuring peers are not Announce's: they show in
// the neighbors' lastError and are retried.
func (s *Speaker) Announce(ctx context.Context, routes []model.VIPRoute) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if !s.running() {
		return errors.New("speaker not running")
	}
	err := s.reconcilePaths(ctx, routes)
	s.openGate()
	s.reconcileSessions(ctx)
	return err
}

// openGate lets sessions open; it reports whether it was closed. Called
// with opMu held.
func (s *Speaker) openGate() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gateOpen {
		return false
	}
	s.gateOpen = true
	if s.cfg.GracefulRestart {
		for _, p := range s.wantPeers {
			s.restarting[p.Address] = true
		}
	}
	return true
}

// sessionsWanted reports whether sessions may open and how many peers are
// wanted (the importer's test of a converged RIB).
func (s *Speaker) sessionsWanted() (open bool, wanted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gateOpen, len(s.wantPeers)
}

// Advertised reports the VIP prefixes that are in the RIB while at least
// one session is established (so they are announced to someone).
func (s *Speaker) Advertised() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := false
	for _, ss := range s.sessions {
		if ss.state == "established" {
			up = true
			break
		}
	}
	out := make(map[string]bool, len(s.paths))
	if !up {
		return out
	}
	for p := range s.paths {
		out[p.String()] = true
	}
	return out
}

// Stop ends the speaker. With withdraw, every VIP is withdrawn and the
// sessions are closed with a Cease notification (draining a node). Without,
// the router is left untouched: the sessions end without a notification
// when the process exits, which peers treat as a graceful restart and keep
// forwarding to our VIPs for the restart time. Learned kernel routes stay
// in both cases; a restarted agent adopts them.
func (s *Speaker) Stop(ctx context.Context, withdraw bool) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	vips := len(s.paths)
	s.mu.Unlock()
	// The supervisor and the importer end first, so nothing changes the
	// router behind Stop's back (a reconcile they are in finishes first).
	s.cancel()
	s.wg.Wait()
	s.opMu.Lock()
	defer s.opMu.Unlock()
	var errs []error
	if withdraw {
		errs = append(errs, s.reconcilePaths(ctx, nil))
		s.waitSent(ctx)
		if err := s.r.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop bgp: %w", err))
		}
	}
	s.log.Info("bgp speaker stopped", "withdrawn", withdraw, "vips", vips)
	return errors.Join(errs...)
}

// waitSent waits (bounded by ctx and 3 s) until no established session has
// updates queued, so withdrawals leave before the Cease.
func (s *Speaker) waitSent(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for {
		queued := false
		states, _ := s.r.Peers(ctx)
		for _, p := range states {
			if p.State == "established" && p.OutQ > 0 {
				queued = true
			}
		}
		if !queued {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// onRouterEvent takes the router's events; it never blocks.
func (s *Speaker) onRouterEvent(ev routerEvent) {
	switch ev.Kind {
	case eventPeerError:
		s.mu.Lock()
		if ss := s.sessions[ev.Peer]; ss != nil {
			ss.lastError = ev.Error
		}
		s.mu.Unlock()
	case eventPeerState:
		select {
		case s.events <- ev:
		default:
		}
		if s.imp != nil {
			s.imp.kick()
		}
	case eventLearned:
		if s.imp != nil {
			s.imp.onLearned(ev)
		}
	}
}
