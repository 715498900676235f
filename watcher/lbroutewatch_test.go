package watcher

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	restclientwatch "k8s.io/client-go/rest/watch"
)

// TestLBRouteWatchDecoding feeds a watch stream through the serializer the
// LBRoute watch negotiates, as the rest client does: a good route arrives
// typed, one that does not fit the type arrives unstructured (and toLBRoute
// then marks it with its decode error, without stopping the stream), a
// bookmark keeps its resourceVersion and annotation, an error is a Status.
func TestLBRouteWatchDecoding(t *testing.T) {
	stream := `{"type":"ADDED","object":{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"good","namespace":"a","resourceVersion":"5","managedFields":[{"manager":"kubectl"}],"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},"spec":{"vsIP":"10.200.0.1","ports":[{"port":80}],"realServers":[{"ip":"10.244.1.10"}]}}}
{"type":"MODIFIED","object":{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"bad","namespace":"a","resourceVersion":"6"},"spec":{"vsIP":"10.200.0.2","ports":"eighty"}}}
{"type":"ADDED","object":{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"after","namespace":"a","resourceVersion":"7"},"spec":{"vsIP":"10.200.0.3","ports":[{"port":443}],"realServers":[{"ip":"10.244.1.11"}]}}}
{"type":"BOOKMARK","object":{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"resourceVersion":"8","annotations":{"k8s.io/initial-events-end":"true"}}}}
{"type":"ERROR","object":{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old resource version"}}
`
	info := newLBRouteSerializer().SupportedMediaTypes()[0]
	frames := info.StreamSerializer.Framer.NewFrameReader(io.NopCloser(bytes.NewBufferString(stream)))
	dec := restclientwatch.NewDecoder(streaming.NewDecoder(frames, info.StreamSerializer.Serializer), info.Serializer)

	var got []watch.Event
	for {
		typ, obj, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("event %d: %v", len(got), err)
		}
		got = append(got, watch.Event{Type: typ, Object: obj})
	}
	if len(got) != 5 {
		t.Fatalf("%d events, want 5", len(got))
	}
	good, ok := got[0].Object.(*v1alpha1.LBRoute)
	if !ok || good.Name != "good" || good.Spec.VSIP != "10.200.0.1" || len(good.Spec.Ports) != 1 || good.Spec.Ports[0].Port != 80 {
		t.Fatalf("good route decoded as %T %+v", got[0].Object, got[0].Object)
	}
	if obj, _ := toLBRoute(good); obj.(*v1alpha1.LBRoute).ManagedFields != nil || len(good.Annotations) != 0 {
		t.Errorf("typed route not trimmed: managedFields %v, annotations %v", good.ManagedFields, good.Annotations)
	}
	bad, ok := got[1].Object.(*unstructured.Unstructured)
	if !ok || bad.GetName() != "bad" {
		t.Fatalf("route that does not fit the type decoded as %T", got[1].Object)
	}
	if obj, _ := toLBRoute(bad); obj.(*unstructured.Unstructured).GetAnnotations()[decodeErrorAnnotation] == "" {
		t.Error("route that does not decode carries no decode error")
	}
	if rt, ok := got[2].Object.(*v1alpha1.LBRoute); !ok || rt.Name != "after" {
		t.Fatalf("the route after a bad one decoded as %T", got[2].Object)
	}
	bm, ok := got[3].Object.(*v1alpha1.LBRoute)
	if got[3].Type != watch.Bookmark || !ok || bm.ResourceVersion != "8" || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("bookmark: %s %T %+v", got[3].Type, got[3].Object, got[3].Object)
	}
	if st, ok := got[4].Object.(*metav1.Status); got[4].Type != watch.Error || !ok || st.Code != 410 {
		t.Fatalf("error event: %s %T", got[4].Type, got[4].Object)
	}
}

// serializerOnly is the LBRoute watch's decoding without the fast paths,
// as it was before them: client-go's JSON serializer for the envelopes and
// for the objects, unstructured for an object the typed decode refuses.
type serializerOnly struct{ runtime.Serializer }

