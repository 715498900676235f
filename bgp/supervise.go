package bgp

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Backoff for peers whose sessions keep failing before they are
// established (wrong ASN, refused OPEN, ...): after backoffAfter failures
// in a row the peer is held down for backoffBase, doubling up to
// backoffMax, so a misconfigured neighbor costs one attempt every few
// minutes rather than one every few seconds.
const (
	backoffAfter = 3
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
)

// backoffDelay is the hold-down after n consecutive failures (0 below the
// threshold).
func backoffDelay(n int) time.Duration {
	if n < backoffAfter {
		return 0
	}
	d := backoffBase
	for i := backoffAfter; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

func stateWord(st api.PeerState_SessionState) string {
	if st == api.PeerState_UNKNOWN {
		return "idle"
	}
	return strings.ToLower(st.String())
}

// supervise follows peer state changes: it clears errors on Established,
// counts failed attempts and holds failing peers down, and watches the
// kernel's TCP MD5 counters to explain sessions that never start.
func (s *Speaker) supervise(ctx context.Context, events <-chan *api.WatchEventResponse_PeerEvent) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	md5 := readMD5Counters()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			s.onPeerEvent(ctx, ev)
		case <-tick.C:
			cur := readMD5Counters()
			s.explainMD5(md5, cur)
			md5 = cur
			s.releaseBackoff(ctx)
			s.resyncStates(ctx)
		}
	}
}

func (s *Speaker) onPeerEvent(ctx context.Context, ev *api.WatchEventResponse_PeerEvent) {
	if ev == nil || ev.Peer == nil || ev.Peer.State == nil || ev.Type != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr := ev.Peer.State.NeighborAddress
	if addr == "" && ev.Peer.Conf != nil {
		addr = ev.Peer.Conf.NeighborAddress
	}
	next := stateWord(ev.Peer.State.SessionState)
	s.mu.Lock()
	pi := s.peerInfo[addr]
	if pi == nil {
		s.mu.Unlock()
		return
	}
	prev := pi.state
	pi.state = next
	var hold time.Duration
	switch {
	case next == "established":
		pi.failures = 0
		pi.lastError = ""
		pi.md5Hint = ""
	case (prev == "opensent" || prev == "openconfirm") && (next == "idle" || next == "active"):
		pi.failures++
		if d := backoffDelay(pi.failures); d > 0 && !pi.disabled {
			pi.disabled = true
			pi.backoffTill = time.Now().Add(d)
			hold = d
		}
	}
	reason := pi.lastError
	s.mu.Unlock()
	s.log.Debug("peer state", "peer", addr, "from", prev, "to", next)
	if hold > 0 {
		s.log.Warn("peer keeps failing; holding it down", "peer", addr, "for", hold, "lastError", reason)
		if err := s.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr, Communication: "edgeagent: backing off"}); err != nil {
			s.log.Warn("hold peer down", "peer", addr, "err", err)
		}
	}
}

// resyncStates refreshes the session states from GoBGP, in case a state
// event was dropped while the supervisor was busy.
func (s *Speaker) resyncStates(ctx context.Context) {
	states := map[string]string{}
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf != nil && p.State != nil {
			states[p.Conf.NeighborAddress] = stateWord(p.State.SessionState)
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, st := range states {
		if pi := s.peerInfo[a]; pi != nil {
			pi.state = st
		}
	}
}

// releaseBackoff re-enables peers whose hold-down has passed.
func (s *Speaker) releaseBackoff(ctx context.Context) {
	now := time.Now()
	var due []string
	s.mu.Lock()
	for a, pi := range s.peerInfo {
		if pi.disabled && now.After(pi.backoffTill) {
			pi.disabled = false
			due = append(due, a)
		}
	}
	s.mu.Unlock()
	for _, a := range due {
		if err := s.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: a}); err != nil {
			s.log.Warn("release peer", "peer", a, "err", err)
		}
	}
}

// md5Counters are the kernel's per-namespace TCP MD5 drop counters. The
// kernel drops segments with a bad or missing signature silently (the
// session just never connects), so these are the only witness.
type md5Counters struct{ notFound, unexpected, failure uint64 }

func readMD5Counters() md5Counters {
	f, err := os.Open("/proc/net/netstat")
	if err != nil {
		return md5Counters{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		var c md5Counters
		for i := 1; i < len(fields) && i < len(names); i++ {
			v, _ := strconv.ParseUint(fields[i], 10, 64)
			switch names[i] {
			case "TCPMD5NotFound":
				c.notFound = v
			case "TCPMD5Unexpected":
				c.unexpected = v
			case "TCPMD5Failure":
				c.failure = v
			}
		}
		return c
	}
	return md5Counters{}
}

// md5Hint explains rising MD5 counters for one not-established peer. The
// counters are per network namespace, not per peer, so the hint goes to
// every peer that is down and could be affected.
func md5Hint(prev, cur md5Counters, hasPassword bool) string {
	switch {
	case cur.failure > prev.failure && hasPassword:
		return "TCP MD5 signature mismatch: the peer uses a different password (kernel TCPMD5Failure rising)"
	case cur.notFound > prev.notFound && hasPassword:
		return "TCP MD5: the peer sends no signature but a password is configured here (kernel TCPMD5NotFound rising)"
	case cur.unexpected > prev.unexpected && !hasPassword:
		return "TCP MD5: the peer signs its segments but no password is configured here (kernel TCPMD5Unexpected rising)"
	case cur.unexpected > prev.unexpected:
		return "TCP MD5: signed segments arrive on a socket without our key (kernel TCPMD5Unexpected rising)"
	}
	return ""
}

func (s *Speaker) explainMD5(prev, cur md5Counters) {
	if cur == prev {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, pi := range s.peerInfo {
		if pi.state == "established" {
			continue
		}
		addr, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		if h := md5Hint(prev, cur, s.peers[addr].Password != ""); h != "" {
			pi.md5Hint = h
		}
	}
}

func (pi *peerInfo) reason() string {
	r := pi.lastError
	if pi.md5Hint != "" {
		if r == "" {
			r = pi.md5Hint
		} else {
			r = pi.md5Hint + "; " + r
		}
	}
	if pi.disabled {
		r = fmt.Sprintf("%s (backing off until %s)", r, pi.backoffTill.UTC().Format(time.RFC3339))
	}
	return r
}
