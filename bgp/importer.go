package bgp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"

	"github.com/arraynetworks/edgeagent/status"
)

// importer keeps the kernel's learned routes equal to what the RIB says,
// within importCIDRs. It re-reads the RIB (only the import CIDRs) whenever
// a learned path changes or a session changes state, so a session loss
// removes its routes once GoBGP drops them (immediately, or after the
// graceful-restart window for GR peers, as GoBGP keeps them stale until
// then).
//
// Routes found in the kernel at start (a previous run's) are adopted, not
// flushed: they are kept until the RIB has converged (every peer is up and
// has sent End-of-RIB, or the restart time has passed), and only then
// removed if nobody announces them.
type importer struct {
	s      *Speaker
	routes RouteInstaller
	cidrs  []netip.Prefix
	log    *slog.Logger
	wake   chan struct{}

	mu        sync.Mutex
	installed map[netip.Prefix][]netip.Addr
	adopted   map[netip.Prefix]bool
	converged bool
	deadline  time.Time
	accepted  map[string]int
}

func newImporter(s *Speaker, r RouteInstaller, cidrs []netip.Prefix, lg *slog.Logger) *importer {
	return &importer{
		s: s, routes: r, cidrs: collapseCIDRs(cidrs), log: lg.With("part", "import"),
		wake:      make(chan struct{}, 1),
		installed: map[netip.Prefix][]netip.Addr{},
		adopted:   map[netip.Prefix]bool{},
		accepted:  map[string]int{},
	}
}

func (im *importer) kick() {
	select {
	case im.wake <- struct{}{}:
	default:
	}
}

// onPaths is called with every best-path change; only learned paths inside
// the import CIDRs wake the reconciler (our own VIPs never do).
func (im *importer) onPaths(paths []*api.Path) {
	for _, p := range paths {
		if p.NeighborIp == "" || p.NeighborIp == "<nil>" {
			continue
		}
		if p.Nlri == nil { // End-of-RIB: the RIB may have converged
			im.kick()
			return
		}
		nlri, err := apiutil.GetNativeNlri(p)
		if err != nil {
			continue
		}
		pfx, err := netip.ParsePrefix(nlri.String())
		if err != nil || !importable(pfx, im.cidrs) {
			continue
		}
		im.kick()
		return
	}
}

