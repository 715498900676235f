package apv

import (
	"context"
	"log/slog"
	"time"
)

// Event types, as Kubernetes names them.
const (
	Normal  = "Normal"
	Warning = "Warning"
)

// Event reasons.
const (
	ReasonDeviceUnreachable   = "DeviceUnreachable"
	ReasonDeviceReachable     = "DeviceReachable"
	ReasonSyncFailed          = "SyncFailed"
	ReasonSynced              = "Synced"
	ReasonHAStateChanged      = "HAStateChanged"
	ReasonLinkDown            = "LinkDown"
	ReasonLinkUp              = "LinkUp"
	ReasonCertificateExpiring = "CertificateExpiring"
	ReasonCertificateExpired  = "CertificateExpired"
	ReasonCertificateRenewed  = "CertificateRenewed"
	ReasonRealDown            = "RealDown"
	ReasonRealUp              = "RealUp"
	ReasonVirtualDown         = "VirtualDown"
	ReasonVirtualUp           = "VirtualUp"
	ReasonCPUHigh             = "CPUHigh"
	ReasonCPUNormal           = "CPUNormal"
	// ReasonNormalizesDifferently: an object reads back differently from
	// how it was sent, even right after it was written; it is no longer
	// rewritten (readback.go).
	ReasonNormalizesDifferently = "NormalizesDifferently"
)

// Event is one observed state change of a device.
type Event struct {
	Device string
	// Type is Normal or Warning.
	Type   string
	Reason string
	// Object is what the finding is about (an SSL virtual host, a real or
	// virtual service, an interface, an HA unit, a configuration object);
	// empty for the device as a whole.
	Object  string
	Message string
	Time    time.Time
}

// Finding categories (Category): who acts on an event.
const (
	CategoryTLS  = "tls"  // certificates
	CategorySLB  = "slb"  // real and virtual services, configuration sync
	CategoryBase = "base" // reachability, HA, interfaces, CPU
)

// Category sorts a reason into the finding categories the event pipeline
// routes on: TLS findings to the TLS team, SLB findings to the SLB team,
// base findings (the device itself) to whoever runs it.
func Category(reason string) string {
	switch reason {
	case ReasonCertificateExpiring, ReasonCertificateExpired, ReasonCertificateRenewed:
		return CategoryTLS
	case ReasonRealDown, ReasonRealUp, ReasonVirtualDown, ReasonVirtualUp,
		ReasonSyncFailed, ReasonSynced, ReasonNormalizesDifferently:
		return CategorySLB
	}
	return CategoryBase
}

// EventSink receives one event per observed state change of a device. It
// must not block: it is called from the sync and scan loops. The
// Kubernetes side records them with an event recorder; LogEvents logs;
// package apv/cesink sends CloudEvents.
type EventSink interface {
	Event(Event)
}

// Sinks hands every event to each of its sinks in turn.
type Sinks []EventSink

// Event passes e to every sink.
func (s Sinks) Event(e Event) {
	for _, k := range s {
		k.Event(e)
	}
}

// LogEvents writes events to a slog logger.
type LogEvents struct{ Logger *slog.Logger }

// Event logs the event at info (Normal) or warn (Warning) level.
func (l LogEvents) Event(e Event) {
	lg := l.Logger
	if lg == nil {
		lg = slog.Default()
	}
	level := slog.LevelInfo
	if e.Type == Warning {
		level = slog.LevelWarn
	}
	args := []any{"device", e.Device, "type", e.Type, "reason", e.Reason, "message", e.Message}
	if e.Object != "" {
		args = append(args, "object", e.Object)
	}
	lg.Log(context.Background(), level, "apv event", args...)
}
