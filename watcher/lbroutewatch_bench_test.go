package watcher

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	restclientwatch "k8s.io/client-go/rest/watch"
)

// statusEvents is n MODIFIED events of testdata/lbroute-status.json (a
// route after the leader's status write, managedFields and all, as the
// apiserver sends it), one JSON object per line, each with its own
// resourceVersion.
func statusEvents(tb testing.TB, n int) []byte {
	tb.Helper()
	obj, err := os.ReadFile("testdata/lbroute-status.json")
	if err != nil {
		tb.Fatal(err)
	}
	obj = bytes.TrimSpace(obj)
	rv := []byte(`"resourceVersion":"184467"`)
	if !bytes.Contains(obj, rv) {
		tb.Fatal("testdata/lbroute-status.json: no resourceVersion 184467")
	}
	var b bytes.Buffer
	for i := range n {
		b.WriteString(`{"type":"MODIFIED","object":`)
		b.Write(bytes.Replace(obj, rv, []byte(`"resourceVersion":"`+strconv.Itoa(200000+i)+`"`), 1))
		b.WriteString("}\n")
	}
	return b.Bytes()
}

// loopReader reads buf over and over, so a benchmark can decode any number
// of events from a stream built once.
type loopReader struct {
	buf []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.buf[r.off:])
	r.off = (r.off + n) % len(r.buf)
	return n, nil
}

func (r *loopReader) Close() error { return nil }

// BenchmarkLBRouteWatchDecode is the cost of one watch event of a route's
// status write in every agent's informer: the rest client's watch decoder
// (JSON framer, WatchEvent envelope, object) built from lbrouteSerializer,
// as rest.Request.Watch builds it. One op is one event.
func BenchmarkLBRouteWatchDecode(b *testing.B) {
	const events = 1000
	stream := statusEvents(b, events)
	info := newLBRouteSerializer().SupportedMediaTypes()[0]
	frames := info.StreamSerializer.Framer.NewFrameReader(&loopReader{buf: stream})
	dec := restclientwatch.NewDecoder(streaming.NewDecoder(frames, info.StreamSerializer.Serializer), info.Serializer)
	b.SetBytes(int64(len(stream) / events))
	b.ReportAllocs()
	for b.Loop() {
		_, obj, err := dec.Decode()
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := obj.(*v1alpha1.LBRoute); !ok {
			b.Fatalf("decoded %T, want *v1alpha1.LBRoute", obj)
		}
	}
}
