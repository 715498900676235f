// Package bgp runs the agent's embedded BGP speaker (GoBGP as a library):
// it peers with Calico's BIRD and upstream routers, advertises one host
// route per VIP with next hop = this node, and installs the routes it learns
// (Calico's pod blocks) into the kernel through a RouteInstaller.
//
// Everything is desired state, applied by difference: changing one peer
// resets only that session, changing one VIP sends only that VIP's update.
// The translation from desired state to GoBGP's peers and paths is pure
// (translate.go) and golden-tested.
package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/arraynetworks/edgeagent/config"
)

// Config is the speaker's own configuration (see FromConfig for the
// mapping from the agent's config file).
type Config struct {
	ASN uint32
	// RouterID must be an IPv4 address; empty means "the source address
	// towards the first peer".
	RouterID string
	// ListenPort is the BGP port to accept sessions on; -1 disables
	// listening (sessions are then only opened actively).
	ListenPort      int32
	ListenAddresses []string
	// GracefulRestart enables RFC 4724 on every peer, with RestartTime as
	// the time peers keep our routes after we disappear.
	GracefulRestart bool
	RestartTime     time.Duration
	// ImportCIDRs restricts which learned routes reach the kernel: only
	// prefixes inside one of them. Empty means none (with Import false, the
	// kernel is never touched).
	Import      bool
	ImportCIDRs []netip.Prefix
	// InitialHold is how long the speaker waits for the first Announce
	// before opening sessions anyway. Sessions wait for the first Announce
	// so that a restarted agent re-advertises its VIPs before End-of-RIB:
	// otherwise peers would flush the routes they kept for us. Default:
	// three quarters of RestartTime with graceful restart (peers keep our
	// routes that long anyway, so a slow source costs nothing), else 10 s.
	InitialHold time.Duration
	// ConnectRetry is the interval between active connection attempts.
	ConnectRetry time.Duration
}

// Peer is one desired BGP neighbor.
type Peer struct {
	Address netip.Addr
	// ASN defaults to ours (iBGP, Calico's shared AS).
	ASN      uint32
	Port     uint16
	Password string
	HoldTime time.Duration
	// Keepalive defaults to HoldTime/3.
	Keepalive    time.Duration
	Passive      bool
	LocalAddress netip.Addr
	// Source says where the peer came from: "config" or "node/<name>".
	Source string
}

// Defaults used when a field is zero and the configuration has none of its
// own (the configuration's defaults are package config's: the ASN, port,
// hold and restart times).
const (
	DefaultInitialHold  = 10 * time.Second
	DefaultConnectRetry = 5 * time.Second
)

func (c *Config) applyDefaults() {
	if c.ASN == 0 {
		c.ASN = config.DefaultASN
	}
	if c.ListenPort == 0 {
		c.ListenPort = config.DefaultBGPPort
	}
	if c.RestartTime == 0 {
		c.RestartTime = config.DefaultRestartTime
	}
	if c.InitialHold == 0 {
		c.InitialHold = DefaultInitialHold
		if c.GracefulRestart {
			c.InitialHold = c.RestartTime * 3 / 4
		}
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
}

// withDefaults returns p with its zero fields filled in from the global ASN.
func (p Peer) withDefaults(asn uint32) Peer {
	if p.ASN == 0 {
		p.ASN = asn
	}
	if p.Port == 0 {
		p.Port = config.DefaultBGPPort
	}
	if p.HoldTime == 0 {
		p.HoldTime = config.DefaultPeerHoldTime
	}
	if p.Keepalive == 0 {
		p.Keepalive = p.HoldTime / 3
	}
	if p.Source == "" {
		p.Source = "config"
	}
	return p
}

// FromConfig maps the agent configuration (after ApplyDefaults and
// Validate) to the speaker's Config and its configured peers. Password files
// are read here, relative to the config file; a problem names its field.
func FromConfig(c *config.Config) (Config, []Peer, error) {
	b := c.BGP
	out := Config{
		ASN:             b.ASN,
		RouterID:        b.RouterID,
		ListenPort:      b.ListenPort,
		ListenAddresses: b.ListenAddresses,
		GracefulRestart: b.GracefulRestart.Enabled == nil || *b.GracefulRestart.Enabled,
		RestartTime:     b.GracefulRestart.RestartTime.Duration,
		Import:          b.ImportRoutes == nil || *b.ImportRoutes,
	}
	var errs []error
	for i, s := range b.ImportCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("bgp.importCIDRs[%d]: %q is not a CIDR", i, s))
			continue
		}
		out.ImportCIDRs = append(out.ImportCIDRs, p.Masked())
	}
	var peers []Peer
	for i, p := range b.Peers {
		f := fmt.Sprintf("bgp.peers[%d]", i)
		a, err := netip.ParseAddr(p.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.address: %q is not an IP address", f, p.Address))
			continue
		}
		peer := Peer{
			Address:   a.Unmap(),
			ASN:       p.ASN,
			Port:      p.Port,
			Password:  p.Password,
			HoldTime:  p.HoldTime.Duration,
			Keepalive: p.KeepaliveTime.Duration,
			Passive:   p.Passive,
			Source:    "config",
		}
		if p.PasswordFile != "" {
			data, err := os.ReadFile(c.Resolve(p.PasswordFile))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.passwordFile: %w", f, err))
				continue
			}
			peer.Password = strings.TrimRight(string(data), "\r\n")
		}
		if p.LocalAddress != "" {
			la, err := netip.ParseAddr(p.LocalAddress)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.localAddress: %q is not an IP address", f, p.LocalAddress))
				continue
			}
			peer.LocalAddress = la.Unmap()
		}
		peers = append(peers, peer)
	}
	return out, peers, errors.Join(errs...)
}
