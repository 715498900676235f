package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/apv/cesink"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// buildAPV constructs the APV driver when apv.devices is configured (nil
// otherwise), and with apv.events.sinkURL its CloudEvents sink, whose
// delivery loop it returns. Credential and CA file paths are resolved
// against the config file's directory. o carries what the mode adds
// (cluster mode: MayWrite from the Lease, Kubernetes Events); nil Events
// logs them.
func buildAPV(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, o apv.Options) (*apv.Appliance, []func(context.Context) error, error) {
	if len(cfg.APV.Devices) == 0 {
		return nil, nil, nil
	}
	c := cfg.APV
	c.Devices = append([]config.APVDevice(nil), cfg.APV.Devices...)
	for i := range c.Devices {
		d := &c.Devices[i]
		d.UsernameFile, d.PasswordFile, d.CAFile = cfg.Resolve(d.UsernameFile), cfg.Resolve(d.PasswordFile), cfg.Resolve(d.CAFile)
		d.ScanUsernameFile, d.ScanPasswordFile = cfg.Resolve(d.ScanUsernameFile), cfg.Resolve(d.ScanPasswordFile)
	}
	o.Logger, o.Registerer = log, reg
	var loops []func(context.Context) error
	if ev := c.Events; ev.SinkURL != "" {
		sink, err := cesink.New(cesink.Options{URL: ev.SinkURL, QueueSize: ev.QueueSize, Timeout: ev.Timeout.Duration,
			Retries: ev.Retries, Node: cfg.NodeName, Logger: log, Registerer: reg})
		if err != nil {
			return nil, nil, err
		}
		base := o.Events
		if base == nil {
			base = apv.LogEvents{Logger: log.With("component", "apv")}
		}
		o.Events = apv.Sinks{base, sink}
		o.EventsStatus = func() apv.EventsStatus { return apv.EventsStatus(sink.Status()) }
		loops = append(loops, sink.Run)
	}
	a, err := apv.New(c, o)
	if err != nil {
		return nil, nil, err
	}
	return a, append(loops, a.Run), nil
}

// DeviceAnnotation names the APV device on the Kubernetes Events the agent
// records for it.
const DeviceAnnotation = "apv.arraynetworks.com/device"

// recorderEvents is the cluster-mode apv.EventSink: each device state
// change is logged and recorded as a Kubernetes Event on this agent's Node
// (every agent scans the devices, so each reports what it sees; `kubectl
// describe node` lists them). The recorder aggregates repeats and
// rate-limits per node as usual.
type recorderEvents struct {
	rec  record.EventRecorder
	node *corev1.ObjectReference
	log  apv.LogEvents
}

// kubeEvents returns the EventSink recording on node's Node object. The UID
// is the node name, as the kubelet sets it for its own Node events and
// kubectl describe node looks them up.
func kubeEvents(rec record.EventRecorder, node string, log *slog.Logger) apv.EventSink {
	return &recorderEvents{
		rec:  rec,
		node: &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)},
		log:  apv.LogEvents{Logger: log},
	}
}

// nodeEvents records events of the agent's own (the dataplane's) on its
// Node, like the APV device events.
func nodeEvents(rec record.EventRecorder, node string) func(eventType, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)}
	return func(eventType, reason, message string) { rec.Eventf(ref, eventType, reason, "%s", message) }
}

// Event logs the event and records it on the Node.
func (e *recorderEvents) Event(ev apv.Event) {
	e.log.Event(ev)
	e.rec.AnnotatedEventf(e.node, map[string]string{DeviceAnnotation: ev.Device}, ev.Type, ev.Reason, "%s", ev.Message)
}

// apvStatus is the devices' part of /status: the apv package's types, which
// mirror the document's field for field.
func apvStatus(devs []apv.DeviceStatus) []status.APVDevice {
	out := make([]status.APVDevice, len(devs))
	for i, d := range devs {
		out[i] = status.APVDevice(d)
	}
	return out
}

// apvDegraded lists the devices that are failing or hold objects the agent
// stopped rewriting, and a failing event sink, for /status degraded.
func apvDegraded(devs []status.APVDevice, ev *status.APVEvents) []string {
	var out []string
	for _, d := range devs {
		if d.LastError != "" {
			out = append(out, fmt.Sprintf("apv %s: %s", d.Name, d.LastError))
		}
		if n := len(d.NormalizesDifferently); n > 0 {
			out = append(out, fmt.Sprintf("apv %s: %d object(s) read back differently from how they were sent and are no longer rewritten (apv[].normalizesDifferently)", d.Name, n))
		}
	}
	if ev != nil && ev.LastError != "" {
		out = append(out, fmt.Sprintf("apv events sink %s: %s", ev.SinkURL, ev.LastError))
	}
	return out
}

var _ Appliance = (*apv.Appliance)(nil)
