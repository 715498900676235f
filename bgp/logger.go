package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpLogger adapts GoBGP's logger to slog, and picks out of GoBGP's log
// stream the one thing its API does not expose: why a session went down
// (notifications sent or received, hold timer expiry). That becomes the
// neighbor's lastError in /status.
type gobgpLogger struct {
	l         *slog.Logger
	onPeerErr func(peer, reason string)
}

// Messages that deserve Info in the agent's log; GoBGP's other Info
// messages (peer added, policy set, ...) are Debug here.
var infoMessages = map[string]bool{
	"Peer Up": true, "Peer Down": true, "peer graceful restart": true,
	"sync finished": true, "graceful restart timer expired": true,
}

func (g *gobgpLogger) log(level slog.Level, msg string, fields log.Fields) {
	if key, ok := fields["Key"].(string); ok && fields["Topic"] == "Peer" && g.onPeerErr != nil {
		if reason := peerErrorFromLog(msg, fields); reason != "" {
			g.onPeerErr(key, reason)
		}
	}
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	keys := slices.Sorted(maps.Keys(fields))
	attrs := make([]any, 0, 2*len(keys)+2)
	attrs = append(attrs, "component", "gobgp")
	for _, k := range keys {
		attrs = append(attrs, strings.ToLower(k), fmt.Sprint(fields[k]))
	}
	g.l.Log(context.Background(), level, msg, attrs...)
}

// peerErrorFromLog turns a GoBGP peer log line into a short reason, or ""
// when the line says nothing about a failure.
func peerErrorFromLog(msg string, f log.Fields) string {
	switch msg {
	case "received notification":
		code, _ := f["Code"].(uint8)
		sub, _ := f["Subcode"].(uint8)
		s := "received notification: " + bgp.NewNotificationErrorCode(code, sub).String()
		if r, ok := f["Communicated-Reason"].(string); ok && r != "" {
			s += " (" + r + ")"
		}
		return s
	case "sent notification":
		if m, ok := f["Data"].(*bgp.BGPMessage); ok {
			if n, ok := m.Body.(*bgp.BGPNotification); ok {
				return "sent notification: " + bgp.NewNotificationErrorCode(n.ErrorCode, n.ErrorSubcode).String()
			}
		}
		return fmt.Sprintf("sent notification: %v", f["Data"])
	case "Peer Down":
		return fmt.Sprintf("session down: %v", f["Reason"])
	case "hold timer expired":
		return "hold timer expired"
	case "graceful restart timer expired":
		return "graceful restart timer expired: the peer did not come back in time"
	case "Session will be reset due to malformed BGP message", "Session will be reset due to malformed BGP update message":
		return fmt.Sprintf("malformed message: %v", f["Error"])
	}
	return ""
}

func (g *gobgpLogger) Panic(msg string, fields log.Fields) {
	g.log(slog.LevelError, msg, fields)
	panic(msg)
}

// Fatal is logged as an error; GoBGP only calls it on start-up failures the
// speaker reports as errors anyway, and the agent must not exit from inside
// a library.
func (g *gobgpLogger) Fatal(msg string, fields log.Fields) { g.log(slog.LevelError, msg, fields) }
func (g *gobgpLogger) Error(msg string, fields log.Fields) { g.log(slog.LevelError, msg, fields) }
func (g *gobgpLogger) Warn(msg string, fields log.Fields)  { g.log(slog.LevelWarn, msg, fields) }
func (g *gobgpLogger) Info(msg string, fields log.Fields) {
	if infoMessages[msg] {
		g.log(slog.LevelInfo, msg, fields)
		return
	}
	g.log(slog.LevelDebug, msg, fields)
}
func (g *gobgpLogger) Debug(msg string, fields log.Fields) { g.log(slog.LevelDebug-4, msg, fields) }
func (g *gobgpLogger) SetLevel(log.LogLevel)               {}

// GetLevel is Info: GoBGP guards its per-message debug logging with it, and
// the speaker never needs that (it would cost time on every UPDATE).
func (g *gobgpLogger) GetLevel() log.LogLevel { return log.InfoLevel }