func (d serializerOnly) Decode(data []byte, defaults *schema.GroupVersionKind, _ runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if obj, gvk, err := d.Serializer.Decode(data, defaults, nil); err == nil {
		return obj, gvk, nil
	}
	return unstructured.UnstructuredJSONScheme.Decode(data, defaults, nil)
}

type decoded struct {
	Type watch.EventType
	Obj  runtime.Object
	Err  string
}

// decodeAll decodes stream with the rest client's watch decoder, keeping
// going past an event that does not decode.
func decodeAll(t *testing.T, stream string, envelopes, objects runtime.Decoder) []decoded {
	t.Helper()
	frames := json.Framer.NewFrameReader(io.NopCloser(bytes.NewBufferString(stream)))
	dec := restclientwatch.NewDecoder(streaming.NewDecoder(frames, envelopes), objects)
	var got []decoded
	for {
		typ, obj, err := dec.Decode()
		if err == io.EOF {
			return got
		}
		d := decoded{Type: typ, Obj: obj}
		if err != nil {
			d.Err = err.Error()
		}
		got = append(got, d)
	}
}

// TestLBRouteWatchFastPathsMatchSerializer decodes events of every shape
// through the LBRoute watch's serializer and through client-go's serializer
// alone, and wants the same events, objects (reflect.DeepEqual) and errors;
// and it checks that the shapes the apiserver sends do take the fast paths,
// so the comparison is not between two slow paths.
func TestLBRouteWatchFastPathsMatchSerializer(t *testing.T) {
	status, err := os.ReadFile("testdata/lbroute-status.json")
	if err != nil {
		t.Fatal(err)
	}
	route := string(bytes.TrimSpace(status))
	const gv = `"apiVersion":"apv.arraynetworks.com/v1alpha1"`
	events := []struct {
		name  string
		event string
		fast  bool // both fast paths apply
	}{
		{"status write", `{"type":"MODIFIED","object":` + route + `}`, true},
		{"added, trailing spaces", `{"type":"ADDED","object":` + route + "}  \t", true},
		{"deleted", `{"type":"DELETED","object":` + route + `}`, true},
		{"bookmark", `{"type":"BOOKMARK","object":{` + gv + `,"kind":"LBRoute","metadata":{"resourceVersion":"8","annotations":{"k8s.io/initial-events-end":"true"}}}}`, true},
		{"braces and quotes in strings", `{"type":"ADDED","object":{` + gv + `,"kind":"LBRoute","metadata":{"name":"q","annotations":{"a":"}]\"{\\","b":"\\\\"}},"spec":{"vsIP":"10.200.0.9","ports":[{"port":80}]}}}`, true},
		{"no status", `{"type":"ADDED","object":{` + gv + `,"kind":"LBRoute","metadata":{"name":"plain","namespace":"a"},"spec":{"vsIP":"10.200.0.1","ports":[{"port":80,"targetPort":"http"}],"realServers":[{"ip":"10.244.1.10","port":8080}]}}}`, true},
		{"error", `{"type":"ERROR","object":{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old resource version"}}`, false},
		{"does not fit the type", `{"type":"MODIFIED","object":{` + gv + `,"kind":"LBRoute","metadata":{"name":"bad","namespace":"a"},"spec":{"vsIP":"10.200.0.2","ports":"eighty"}}}`, false},
		{"unknown field", `{"type":"MODIFIED","object":{` + gv + `,"kind":"LBRoute","metadata":{"name":"newer"},"spec":{"vsIP":"10.200.0.2","ports":[{"port":80}],"future":1}}}`, false},
		{"kind in other cases", `{"type":"MODIFIED","object":{` + gv + `,"kind":"LBRoute","KIND":"Other","metadata":{"name":"k"},"spec":{"vsIP":"10.200.0.2","ports":[{"port":80}]}}}`, false},
		{"kind only in other case", `{"type":"MODIFIED","object":{` + gv + `,"Kind":"LBRoute","metadata":{"name":"k2"},"spec":{"vsIP":"10.200.0.2","ports":[{"port":80}]}}}`, false},
		{"other version", `{"type":"ADDED","object":{"apiVersion":"apv.arraynetworks.com/v1alpha2","kind":"LBRoute","metadata":{"name":"v2"}}}`, false},
		{"no kind", `{"type":"ADDED","object":{` + gv + `,"metadata":{"name":"nokind"}}}`, false},
		{"spaced envelope", `{ "type": "ADDED", "object": ` + route + ` }`, false},
		{"fields swapped", `{"object":` + route + `,"type":"ADDED"}`, false},
		{"field after the object", `{"type":"ADDED","object":{` + gv + `,"kind":"LBRoute","metadata":{"name":"x"},"spec":{"vsIP":"10.200.0.1","ports":[{"port":80}]}},"extra":{"a":1}}`, false},
		{"escaped type", `{"type":"ADD\u0045D","object":` + route + `}`, false},
		{"unknown type (the watch decoder refuses it)", `{"type":"SOMETHING","object":` + route + `}`, true},
		{"null object", `{"type":"ADDED","object":null}`, false},
		{"array object", `{"type":"ADDED","object":[1]}`, false},
	}
	var stream strings.Builder
	for _, e := range events {
		stream.WriteString(e.event + "\n")
	}

	info := newLBRouteSerializer().SupportedMediaTypes()[0]
	typed := json.NewSerializerWithOptions(json.DefaultMetaFactory, lbrouteScheme, lbrouteScheme, json.SerializerOptions{})
	got := decodeAll(t, stream.String(), info.StreamSerializer.Serializer, info.Serializer)
	want := decodeAll(t, stream.String(), typed, serializerOnly{typed})
	if len(got) != len(events) || len(want) != len(events) {
		t.Fatalf("decoded %d and %d events, want %d", len(got), len(want), len(events))
	}
	for i, e := range events {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: fast paths gave\n%#v\nthe serializer\n%#v", e.name, got[i], want[i])
		}
	}
	if rt, ok := got[0].Obj.(*v1alpha1.LBRoute); !ok || len(rt.Status.Conditions) != 4 || rt.ManagedFields == nil {
		t.Errorf("status write decoded as %T %+v", got[0].Obj, got[0].Obj)
	}

	for _, e := range events {
		typ, obj, envFast := splitWatchEvent([]byte(e.event))
		objFast := false
		if envFast {
			_, objFast = decodeLBRoute(obj)
		}
		if envFast && objFast != e.fast || !envFast && e.fast {
			t.Errorf("%s: envelope fast path %v (type %q), object fast path %v; want both %v", e.name, envFast, typ, objFast, e.fast)
		}
	}
}

