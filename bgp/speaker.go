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

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

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
type Speaker struct {
	cfg    Config
	log    *slog.Logger
	srv    *server.BgpServer
	routes RouteInstaller
	imp    *importer
	met    *metrics

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// annMu serialises Announce and Stop; mu guards the fields below and
	// is never held across a call into GoBGP that can block for long.
	annMu sync.Mutex
	// peerMu serialises changes to GoBGP's peer set (SetPeers and the
	// gate opening may race).
	peerMu   sync.Mutex
	mu       sync.Mutex
	started  bool
	stopped  bool
	gateOpen bool
	gate     chan struct{} // closed when sessions may open
	wanted   []Peer        // desired peers, defaults applied
	// configured are the peers given to Start, discovered the last set
	// given to SetDiscoveredPeers; wanted is their merge.
	configured, discovered []Peer
	peers                  map[netip.Addr]Peer
	paths                  map[netip.Prefix]string // advertised VIP → attribute key
	peerInfo               map[string]*peerInfo
	routerID               string
}

// peerInfo is what the speaker tracks per neighbor beyond GoBGP's state.
type peerInfo struct {
	state       string
	lastError   string
	md5Hint     string
	failures    int
	backoffTill time.Time
	disabled    bool
}

// New checks the configuration and builds a speaker; nothing runs until
// Start.
func New(cfg Config, opts Options) (*Speaker, error) {
	cfg.applyDefaults()
	if cfg.RouterID != "" {
		if a, err := netip.ParseAddr(cfg.RouterID); err != nil || !a.Is4() {
			return nil, fmt.Errorf("bgp.routerID: %q is not an IPv4 address", cfg.RouterID)
		}
	}
	if cfg.ListenPort < -1 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("bgp.listenPort: %d must be -1 (do not listen) or 1-65535", cfg.ListenPort)
	}
	for i, a := range cfg.ListenAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return nil, fmt.Errorf("bgp.listenAddresses[%d]: %q is not an IP address", i, a)
		}
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("component", "bgp")
	s := &Speaker{
		cfg:      cfg,
		log:      lg,
		gate:     make(chan struct{}),
		peers:    map[netip.Addr]Peer{},
		paths:    map[netip.Prefix]string{},
		peerInfo: map[string]*peerInfo{},
		routes:   opts.Routes,
	}
	if !cfg.Import {
		s.routes = nil
	}
	if s.routes != nil {
		if len(cfg.ImportCIDRs) == 0 {
			lg.Warn("bgp.importCIDRs is empty: no learned route will be installed")
		}
		s.imp = newImporter(s, s.routes, cfg.ImportCIDRs, lg)
	}
	s.met = newMetrics(s)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.met); err != nil {
			return nil, fmt.Errorf("register bgp metrics: %w", err)
		}
	}
	return s, nil
}