// adopt reads the agent's routes left in the kernel by a previous run.
func (im *importer) adopt() error {
	im.mu.Lock()
	im.deadline = time.Now().Add(im.s.cfg.RestartTime)
	im.mu.Unlock()
	have, err := im.routes.List()
	if err != nil {
		return err
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	for p, hops := range have {
		im.installed[p] = hops
		im.adopted[p] = true
	}
	if len(have) > 0 {
		im.log.Info("adopted learned routes from the kernel", "routes", len(have))
	}
	return nil
}

func (im *importer) run(ctx context.Context) {
	// The ticker retries failed kernel writes and, until the RIB has
	// converged, looks often for it (GoBGP flags a peer's End-of-RIB just
	// after announcing it); events do the rest.
	const fast, slow = 250 * time.Millisecond, 5 * time.Second
	tick := time.NewTicker(fast)
	defer tick.Stop()
	interval := fast
	for {
		select {
		case <-ctx.Done():
			return
		case <-im.wake:
		case <-tick.C:
		}
		if err := im.reconcile(ctx); err != nil && ctx.Err() == nil {
			im.log.Warn("install learned routes", "err", err)
		}
		im.mu.Lock()
		converged := im.converged
		im.mu.Unlock()
		if converged && interval == fast {
			interval = slow
			tick.Reset(slow)
		}
	}
}

// want reads the RIB within the import CIDRs and picks next hops.
func (im *importer) want(ctx context.Context) (map[netip.Prefix][]netip.Addr, map[string]int, error) {
	want := map[netip.Prefix][]netip.Addr{}
	acc := map[string]int{}
	var errs []error
	for _, c := range im.cidrs {
		req := &api.ListPathRequest{
			TableType: api.TableType_GLOBAL,
			Family:    family(c.Addr()),
			Prefixes:  []*api.TableLookupPrefix{{Prefix: c.String(), Type: api.TableLookupPrefix_LONGER}},
		}
		err := im.s.srv.ListPath(ctx, req, func(d *api.Destination) {
			pfx, err := netip.ParsePrefix(d.Prefix)
			if err != nil || !importable(pfx.Masked(), im.cidrs) {
				return
			}
			pfx = pfx.Masked()
			var cands []candidate
			for _, p := range d.Paths {
				if c, ok := candidateFromAPI(p); ok {
					cands = append(cands, c)
					acc[c.Peer]++
				}
			}
			if hops := selectNextHops(cands); len(hops) > 0 {
				want[pfx] = hops
			}
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return want, acc, errors.Join(errs...)
}

// ribConverged reports whether every desired peer is established and has
// sent End-of-RIB where it promised one (graceful restart).
func (im *importer) ribConverged(ctx context.Context) bool {
	im.s.mu.Lock()
	open, nwanted := im.s.gateOpen, len(im.s.wanted)
	im.s.mu.Unlock()
	if !open {
		return false
	}
	n, ok := 0, true
	_ = im.s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		n++
		if p.State == nil || p.State.SessionState != api.PeerState_ESTABLISHED {
			ok = false
			return
		}
		for _, af := range p.AfiSafis {
			if gr := af.MpGracefulRestart; gr != nil && gr.State != nil && gr.State.Received && !gr.State.EndOfRibReceived {
				ok = false
			}
		}
	})
	return ok && n == nwanted
}

func (im *importer) reconcile(ctx context.Context) error {
	want, acc, err := im.want(ctx)
	if err != nil {
		// A partial RIB read must not delete routes.
		return err
	}
	im.mu.Lock()
	converged := im.converged
	deadline := im.deadline
	im.mu.Unlock()
	if !converged && (time.Now().After(deadline) || im.ribConverged(ctx)) {
		converged = true
	}

	im.mu.Lock()
	im.accepted = acc
	have := make(map[netip.Prefix][]netip.Addr, len(im.installed))
	for p, h := range im.installed {
		have[p] = h
	}
	keep := map[netip.Prefix]bool{}
	if !converged {
		for p := range im.adopted {
			keep[p] = true
		}
	}
	im.mu.Unlock()

	d := diffRoutes(have, want, keep)
	var errs []error
	for p, hops := range d.Replace {
		if err := im.routes.Replace(p, hops); err != nil {
			errs = append(errs, err)
			continue
		}
		im.mu.Lock()
		im.installed[p] = hops
		delete(im.adopted, p)
		im.mu.Unlock()
		im.log.Debug("learned route installed", "prefix", p, "nextHops", hops)
	}
	for _, p := range d.Delete {
		if err := im.routes.Delete(p); err != nil {
			errs = append(errs, err)
			continue
		}
		im.mu.Lock()
		delete(im.installed, p)
		delete(im.adopted, p)
		im.mu.Unlock()
		im.log.Debug("learned route removed", "prefix", p)
	}
	im.mu.Lock()
	if converged && !im.converged {
		im.converged = true
		im.adopted = map[netip.Prefix]bool{}
		im.log.Info("learned routes converged", "routes", len(im.installed))
	}
	im.mu.Unlock()
	return errors.Join(errs...)
}

func (im *importer) acceptedCounts() map[string]int {
	im.mu.Lock()
	defer im.mu.Unlock()
	out := make(map[string]int, len(im.accepted))
	for k, v := range im.accepted {
		out[k] = v
	}
	return out
}

// learned describes the installed routes, each with the route another
// daemon has for its prefix that the kernel prefers, if any (read from the
// kernel now: BIRD may have added or withdrawn one since the install).
func (im *importer) learned() []status.LearnedRoute {
	im.mu.Lock()
	out := make([]status.LearnedRoute, 0, len(im.installed))
	prefixes := make([]netip.Prefix, 0, len(im.installed))
	metric := im.routes.Metric()
	for p, hops := range im.installed {
		r := status.LearnedRoute{Prefix: p.String(), Metric: metric}
		for _, h := range hops {
			r.NextHops = append(r.NextHops, h.String())
		}
		out = append(out, r)
		prefixes = append(prefixes, p)
	}
	im.mu.Unlock()
	if len(prefixes) > 0 {
		pref, err := im.routes.Preferred(prefixes)
		if err != nil {
			im.log.Warn("read other protocols' routes", "err", err)
		}
		for i := range out {
			out[i].ShadowedBy = pref[netip.MustParsePrefix(out[i].Prefix)]
		}
	}
	slices.SortFunc(out, func(a, b status.LearnedRoute) int {
		pa, pb := netip.MustParsePrefix(a.Prefix), netip.MustParsePrefix(b.Prefix)
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		return pa.Bits() - pb.Bits()
	})
	return out
}