// TestLBRouteWatchEnvelopeDecode checks the envelope's fast path against
// the serializer's decode of the same frame, directly (what the streaming
// decoder calls), including the gvk it reports and a reused WatchEvent.
func TestLBRouteWatchEnvelopeDecode(t *testing.T) {
	frame := []byte(`{"type":"ADDED","object":{"kind":"LBRoute","metadata":{"name":"a"}}}`)
	typed := json.NewSerializerWithOptions(json.DefaultMetaFactory, lbrouteScheme, lbrouteScheme, json.SerializerOptions{})
	var want metav1.WatchEvent
	wantObj, wantGVK, err := typed.Decode(frame, nil, &want)
	if err != nil {
		t.Fatal(err)
	}
	got := metav1.WatchEvent{Type: "DELETED", Object: runtime.RawExtension{Raw: []byte(`{"left":"over","from":"before"}`)}}
	gotObj, gotGVK, err := watchEnvelopes{typed}.Decode(frame, nil, &got)
	if err != nil {
		t.Fatal(err)
	}
	if gotObj != &got || wantObj != &want {
		t.Fatalf("decoded into %p / %p, want the WatchEvent given", gotObj, wantObj)
	}
	if !reflect.DeepEqual(got, want) || *gotGVK != *wantGVK {
		t.Errorf("fast path: %#v %v; serializer: %#v %v", got, gotGVK, want, wantGVK)
	}
	frame[len(frame)-3] = 'X' // the streaming decoder reuses its buffer
	if string(got.Object.Raw) != `{"kind":"LBRoute","metadata":{"name":"a"}}` {
		t.Errorf("object %s shares the frame's buffer", got.Object.Raw)
	}
}
