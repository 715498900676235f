package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/arraynetworks/edgeagent/model"
)

// gobgpRouter is the router on GoBGP embedded as a library. It only
// translates (translate.go does the values) and forwards; every decision is
// the speaker's.
type gobgpRouter struct {
	log *slog.Logger
	srv *server.BgpServer
	cfg Config
}

func newGoBGPRouter(lg *slog.Logger) *gobgpRouter { return &gobgpRouter{log: lg} }

var errNotStarted = errors.New("router not started")

func (g *gobgpRouter) Start(ctx context.Context, cfg Config, onEvent func(routerEvent)) error {
	glog := &gobgpLogger{l: g.log, onPeerErr: func(peer, reason string) {
		if a, err := netip.ParseAddr(peer); err == nil {
			onEvent(routerEvent{Kind: eventPeerError, Peer: a.Unmap(), Error: reason})
		}
	}}
	g.cfg = cfg
	g.srv = server.NewBgpServer(server.LoggerOption(glog))
	// Serve is GoBGP's main loop; it never returns, and lives as long as
	// the process: GoBGP has no way to end it (StopBgp stops the instance,
	// not the loop).
	go g.srv.Serve()
	if err := g.srv.StartBgp(ctx, &api.StartBgpRequest{Global: globalAPI(cfg, cfg.RouterID)}); err != nil {
		return fmt.Errorf("start bgp (asn %d, router id %s, port %d): %w", cfg.ASN, cfg.RouterID, cfg.ListenPort, err)
	}
	pol, asg := exportPolicy()
	if err := g.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return fmt.Errorf("add export policy: %w", err)
	}
	if err := g.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: asg}); err != nil {
		return fmt.Errorf("assign export policy: %w", err)
	}
	err := g.srv.WatchEvent(ctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, func(r *api.WatchEventResponse) {
		var ev routerEvent
		ok := false
		switch e := r.Event.(type) {
		case *api.WatchEventResponse_Peer:
			ev, ok = peerEventFromAPI(e.Peer)
		case *api.WatchEventResponse_Table:
			ev, ok = learnedEventFromAPI(e.Table.Paths)
		}
		if ok {
			onEvent(ev)
		}
	})
	if err != nil {
		return fmt.Errorf("watch bgp events: %w", err)
	}
	return nil
}

func (g *gobgpRouter) Stop(ctx context.Context) error {
	if g.srv == nil {
		return errNotStarted
	}
	return g.srv.StopBgp(ctx, &api.StopBgpRequest{})
}

func (g *gobgpRouter) AddPeer(ctx context.Context, p Peer, restarting bool) error {
	if g.srv == nil {
		return errNotStarted
	}
	return g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerAPI(p, g.cfg, restarting)})
}

func (g *gobgpRouter) DeletePeer(ctx context.Context, a netip.Addr) error {
	if g.srv == nil {
		return errNotStarted
	}
	return g.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()})
}

func (g *gobgpRouter) DisablePeer(ctx context.Context, a netip.Addr, reason string) error {
	if g.srv == nil {
		return errNotStarted
	}
	return g.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: a.String(), Communication: reason})
}

func (g *gobgpRouter) EnablePeer(ctx context.Context, a netip.Addr) error {
	if g.srv == nil {
		return errNotStarted
	}
	return g.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: a.String()})
}

func (g *gobgpRouter) AdvertisePath(ctx context.Context, r model.VIPRoute) error {
	path, err := vipPath(r)
	if err != nil {
		return err
	}
	if g.srv == nil {
		return errNotStarted
	}
	_, err = g.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
	return err
}

func (g *gobgpRouter) WithdrawPath(ctx context.Context, p netip.Prefix) error {
	path, err := withdrawPath(p)
	if err != nil {
		return err
	}
	if g.srv == nil {
		return errNotStarted
	}
	return g.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path})
}

func (g *gobgpRouter) Peers(ctx context.Context) ([]peerState, error) {
	if g.srv == nil {
		return nil, errNotStarted
	}
	var out []peerState
	err := g.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if st, ok := peerStateFromAPI(p); ok {
			out = append(out, st)
		}
	})
	return out, err
}

func (g *gobgpRouter) Learned(ctx context.Context, cidr netip.Prefix, fn func(netip.Prefix, []candidate)) error {
	if g.srv == nil {
		return errNotStarted
	}
	req := &api.ListPathRequest{
		TableType: api.TableType_GLOBAL,
		Family:    family(cidr.Addr()),
		Prefixes:  []*api.TableLookupPrefix{{Prefix: cidr.String(), Type: api.TableLookupPrefix_LONGER}},
	}
	return g.srv.ListPath(ctx, req, func(d *api.Destination) {
		pfx, err := netip.ParsePrefix(d.Prefix)
		if err != nil {
			return
		}
		var cands []candidate
		for _, p := range d.Paths {
			if c, ok := candidateFromAPI(p); ok {
				cands = append(cands, c)
			}
		}
		fn(pfx.Masked(), cands)
	})
}

