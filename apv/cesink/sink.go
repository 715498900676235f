// Package cesink sends the APV driver's events (apv.Event) to a
// CloudEvents sink, a Knative broker for instance, over the CloudEvents
// HTTP binding of the CloudEvents Go SDK.
//
// Each event becomes one CloudEvent whose type names its finding category
// (TypeTLS, TypeSLB, TypeBase), so a Knative Trigger filters TLS findings to
// the TLS team and SLB findings to the SLB team on type alone; the source is
// the device (/apv/<device>), the subject the object the finding is about,
// and the extensions device, reason and severity carry the rest for finer
// filters. The data is JSON (Data).
//
// Delivery never slows the caller: Event only queues (a bounded channel)
// and a full queue drops the event and counts it. Run delivers in order,
// retrying a failed delivery with backoff; failures, retries, drops and
// deliveries are counted (edgeagent_apv_cloudevents_*) and reported in
// Status.
package cesink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/config"
)

// CloudEvent types, one per finding category (apv.Category).
const (
	TypeTLS  = "com.arraynetworks.edgeagent.apv.tls"
	TypeSLB  = "com.arraynetworks.edgeagent.apv.slb"
	TypeBase = "com.arraynetworks.edgeagent.apv.base"
)

// TypeFor returns the CloudEvent type of an event reason.
func TypeFor(reason string) string {
	switch apv.Category(reason) {
	case apv.CategoryTLS:
		return TypeTLS
	case apv.CategorySLB:
		return TypeSLB
	}
	return TypeBase
}

// SourceFor is the CloudEvent source of a device's events.
func SourceFor(device string) string { return "/apv/" + url.PathEscape(device) }

// Data is the JSON payload of every event.
type Data struct {
	Device   string    `json:"device"`
	Node     string    `json:"node,omitempty"`
	Severity string    `json:"severity"` // Normal or Warning
	Reason   string    `json:"reason"`
	Object   string    `json:"object,omitempty"`
	Message  string    `json:"message"`
	Time     time.Time `json:"time"`
}

// Options configures a Sink.
type Options struct {
	// URL is the sink (http:// or https://).
	URL string
	// QueueSize bounds the events waiting for delivery (default 1000).
	QueueSize int
	// Timeout bounds one delivery attempt (default 5s).
	Timeout time.Duration
	// Retries is how often a failed delivery is tried again (default 3;
	// negative: never), after 1s, 2s, 4s ... (at most 30s).
	Retries int
	// Node is this agent's node, put in the data (several agents may
	// report the same device).
	Node string
	// HTTPClient sends the events (default: one with the timeout above).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// retryBase is the first backoff (tests shorten it).
	retryBase time.Duration
}

// Sink queues events and delivers them as CloudEvents.
type Sink struct {
	o      Options
	client cloudevents.Client
	queue  chan apv.Event
	log    *slog.Logger

	results *prometheus.CounterVec
	retries prometheus.Counter
	queued  prometheus.Gauge

	mu                         sync.Mutex
	delivered, failed, dropped uint64
	lastError                  string
}

// New builds a sink; Run delivers.
func New(o Options) (*Sink, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("apv.events.sinkURL %q: must be an http:// or https:// URL", o.URL)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = config.DefaultAPVEventQueueSize
	}
	if o.Timeout <= 0 {
		o.Timeout = config.DefaultAPVEventTimeout
	}
	o.Retries = cmp.Or(o.Retries, config.DefaultAPVEventRetries)
	if o.retryBase <= 0 {
		o.retryBase = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: o.Timeout}
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithTarget(o.URL), cehttp.WithClient(*hc))
	if err != nil {
		return nil, fmt.Errorf("cloudevents client: %w", err)
	}
	s := &Sink{o: o, client: c, queue: make(chan apv.Event, o.QueueSize), log: o.Logger.With("component", "apv-cloudevents"),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "edgeagent", Subsystem: "apv", Name: "cloudevents_total",
			Help: "APV events by outcome at the CloudEvents sink: delivered, failed (every attempt failed), dropped (queue full)."}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "edgeagent", Subsystem: "apv", Name: "cloudevents_retries_total",
			Help: "Failed CloudEvent delivery attempts that were tried again."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "edgeagent", Subsystem: "apv", Name: "cloudevents_queue_length",
			Help: "APV events waiting for delivery to the CloudEvents sink."}),
	}
	for _, r := range []string{"delivered", "failed", "dropped"} {
		s.results.WithLabelValues(r)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.results, s.retries, s.queued)
	}
	return s, nil
}

// Event queues e for delivery; it never blocks. When the queue is full the
// event is dropped and counted.
func (s *Sink) Event(e apv.Event) {
	select {
	case s.queue <- e:
		s.queued.Set(float64(len(s.queue)))
	default:
		s.results.WithLabelValues("dropped").Inc()
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
	}
}

// Run delivers queued events until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.queue:
			s.queued.Set(float64(len(s.queue)))
			s.deliver(ctx, e)
		}
	}
}

// Status is the sink's state: the events queued, delivered, failed (after
// retries) and dropped (queue full), and the last delivery error. It has the
// fields of apv.EventsStatus, to which the agent converts it.
type Status struct {
	SinkURL   string
	Queued    int
	Delivered uint64
	Failed    uint64
	Dropped   uint64
	LastError string
}

// Status reports the sink's counters.
func (s *Sink) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{SinkURL: s.o.URL, Queued: len(s.queue), Delivered: s.delivered, Failed: s.failed, Dropped: s.dropped, LastError: s.lastError}
}

// CloudEvent renders e for the node.
func CloudEvent(e apv.Event, node string) (cloudevents.Event, error) {
	ce := cloudevents.NewEvent()
	ce.SetID(uuid.NewString())
	ce.SetType(TypeFor(e.Reason))
	ce.SetSource(SourceFor(e.Device))
	if e.Object != "" {
		ce.SetSubject(e.Object)
	}
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	ce.SetTime(t)
	ce.SetExtension("device", e.Device)
	ce.SetExtension("reason", e.Reason)
	ce.SetExtension("severity", e.Type)
	err := ce.SetData(cloudevents.ApplicationJSON, Data{Device: e.Device, Node: node, Severity: e.Type, Reason: e.Reason,
		Object: e.Object, Message: e.Message, Time: t.UTC()})
	return ce, err
}

func (s *Sink) deliver(ctx context.Context, e apv.Event) {
	ce, err := CloudEvent(e, s.o.Node)
	if err != nil {
		s.fail(fmt.Errorf("encode event: %w", err))
		return
	}
	wait := s.o.retryBase
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.o.Timeout)
		res := s.client.Send(actx, ce)
		cancel()
		if cloudevents.IsACK(res) {
			s.results.WithLabelValues("delivered").Inc()
			s.mu.Lock()
			s.delivered++
			s.lastError = ""
			s.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= s.o.Retries {
			s.fail(fmt.Errorf("deliver %s (%s, %s): %w", ce.Type(), e.Device, e.Reason, resultError(res)))
			return
		}
		s.retries.Inc()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (s *Sink) fail(err error) {
	s.results.WithLabelValues("failed").Inc()
	s.mu.Lock()
	s.failed++
	s.lastError = err.Error()
	s.mu.Unlock()
	s.log.Warn("apv event not delivered", "err", err)
}

func resultError(res error) error {
	if res == nil {
		return errors.New("no acknowledgement")
	}
	return res
}