// Start runs GoBGP with the global settings and remembers the peers.
// Sessions open at the first Announce (or after Config.InitialHold), so a
// restarted agent has its VIPs back in the RIB before it sends End-of-RIB.
func (s *Speaker) Start(ctx context.Context, peers []Peer) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("bgp: already started")
	}
	s.started = true
	s.mu.Unlock()

	wanted, err := s.normalise(peers)
	if err != nil {
		return err
	}
	routerID := s.cfg.RouterID
	if routerID == "" {
		routerID, err = deriveRouterID(s.cfg.ListenAddresses, wanted)
		if err != nil {
			return err
		}
	}
	glog := &gobgpLogger{l: s.log, onPeerErr: s.recordPeerError}
	s.srv = server.NewBgpServer(server.LoggerOption(glog))
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	// Serve is GoBGP's main loop; it never returns, and lives as long as
	// the process (see Stop).
	go s.srv.Serve()
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: globalAPI(s.cfg, routerID)}); err != nil {
		cancel()
		return fmt.Errorf("start bgp (asn %d, router id %s, port %d): %w", s.cfg.ASN, routerID, s.cfg.ListenPort, err)
	}
	pol, asg := exportPolicy()
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		cancel()
		return fmt.Errorf("add export policy: %w", err)
	}
	if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: asg}); err != nil {
		cancel()
		return fmt.Errorf("assign export policy: %w", err)
	}
	s.mu.Lock()
	s.routerID = routerID
	s.wanted = wanted
	s.configured = slices.Clone(peers)
	s.mu.Unlock()

	events := make(chan *api.WatchEventResponse_PeerEvent, 256)
	err = s.srv.WatchEvent(runCtx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, func(r *api.WatchEventResponse) {
		switch ev := r.Event.(type) {
		case *api.WatchEventResponse_Peer:
			select {
			case events <- ev.Peer:
			default:
				// The supervisor is behind; it re-reads every
				// session state on its next tick (resyncStates).
			}
			if s.imp != nil {
				s.imp.kick()
			}
		case *api.WatchEventResponse_Table:
			if s.imp != nil {
				s.imp.onPaths(ev.Table.Paths)
			}
		}
	})
	if err != nil {
		cancel()
		return fmt.Errorf("watch bgp events: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.supervise(runCtx, events)
	}()
	if s.imp != nil {
		if err := s.imp.adopt(); err != nil {
			s.log.Warn("cannot read the kernel's learned routes; starting empty", "err", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.imp.run(runCtx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(s.cfg.InitialHold)
		defer t.Stop()
		select {
		case <-runCtx.Done():
		case <-s.gate:
		case <-t.C:
			s.log.Info("no announcement yet; opening sessions anyway", "after", s.cfg.InitialHold)
			s.openGate(runCtx)
		}
	}()
	s.log.Info("bgp speaker started", "asn", s.cfg.ASN, "routerID", routerID, "listenPort", s.cfg.ListenPort,
		"peers", len(wanted), "gracefulRestart", s.cfg.GracefulRestart)
	return nil
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

func (s *Speaker) normalise(peers []Peer) ([]Peer, error) {
	var errs []error
	out := make([]Peer, 0, len(peers))
	for _, p := range peers {
		p.Address = p.Address.Unmap()
		p = p.withDefaults(s.cfg.ASN)
		if err := validatePeer(p); err != nil {
			errs = append(errs, err)
			continue
		}
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
	s.mu.Lock()
	s.wanted = wanted
	open := s.gateOpen
	s.mu.Unlock()
	if !open {
		return verr
	}
	return errors.Join(verr, s.applyPeers(ctx, false))
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

func (s *Speaker) openGate(ctx context.Context) {
	s.mu.Lock()
	if s.gateOpen {
		s.mu.Unlock()
		return
	}
	s.gateOpen = true
	close(s.gate)
	s.mu.Unlock()
	if err := s.applyPeers(ctx, s.cfg.GracefulRestart); err != nil {
		s.log.Error("configure peers", "err", err)
	}
}

// applyPeers adds, replaces and deletes GoBGP peers to match s.wanted.
func (s *Speaker) applyPeers(ctx context.Context, restarting bool) error {
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	s.mu.Lock()
	cur := make(map[netip.Addr]Peer, len(s.peers))
	for a, p := range s.peers {
		cur[a] = p
	}
	wanted := slices.Clone(s.wanted)
	s.mu.Unlock()

	ch, err := diffPeers(cur, wanted)
	errs := []error{err}
	for _, p := range ch.Delete {
		if e := s.deletePeer(ctx, p); e != nil {
			errs = append(errs, e)
		}
	}
	for _, p := range ch.Replace {
		if e := s.deletePeer(ctx, p); e != nil {
			errs = append(errs, e)
			continue
		}
		if e := s.addPeer(ctx, p, false); e != nil {
			errs = append(errs, e)
		}
	}
	for _, p := range ch.Add {
		if e := s.addPeer(ctx, p, restarting); e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

func (s *Speaker) addPeer(ctx context.Context, p Peer, restarting bool) error {
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerAPI(p, s.cfg, restarting)}); err != nil {
		return fmt.Errorf("add peer %s (asn %d): %w", p.Address, p.ASN, err)
	}
	s.mu.Lock()
	s.peers[p.Address] = p
	s.peerInfo[p.Address.String()] = &peerInfo{state: "idle"}
	s.mu.Unlock()
	s.log.Info("peer added", "peer", p.Address, "asn", p.ASN, "source", p.Source, "passive", p.Passive, "md5", p.Password != "")
	return nil
}

func (s *Speaker) deletePeer(ctx context.Context, p Peer) error {
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
		return fmt.Errorf("delete peer %s: %w", p.Address, err)
	}
	s.mu.Lock()
	delete(s.peers, p.Address)
	delete(s.peerInfo, p.Address.String())
	s.mu.Unlock()
	s.log.Info("peer removed", "peer", p.Address, "source", p.Source)
	return nil
}

// Announce makes the advertised VIP routes equal to routes. Only new,
// changed and removed routes produce updates. A route with bad attributes
// is skipped and reported; the others are applied. The first call opens
// the sessions.
func (s *Speaker) Announce(ctx context.Context, routes []model.VIPRoute) error {
	s.annMu.Lock()
	defer s.annMu.Unlock()
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return errors.New("bgp: speaker not running")
	}
	cur := make(map[netip.Prefix]string, len(s.paths))
	for p, k := range s.paths {
		cur[p] = k
	}
	s.mu.Unlock()

	var errs []error
	want := make(map[netip.Prefix]bool, len(routes))
	for _, r := range routes {
		p := r.Prefix.Masked()
		r.Prefix = p
		if want[p] {
			continue
		}
		want[p] = true
		key := attrKey(r)
		if old, ok := cur[p]; ok && old == key {
			continue
		}
		path, err := vipPath(r)
		if err != nil {
			errs = append(errs, err)
			// keep advertising what was there before rather than
			// withdraw a VIP because of a bad community
			continue
		}
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			errs = append(errs, fmt.Errorf("advertise %s: %w", p, err))
			continue
		}
		s.mu.Lock()
		s.paths[p] = key
		s.mu.Unlock()
	}
	for p := range cur {
		if want[p] {
			continue
		}
		if err := s.withdraw(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	s.openGate(ctx)
	return errors.Join(errs...)
}

func (s *Speaker) withdraw(ctx context.Context, p netip.Prefix) error {
	path, err := withdrawPath(p)
	if err != nil {
		return err
	}
	if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path}); err != nil {
		return fmt.Errorf("withdraw %s: %w", p, err)
	}
	s.mu.Lock()
	delete(s.paths, p)
	s.mu.Unlock()
	return nil
}

// Advertised reports the VIP prefixes that are in the RIB while at least
// one session is established (so they are announced to someone).
func (s *Speaker) Advertised() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := false
	for _, pi := range s.peerInfo {
		if pi.state == "established" {
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
// GoBGP is left untouched: the sessions end without a notification when
// the process exits, which peers treat as a graceful restart and keep
// forwarding to our VIPs for the restart time. Learned kernel routes stay
// in both cases; a restarted agent adopts them.
func (s *Speaker) Stop(ctx context.Context, withdraw bool) error {
	s.annMu.Lock()
	defer s.annMu.Unlock()
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	var prefixes []netip.Prefix
	for p := range s.paths {
		prefixes = append(prefixes, p)
	}
	s.mu.Unlock()
	var errs []error
	if withdraw {
		for _, p := range prefixes {
			if err := s.withdraw(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
		s.waitSent(ctx)
	}
	s.cancel()
	s.wg.Wait()
	if withdraw {
		if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
			errs = append(errs, fmt.Errorf("stop bgp: %w", err))
		}
	}
	s.log.Info("bgp speaker stopped", "withdrawn", withdraw, "vips", len(prefixes))
	return errors.Join(errs...)
}

// waitSent waits (bounded by ctx and 3 s) until no established session has
// updates queued, so withdrawals leave before the Cease.
func (s *Speaker) waitSent(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for {
		queued := false
		_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.State != nil && p.State.SessionState == api.PeerState_ESTABLISHED && p.State.OutQ > 0 {
				queued = true
			}
		})
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

// recordPeerError is called from GoBGP's log stream.
func (s *Speaker) recordPeerError(peer, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pi := s.peerInfo[peer]; pi != nil {
		pi.lastError = reason
	}
}
