package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
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
	r           router
	routes      RouteInstaller
	cidrs       []netip.Prefix
	log         *slog.Logger
	clock       clock.Clock
	restartTime time.Duration
	// sessions reports whether the speaker has opened its sessions and how
	// many peers it wants.
	sessions func() (open bool, wanted int)
	wake     chan struct{}

	mu        sync.Mutex
	installed map[netip.Prefix][]netip.Addr
	adopted   map[netip.Prefix]bool
	converged bool
	deadline  time.Time
	accepted  map[netip.Addr]int
}

func newImporter(r router, routes RouteInstaller, cidrs []netip.Prefix, restartTime time.Duration,
	sessions func() (bool, int), clk clock.Clock, lg *slog.Logger) *importer {
	return &importer{
		r: r, routes: routes, cidrs: collapseCIDRs(cidrs), log: lg.With("part", "import"),
		clock: clk, restartTime: restartTime, sessions: sessions,
		wake:      make(chan struct{}, 1),
		installed: map[netip.Prefix][]netip.Addr{},
		adopted:   map[netip.Prefix]bool{},
		accepted:  map[netip.Addr]int{},
	}
}

func (im *importer) kick() {
	select {
	case im.wake <- struct{}{}:
	default:
	}
}

// onLearned takes a best-path change; only End-of-RIB and learned paths
// inside the import CIDRs wake the reconciler.
func (im *importer) onLearned(ev routerEvent) {
	if ev.EndOfRIB { // the RIB may have converged
		im.kick()
		return
	}
	for _, p := range ev.Prefixes {
		if importable(p, im.cidrs) {
			im.kick()
			return
		}
	}
}

// adopt reads the agent's routes left in the kernel by a previous run.
func (im *importer) adopt() error {
	im.mu.Lock()
	im.deadline = im.clock.Now().Add(im.restartTime)
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

// want reads the RIB within the import CIDRs and picks next hops; accepted
// counts, per peer, the paths inside them.
func (im *importer) want(ctx context.Context) (map[netip.Prefix][]netip.Addr, map[netip.Addr]int, error) {
	want := map[netip.Prefix][]netip.Addr{}
	acc := map[netip.Addr]int{}
	var errs []error
	for _, c := range im.cidrs {
		err := im.r.Learned(ctx, c, func(pfx netip.Prefix, cands []candidate) {
			if !importable(pfx, im.cidrs) {
				return
			}
			for _, c := range cands {
				acc[c.Peer]++
			}
			if hops := selectNextHops(cands); len(hops) > 0 {
				want[pfx] = hops
			}
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("read learned paths in %s: %w", c, err))
		}
	}
	return want, acc, errors.Join(errs...)
}

// ribConverged reports whether every desired peer is established and has
// sent End-of-RIB where it promised one (graceful restart).
func (im *importer) ribConverged(ctx context.Context) bool {
	open, wanted := im.sessions()
	if !open {
		return false
	}
	states, err := im.r.Peers(ctx)
	if err != nil || len(states) != wanted {
		return false
	}
	for _, st := range states {
		if st.State != "established" || st.EndOfRIBPending {
			return false
		}
	}
	return true
}

// reconcile makes the kernel's learned routes equal to the RIB's. Until
// the RIB has converged, adopted routes nobody announces (yet) stay.
func (im *importer) reconcile(ctx context.Context) error {
	want, acc, err := im.want(ctx)
	if err != nil {
		// A partial RIB read must not delete routes.
		return err
	}
	im.mu.Lock()
	converged, deadline := im.converged, im.deadline
	im.mu.Unlock()
	if !converged && (!im.clock.Now().Before(deadline) || im.ribConverged(ctx)) {
		converged = true
	}

	im.mu.Lock()
	im.accepted = acc
	have := maps.Clone(im.installed)
	keep := map[netip.Prefix]bool{}
	if !converged {
		keep = maps.Clone(im.adopted)
	}
	im.mu.Unlock()

	err = im.apply(diffRoutes(have, want, keep))
	if converged {
		im.markConverged()
	}
	return err
}

// apply writes a route diff to the kernel, recording what succeeded.
func (im *importer) apply(d routeDiff) error {
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
	return errors.Join(errs...)
}

func (im *importer) markConverged() {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.converged {
		return
	}
	im.converged = true
	im.adopted = map[netip.Prefix]bool{}
	im.log.Info("learned routes converged", "routes", len(im.installed))
}

func (im *importer) acceptedCounts() map[netip.Addr]int {
	im.mu.Lock()
	defer im.mu.Unlock()
	return maps.Clone(im.accepted)
}

// learned describes the installed routes, each with the route another
// daemon has for its prefix that the kernel prefers, if any (read from the
// kernel now: BIRD may have added or withdrawn one since the install).
func (im *importer) learned() []LearnedRoute {
	im.mu.Lock()
	out := make([]LearnedRoute, 0, len(im.installed))
	prefixes := make([]netip.Prefix, 0, len(im.installed))
	metric := im.routes.Metric()
	for p, hops := range im.installed {
		out = append(out, LearnedRoute{Prefix: p, NextHops: slices.Clone(hops), Metric: metric})
		prefixes = append(prefixes, p)
	}
	im.mu.Unlock()
	if len(prefixes) > 0 {
		pref, err := im.routes.Preferred(prefixes)
		if err != nil {
			im.log.Warn("read other protocols' routes", "err", err)
		}
		for i := range out {
			out[i].ShadowedBy = pref[out[i].Prefix]
		}
	}
	slices.SortFunc(out, func(a, b LearnedRoute) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}
