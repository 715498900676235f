package apv

import (
	"context"
	"log/slog"
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

// EventSink receives one event per observed state change of a device. kind
// is Normal or Warning. The Kubernetes side implements it with an event
// recorder; LogEvents logs.
type EventSink interface {
	Event(device, kind, reason, message string)
}

// LogEvents writes events to a slog logger.
type LogEvents struct{ Logger *slog.Logger }

// Event logs the event at info (Normal) or warn (Warning) level.
func (l LogEvents) Event(device, kind, reason, message string) {
	lg := l.Logger
	if lg == nil {
		lg = slog.Default()
	}
	level := slog.LevelInfo
	if kind == Warning {
		level = slog.LevelWarn
	}
	lg.Log(context.Background(), level, "apv event", "device", device, "type", kind, "reason", reason, "message", message)
}
