package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/arraynetworks/edgeagent/model"
)

// The speaker's reconcilers, in the order they run. Each compares one part
// of the desired state with what the router has and changes only the
// difference; each runs with opMu held and takes mu only around its reads
// and bookkeeping, never across a router call. A router call that fails
// leaves its bookkeeping untouched, so the next run retries exactly that.
//
//  1. reconcilePaths: VIP paths wanted vs advertised (every Announce).
//  2. reconcilePeers: peers wanted vs configured, once the gate is open.
//  3. reconcileHolds: peers held down by the backoff vs disabled.
//
// 2 and 3 also run on every supervisor tick, so a peer the router refused
// is retried and a hold-down ends on time.

// pathChange is one VIP path to (re)advertise.
type pathChange struct {
	Route model.VIPRoute
	Key   string
}

// pathChanges is the difference between the advertised paths and the
// wanted ones.
type pathChanges struct {
	Advertise []pathChange
	Withdraw  []netip.Prefix
}

// diffPaths compares the advertised paths (prefix → attrKey) with the
// wanted routes. A prefix listed twice counts once, the first entry wins.
func diffPaths(have map[netip.Prefix]string, want []model.VIPRoute) pathChanges {
	var ch pathChanges
	seen := make(map[netip.Prefix]bool, len(want))
	for _, r := range want {
		p := r.Prefix.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		r.Prefix = p
		key := attrKey(r)
		if old, ok := have[p]; ok && old == key {
			continue
		}
		ch.Advertise = append(ch.Advertise, pathChange{Route: r, Key: key})
	}
	for p := range have {
		if !seen[p] {
			ch.Withdraw = append(ch.Withdraw, p)
		}
	}
	slices.SortFunc(ch.Withdraw, comparePrefix)
	return ch
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// reconcilePaths makes the advertised VIP paths equal to want.
func (s *Speaker) reconcilePaths(ctx context.Context, want []model.VIPRoute) error {
	s.mu.Lock()
	ch := diffPaths(s.paths, want)
	s.mu.Unlock()
	var errs []error
	for _, a := range ch.Advertise {
		p := a.Route.Prefix
		if err := s.r.AdvertisePath(ctx, a.Route); err != nil {
			// The VIP keeps what it had rather than be withdrawn because
			// of a bad community.
			errs = append(errs, fmt.Errorf("advertise %s: %w", p, err))
			continue
		}
		s.mu.Lock()
		s.paths[p] = a.Key
		s.mu.Unlock()
	}
	for _, p := range ch.Withdraw {
		if err := s.r.WithdrawPath(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		s.mu.Lock()
		delete(s.paths, p)
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// reconcileSessions runs the peer and hold-down reconcilers and logs what
// fails (once per distinct error: it runs on every tick). The failures also
// show in the neighbors' lastError.
func (s *Speaker) reconcileSessions(ctx context.Context) {
	err := errors.Join(s.reconcilePeers(ctx), s.reconcileHolds(ctx))
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.mu.Lock()
	changed := msg != s.lastSessionErr
	s.lastSessionErr = msg
	s.mu.Unlock()
	if err != nil && changed {
		s.log.Error("configure peers", "err", err)
	}
}

// reconcilePeers adds, replaces and deletes router peers to match the
// wanted ones; nothing before the gate opens.
func (s *Speaker) reconcilePeers(ctx context.Context) error {
	s.mu.Lock()
	if !s.gateOpen {
		s.mu.Unlock()
		return nil
	}
	cur := maps.Clone(s.peers)
	want := slices.Clone(s.wantPeers)
	wanted := make(map[netip.Addr]bool, len(want))
	for _, p := range want {
		wanted[p.Address] = true
	}
	// Failures of peers no longer wanted are moot.
	maps.DeleteFunc(s.peerErrs, func(a netip.Addr, _ string) bool { return !wanted[a] })
	maps.DeleteFunc(s.restarting, func(a netip.Addr, _ bool) bool { return !wanted[a] })
	s.mu.Unlock()

	ch, err := diffPeers(cur, want)
	errs := []error{err}
	for _, p := range ch.Delete {
		errs = append(errs, s.deletePeer(ctx, p))
	}
	for _, p := range ch.Replace {
		if err := s.deletePeer(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.addPeer(ctx, p))
	}
	for _, p := range ch.Add {
		errs = append(errs, s.addPeer(ctx, p))
	}
	return errors.Join(errs...)
}

func (s *Speaker) addPeer(ctx context.Context, p Peer) error {
	s.mu.Lock()
	restarting := s.restarting[p.Address]
	s.mu.Unlock()
	if err := s.r.AddPeer(ctx, p, restarting); err != nil {
		err = fmt.Errorf("add peer %s (asn %d): %w", p.Address, p.ASN, err)
		s.mu.Lock()
		s.peerErrs[p.Address] = err.Error()
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.peers[p.Address] = p
	s.sessions[p.Address] = &session{state: "idle"}
	delete(s.restarting, p.Address)
	delete(s.peerErrs, p.Address)
	s.mu.Unlock()
	// A new or changed peer starts without a hold-down: its new settings
	// deserve an immediate try.
	s.backoff.Reset(p.Address.String())
	s.log.Info("peer added", "peer", p.Address, "asn", p.ASN, "source", p.Source, "passive", p.Passive,
		"md5", p.Password != "", "restarting", restarting)
	return nil
}

func (s *Speaker) deletePeer(ctx context.Context, p Peer) error {
	if err := s.r.DeletePeer(ctx, p.Address); err != nil {
		err = fmt.Errorf("delete peer %s: %w", p.Address, err)
		s.mu.Lock()
		s.peerErrs[p.Address] = err.Error()
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	delete(s.peers, p.Address)
	delete(s.sessions, p.Address)
	s.mu.Unlock()
	s.backoff.Reset(p.Address.String())
	s.log.Info("peer removed", "peer", p.Address, "source", p.Source)
	return nil
}

// reconcileHolds disables the peers whose hold-down is running and enables
// those whose hold-down has passed.
func (s *Speaker) reconcileHolds(ctx context.Context) error {
	now := s.clock.Now()
	var hold, release []netip.Addr
	s.mu.Lock()
	for a, ss := range s.sessions {
		switch want := now.Before(ss.holdUntil); {
		case want && !ss.held:
			hold = append(hold, a)
		case !want && ss.held:
			release = append(release, a)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(hold, netip.Addr.Compare)
	slices.SortFunc(release, netip.Addr.Compare)
	var errs []error
	for _, a := range hold {
		if err := s.r.DisablePeer(ctx, a, "edgeagent: backing off"); err != nil {
			errs = append(errs, fmt.Errorf("hold peer %s down: %w", a, err))
			continue
		}
		s.setHeld(a, true)
	}
	for _, a := range release {
		if err := s.r.EnablePeer(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("release peer %s: %w", a, err))
			continue
		}
		s.setHeld(a, false)
		s.log.Info("peer hold-down over", "peer", a)
	}
	return errors.Join(errs...)
}

func (s *Speaker) setHeld(a netip.Addr, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[a]; ss != nil {
		ss.held = held
	}
}
