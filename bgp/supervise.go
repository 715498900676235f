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
)

// Backoff for peers whose sessions keep failing before they are
// established (wrong ASN, refused OPEN, ...): after backoffAfter failures
// in a row the peer is held down for backoffBase, doubling up to
// backoffMax, so a misconfigured neighbor costs one attempt every few
// minutes rather than one every few seconds. The doubling is client-go's
// flowcontrol.Backoff (per peer; it starts over when a peer has not failed
// for twice backoffMax), and Established resets it.
const (
	backoffAfter = 3
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
)

// superviseInterval is how often the supervisor re-reads session states,
// the MD5 counters and the hold-downs, and retries peers the router
// refused.
const superviseInterval = 2 * time.Second

// supervise owns the speaker's timing: it opens the gate after
// InitialHold, follows session state changes (clearing errors on
// Established, counting failed attempts and holding failing peers down),
// and on each tick explains MD5 failures, resyncs states and runs the
// session reconcilers.
func (s *Speaker) supervise(ctx context.Context) {
	tick := time.NewTicker(s.tick)
	defer tick.Stop()
	gate := time.NewTimer(s.cfg.InitialHold)
	defer gate.Stop()
	md5 := s.readMD5()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.events:
			s.onPeerState(ctx, ev.Peer, ev.State)
		case <-gate.C:
			s.holdExpired(ctx)
		case <-tick.C:
			md5 = s.onTick(ctx, md5)
		}
	}
}

// holdExpired opens the sessions when InitialHold has passed without an
// Announce.
func (s *Speaker) holdExpired(ctx context.Context) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.running() && s.openGate() {
		s.log.Info("no announcement yet; opening sessions anyway", "after", s.cfg.InitialHold)
		s.reconcileSessions(ctx)
	}
}

// onTick explains rising MD5 counters (md5 is their last reading; it
// returns the new one), resyncs the session states and runs the session
// reconcilers.
func (s *Speaker) onTick(ctx context.Context, md5 md5Counters) md5Counters {
	cur := s.readMD5()
	s.explainMD5(md5, cur)
	s.resyncStates(ctx)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.running() {
		s.reconcileSessions(ctx)
	}
	return cur
}

// onPeerState records a session state change and, when a peer has failed
// backoffAfter times in a row, holds it down.
func (s *Speaker) onPeerState(ctx context.Context, addr netip.Addr, next string) {
	now := s.clock.Now()
	s.mu.Lock()
	ss := s.sessions[addr]
	if ss == nil {
		s.mu.Unlock()
		return
	}
	prev := ss.state
	ss.state = next
	var hold time.Duration
	switch {
	case next == "established":
		ss.failures = 0
		ss.lastError = ""
		ss.md5Hint = ""
		s.backoff.Reset(addr.String())
	case (prev == "opensent" || prev == "openconfirm") && (next == "idle" || next == "active"):
		ss.failures++
		if ss.failures >= backoffAfter && !now.Before(ss.holdUntil) {
			s.backoff.Next(addr.String(), now)
			hold = s.backoff.Get(addr.String())
			ss.holdUntil = now.Add(hold)
		}
	}
	reason := ss.lastError
	s.mu.Unlock()
	s.log.Debug("peer state", "peer", addr, "from", prev, "to", next)
	if hold == 0 {
		return
	}
	s.log.Warn("peer keeps failing; holding it down", "peer", addr, "for", hold, "lastError", reason)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.running() {
		s.reconcileSessions(ctx)
	}
}

// resyncStates refreshes the session states from the router, in case a
// state event was dropped while the supervisor was busy.
func (s *Speaker) resyncStates(ctx context.Context) {
	states, err := s.r.Peers(ctx)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range states {
		if ss := s.sessions[st.Address]; ss != nil {
			ss.state = st.State
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
	for a, ss := range s.sessions {
		if ss.state == "established" {
			continue
		}
		if h := md5Hint(prev, cur, s.peers[a].Password != ""); h != "" {
			ss.md5Hint = h
		}
	}
}

// reason is the session's lastError for status at now.
func (ss *session) reason(now time.Time) string {
	r := ss.lastError
	if ss.md5Hint != "" {
		if r == "" {
			r = ss.md5Hint
		} else {
			r = ss.md5Hint + "; " + r
		}
	}
	if now.Before(ss.holdUntil) {
		r = fmt.Sprintf("%s (backing off until %s)", r, ss.holdUntil.UTC().Format(time.RFC3339))
	}
	return r
}
