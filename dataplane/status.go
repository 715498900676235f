package dataplane

import (
	"errors"
	"maps"
	"time"
)

// Status describes the dataplane: the agent shows it in /status (as the
// dataplane object) and `edgeagent status`.
type Status struct {
	// Backend is the rules backend in use; Table its nftables table
	// (nftables only).
	Backend       Backend
	Table         string
	Interface     string
	InterfaceKind string // KindDummy or KindBridge; "" until the link is read
	Masquerade    bool
	// Sysctls are the forwarding sysctls as last read or set.
	Sysctls map[string]string
	// Rules counts the rules the rules backend holds in the kernel.
	Rules     int
	LastSync  time.Time
	LastError string
	// IPTablesMode is the iptables backend in use (nft or legacy; empty
	// until chosen), IPTablesModeReason why it was chosen.
	IPTablesMode       IPTablesMode
	IPTablesModeReason string
	// Failures are the steps of the sync that fail now, in step order;
	// FailingSince is when the oldest of them started failing (zero: none
	// fails).
	Failures     []Failure
	FailingSince time.Time
	// Warnings are conditions that keep traffic from flowing which the
	// agent does not fix (a foreign forward-hook chain with policy drop),
	// and leftovers of the other backend it could not remove.
	Warnings []string
}

// Failure is one step of the sync that fails.
type Failure struct {
	// Step is interface, addresses, sysctl, or one of the rules backend's
	// (iptables-ipv4, iptables-ipv6).
	Step  string
	Err   error
	Since time.Time
}

func (s Status) clone() Status {
	s.Sysctls = maps.Clone(s.Sysctls)
	s.Failures = append([]Failure(nil), s.Failures...)
	s.Warnings = append([]string(nil), s.Warnings...)
	return s
}

// The Dataplane's own steps; the rules backend adds its own (Rules.Steps).
const (
	stepInterface = "interface" // the VIP link exists (and is read)
	stepAddresses = "addresses" // VIP addresses on it
	stepSysctl    = "sysctl"    // forwarding switched on
)

// outcomes collects the result of each step one sync attempted and the
// errors it returns. Each step can fail on its own without keeping the
// others from running: rules still go in when a sysctl cannot be set,
// addresses still go on when one family's rules cannot be read.
type outcomes struct {
	res  map[string]error // step → nil (worked) or why it failed
	errs []error
}

func newOutcomes() *outcomes { return &outcomes{res: map[string]error{}} }

// note records a step's outcome; a step attempted twice in one sync (the
// forwarding sysctls, a family's rules read and written) fails if either
// attempt did.
func (o *outcomes) note(step string, err error) {
	if err != nil {
		o.errs = append(o.errs, err)
		o.res[step] = errors.Join(o.res[step], err)
	} else if _, seen := o.res[step]; !seen {
		o.res[step] = nil
	}
}

// noteAll records a backend's outcomes, in the order of its steps.
func (o *outcomes) noteAll(steps []string, res map[string]error) {
	for _, s := range steps {
		if err, ok := res[s]; ok {
			o.note(s, err)
		}
	}
}

// failed reports whether any of steps failed in this sync.
func (o *outcomes) failed(steps []string) bool {
	for _, s := range steps {
		if o.res[s] != nil {
			return true
		}
	}
	return false
}

func (o *outcomes) err() error { return errors.Join(o.errs...) }

// failure is a step failing since a time.
type failure struct {
	err   error
	since time.Time
}

// failing keeps, across syncs, the steps whose last attempt failed.
type failing map[string]failure

// record notes the outcome of the steps a sync attempted; steps it did not
// attempt keep their state. It returns the failing steps in the order of
// steps, and since when the oldest has failed.
func (fs failing) record(now time.Time, res map[string]error, steps []string) ([]Failure, time.Time) {
	for step, err := range res {
		if err == nil {
			delete(fs, step)
			continue
		}
		f, ok := fs[step]
		if !ok {
			f.since = now
		}
		f.err = err
		fs[step] = f
	}
	var out []Failure
	var since time.Time
	for _, step := range steps {
		f, ok := fs[step]
		if !ok {
			continue
		}
		out = append(out, Failure{Step: step, Err: f.err, Since: f.since})
		if since.IsZero() || f.since.Before(since) {
			since = f.since
		}
	}
	return out, since
}
