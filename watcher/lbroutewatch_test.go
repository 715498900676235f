package watcher

import (
	"bytes"
	"io"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
