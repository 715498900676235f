package bgp

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// Neighbor is one desired BGP neighbor and its session, as the speaker
// reports it (the agent turns it into /status neighbors[]).
type Neighbor struct {
	Address netip.Addr
	ASN     uint32
	// State is GoBGP's FSM word in lower case: idle, connect, active,
	// opensent, openconfirm, established.
	State string
	// Uptime is how long the session has been established (0 when down).
	Uptime time.Duration
	// Received counts the prefixes the peer sent; Accepted those inside
	// importCIDRs; Advertised the VIPs announced to it.
	Received, Accepted, Advertised int
	// LocalAddress is our end of the session (the configured one while it
	// is down); invalid when neither is known.
	LocalAddress    netip.Addr
	GracefulRestart bool
	// LastError says why the session is down (notification, TCP MD5,
	// backoff, a peer the router refused, ...).
	LastError string
	// Source is "config" or "node/<name>".
	Source string
	// UpdatesReceived and UpdatesSent count UPDATE messages in the current
	// session.
	UpdatesReceived, UpdatesSent uint64
}

// LearnedRoute is a learned route the speaker installed in the kernel.
type LearnedRoute struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr
	// Metric is the route's kernel metric (RouteInstaller.Metric).
	Metric uint32
	// ShadowedBy names another routing daemon's route to the same prefix
	// that the kernel prefers (RouteInstaller.Preferred).
	ShadowedBy string
}

// Status texts for neighbors without a session of their own to explain.
const (
	reasonGateClosed = "waiting for the first announcement before opening the session"
	// GoBGP reports TCP connect failures only at debug level: say at least
	// what the state means, so "active" alone is not all an operator gets.
	reasonNoAnswer = "no session: the peer has not answered or accepted our TCP connection yet"
)

// neighborView is what the neighbors are computed from: a copy of the
// speaker's state and what the router reported.
type neighborView struct {
	wanted   []Peer
	sessions map[netip.Addr]session
	peerErrs map[netip.Addr]string
	gateOpen bool
	// v4 and v6 count the advertised VIPs per family.
	v4, v6 int
	// accepted counts per peer the learned paths inside importCIDRs.
	accepted map[netip.Addr]int
	states   map[netip.Addr]peerState
	// routerErr is why the router could not report its sessions.
	routerErr error
	now       time.Time
}

// neighbors describes every wanted peer, sorted by address. Peers still
// waiting for the first Announce are listed as idle.
func (v neighborView) neighbors() []Neighbor {
	out := make([]Neighbor, 0, len(v.wanted))
	for _, w := range v.wanted {
		out = append(out, v.neighbor(w))
	}
	slices.SortFunc(out, func(a, b Neighbor) int { return a.Address.Compare(b.Address) })
	return out
}

func (v neighborView) neighbor(w Peer) Neighbor {
	n := Neighbor{
		Address:      w.Address,
		ASN:          w.ASN,
		State:        "idle",
		Source:       w.Source,
		Accepted:     v.accepted[w.Address],
		LocalAddress: w.LocalAddress,
	}
	ss, configured := v.sessions[w.Address]
	switch {
	case configured:
		n.LastError = ss.reason(v.now)
	case !v.gateOpen:
		n.LastError = reasonGateClosed
	default:
		n.LastError = v.peerErrs[w.Address]
	}
	if st, ok := v.states[w.Address]; ok {
		n.State = st.State
		n.UpdatesReceived, n.UpdatesSent = st.UpdatesIn, st.UpdatesOut
		n.GracefulRestart = st.GracefulRestart
		n.Received = st.Received
		if n.State == "established" {
			if st.LocalAddress.IsValid() {
				n.LocalAddress = st.LocalAddress
			}
			if !st.Since.IsZero() {
				n.Uptime = v.now.Sub(st.Since)
			}
			n.Advertised = v.v4
			if !w.Address.Is4() {
				n.Advertised = v.v6
			}
		}
	} else if configured && v.routerErr != nil && n.LastError == "" {
		n.LastError = "bgp router: " + v.routerErr.Error()
	}
	if n.LastError == "" && (n.State == "active" || n.State == "connect") {
		n.LastError = reasonNoAnswer
	}
	return n
}

// view copies the speaker's state and reads the router's sessions.
func (s *Speaker) view(ctx context.Context) (neighborView, bool) {
	s.mu.Lock()
	v := neighborView{
		wanted:   slices.Clone(s.wantPeers),
		sessions: make(map[netip.Addr]session, len(s.sessions)),
		peerErrs: maps.Clone(s.peerErrs),
		gateOpen: s.gateOpen,
	}
	for a, ss := range s.sessions {
		v.sessions[a] = *ss
	}
	for p := range s.paths {
		if p.Addr().Is4() {
			v.v4++
		} else {
			v.v6++
		}
	}
	started := s.started
	s.mu.Unlock()
	if !started {
		return neighborView{}, false
	}
	if s.imp != nil {
		v.accepted = s.imp.acceptedCounts()
	}
	states, err := s.r.Peers(ctx)
	v.routerErr = err
	v.states = make(map[netip.Addr]peerState, len(states))
	for _, st := range states {
		v.states[st.Address] = st
	}
	v.now = s.clock.Now()
	return v, true
}

// Neighbors reports every desired neighbor.
func (s *Speaker) Neighbors() []Neighbor {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, ok := s.view(ctx)
	if !ok {
		return nil
	}
	return v.neighbors()
}

// Learned reports the learned routes installed in the kernel.
func (s *Speaker) Learned() []LearnedRoute {
	if s.imp == nil {
		return nil
	}
	return s.imp.learned()
}