func stateWord(st api.PeerState_SessionState) string {
	if st == api.PeerState_UNKNOWN {
		return "idle"
	}
	return strings.ToLower(st.String())
}

// peerStateFromAPI reads one GoBGP neighbor; ok is false without an
// address.
func peerStateFromAPI(p *api.Peer) (peerState, bool) {
	if p == nil || p.Conf == nil {
		return peerState{}, false
	}
	a, err := netip.ParseAddr(p.Conf.NeighborAddress)
	if err != nil {
		return peerState{}, false
	}
	out := peerState{Address: a.Unmap(), State: "idle"}
	if st := p.State; st != nil {
		out.State = stateWord(st.SessionState)
		out.OutQ = st.OutQ
		if m := st.Messages; m != nil {
			if m.Received != nil {
				out.UpdatesIn = m.Received.Update
			}
			if m.Sent != nil {
				out.UpdatesOut = m.Sent.Update
			}
		}
	}
	if out.State == "established" {
		if t := p.Transport; t != nil {
			if la, err := netip.ParseAddr(t.LocalAddress); err == nil {
				out.LocalAddress = la.Unmap()
			}
		}
		if t := p.Timers; t != nil && t.State != nil && t.State.Uptime != nil {
			out.Since = t.State.Uptime.AsTime()
		}
	}
	out.GracefulRestart = p.GracefulRestart != nil && p.GracefulRestart.Enabled
	for _, af := range p.AfiSafis {
		if af.State != nil {
			out.Received += int(af.State.Received)
		}
		if gr := af.MpGracefulRestart; gr != nil && gr.State != nil && gr.State.Received && !gr.State.EndOfRibReceived {
			out.EndOfRIBPending = true
		}
	}
	return out, true
}

// peerEventFromAPI reads a session state change.
func peerEventFromAPI(ev *api.WatchEventResponse_PeerEvent) (routerEvent, bool) {
	if ev == nil || ev.Peer == nil || ev.Peer.State == nil || ev.Type != api.WatchEventResponse_PeerEvent_STATE {
		return routerEvent{}, false
	}
	addr := ev.Peer.State.NeighborAddress
	if addr == "" && ev.Peer.Conf != nil {
		addr = ev.Peer.Conf.NeighborAddress
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return routerEvent{}, false
	}
	return routerEvent{Kind: eventPeerState, Peer: a.Unmap(), State: stateWord(ev.Peer.State.SessionState)}, true
}

// learnedEventFromAPI reads a batch of best-path changes: only paths peers
// sent count (our own VIPs never do).
func learnedEventFromAPI(paths []*api.Path) (routerEvent, bool) {
	ev := routerEvent{Kind: eventLearned}
	for _, p := range paths {
		if p.NeighborIp == "" || p.NeighborIp == "<nil>" {
			continue
		}
		if p.Nlri == nil {
			ev.EndOfRIB = true
			continue
		}
		nlri, err := apiutil.GetNativeNlri(p)
		if err != nil {
			continue
		}
		if pfx, err := netip.ParsePrefix(nlri.String()); err == nil {
			ev.Prefixes = append(ev.Prefixes, pfx.Masked())
		}
	}
	return ev, ev.EndOfRIB || len(ev.Prefixes) > 0
}

// candidateFromAPI reads a GoBGP path. ok is false for our own paths,
// withdrawals and paths it cannot parse.
func candidateFromAPI(p *api.Path) (candidate, bool) {
	if p == nil || p.IsWithdraw || p.NeighborIp == "" || p.NeighborIp == "<nil>" {
		return candidate{}, false
	}
	peer, err := netip.ParseAddr(p.NeighborIp)
	if err != nil || peer.IsUnspecified() {
		return candidate{}, false
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return candidate{}, false
	}
	c := candidate{Peer: peer.Unmap(), Best: p.Best, LocalPref: 100}
	for _, a := range attrs {
		switch v := a.(type) {
		case *bgp.PathAttributeNextHop:
			c.NextHop, _ = netip.AddrFromSlice(v.Value)
		case *bgp.PathAttributeMpReachNLRI:
			c.NextHop, _ = netip.AddrFromSlice(v.Nexthop)
		case *bgp.PathAttributeLocalPref:
			c.LocalPref = v.Value
		case *bgp.PathAttributeOrigin:
			c.Origin = v.Value
		case *bgp.PathAttributeMultiExitDisc:
			c.MED = v.Value
		case *bgp.PathAttributeAsPath:
			for _, seg := range v.Value {
				if seg.GetType() == bgp.BGP_ASPATH_ATTR_TYPE_SET || seg.GetType() == bgp.BGP_ASPATH_ATTR_TYPE_CONFED_SET {
					c.ASPathLen++
				} else {
					c.ASPathLen += len(seg.GetAS())
				}
			}
		}
	}
	c.NextHop = c.NextHop.Unmap()
	return c, true
}
