package watcher

import (
	"bytes"
	"context"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	kjson "sigs.k8s.io/json"
)

// The LBRoute watch decodes each object straight into its typed form and
// falls back to the unstructured form for one that does not fit it, so one
// bad object is still reported on its own (toLBRoute) instead of breaking
// the watch. client-go's typed clients have no such fallback (a decode error
// ends the watch), and its dynamic client decodes into unstructured only,
// which the informer then converted by reflection: at 10,000 routes every
// agent decoded each of the leader's status writes twice, about a third of
// its CPU during a fresh install's first report (docs/benchmarks/kube.md).
//
// Even typed, client-go's JSON serializer reads each event about seven
// times: the framer's scan, then for the WatchEvent envelope a full
// encoding/json pass only to find an apiVersion and kind it does not have
// (SimpleMetaFactory.Interpret) and a validating decode that rescans the
// object to skip it, then the same Interpret, validation and decode for
// the object. At 10,000 routes × 10 nodes every agent takes in every one of
// the leader's status writes, and this was ~70 % of a non-leader's CPU. So
// each step has a fast path for what the apiserver sends (a stream of
// compact envelopes, each an LBRoute that fits the type) which gives
// exactly what client-go's reader and serializer would
// (TestLBRouteWatchFastPathsMatchSerializer, TestObjectFramerMatchesJSONFramer),
// and anything else takes their own path as before:
//   - objectFramer (watchframe.go) frames the stream as json.Framer does,
//     with one validating scan instead of two;
//   - watchEnvelopes splits a compact {"type":"…","object":{…}} by its
//     known bytes and one light scan for the object's end;
//   - typedOrUnstructured decodes an object once, straight into LBRoute.
//
// Each event now costs half the CPU (BenchmarkLBRouteWatchDecode,
// docs/benchmarks/kube.md "Watch decoding").

// lbrouteScheme knows LBRoutes and the apiserver's own watch types
// (WatchEvent, Status).
var lbrouteScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(v1alpha1.AddToScheme(s))
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s
}()

// typedOrUnstructured decodes into the scheme's type for the object's kind
// and, when there is none or the object does not fit it, into
// unstructured.
type typedOrUnstructured struct {
	runtime.Serializer // typed (and its encoder, for the rest client)
}

func (d typedOrUnstructured) Decode(data []byte, defaults *schema.GroupVersionKind, _ runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if defaults == nil {
		if rt, ok := decodeLBRoute(data); ok {
			gvk := lbrouteGVK
			return rt, &gvk, nil
		}
	}
	if obj, gvk, err := d.Serializer.Decode(data, defaults, nil); err == nil {
		return obj, gvk, nil
	}
	return unstructured.UnstructuredJSONScheme.Decode(data, defaults, nil)
}

var (
	lbrouteGVK        = v1alpha1.GroupVersion.WithKind("LBRoute")
	lbrouteAPIVersion = v1alpha1.GroupVersion.String()
)

// decodeLBRoute is the serializer's decode of an LBRoute in one call: the
// same decoder with the same options (case-sensitive, ints preserved,
// unknown fields ignored), without first reading apiVersion and kind in a
// pass of their own. It only answers when that gives what the serializer
// gives: the object decodes, and its apiVersion and kind (which the typed
// decode reads into TypeMeta) are LBRoute's. The serializer finds them
// case-insensitively (encoding/json), the typed decode case-sensitively, so
// a top-level "Kind" or "KIND" beside "kind" could make them disagree: any
// field the type does not have (reported by the strict decode, which
// decodes exactly as the lax one) sends the object to the serializer too —
// as does a newer CRD's field, which costs that object one wasted pass.
func decodeLBRoute(data []byte) (*v1alpha1.LBRoute, bool) {
	rt := &v1alpha1.LBRoute{}
	strict, err := kjson.UnmarshalStrict(data, rt, kjson.DisallowUnknownFields)
	if err != nil || len(strict) > 0 || rt.Kind != lbrouteGVK.Kind || rt.APIVersion != lbrouteAPIVersion {
		return nil, false
	}
	return rt, true
}

// watchEnvelopes decodes the WatchEvent envelopes of the watch stream. For
// the envelope the apiserver writes — {"type":"ADDED","object":{…}}, no
// spaces, those two fields in that order — it takes the type and the
// object's bytes where they are instead of decoding the whole frame twice;
// anything else (other spacing or order, more fields, an escaped type, a
// non-object) goes to the serializer as before. The result is what the
// serializer gives: a *metav1.WatchEvent with Type and Object.Raw (a copy;
// the streaming decoder reuses the frame's buffer) set.
//
// It does not validate the frame's JSON: the stream's framer (json.Framer,
// encoding/json's scanner) already has, and the object's own decode
// validates it again. Finding the object's end in valid JSON needs only
// its strings and nesting.
type watchEnvelopes struct {
	runtime.Serializer // the typed serializer, for everything else
}

// watchEventGVK is what the serializer reports for a WatchEvent envelope,
// which carries no apiVersion or kind: the scheme's kind for the type.
var watchEventGVK = func() schema.GroupVersionKind {
	kinds, _, err := lbrouteScheme.ObjectKinds(&metav1.WatchEvent{})
	utilruntime.Must(err)
	return kinds[0]
}()

func (s watchEnvelopes) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if ev, ok := into.(*metav1.WatchEvent); ok && defaults == nil {
		if typ, obj, ok := splitWatchEvent(data); ok {
			ev.Type = typ
			ev.Object.Raw = append(ev.Object.Raw[:0], obj...)
			gvk := watchEventGVK
			return ev, &gvk, nil
		}
	}
	return s.Serializer.Decode(data, defaults, into)
}

var (
	envelopeType   = []byte(`{"type":"`)
	envelopeObject = []byte(`","object":`)
)

// splitWatchEvent returns the type and the object of a compact envelope
// whose type is plain capital letters and whose object is a JSON object,
// and false for any other frame. data must be valid JSON.
func splitWatchEvent(data []byte) (string, []byte, bool) {
	rest, ok := bytes.CutPrefix(bytes.TrimRight(data, " \t\r\n"), envelopeType)
	if !ok {
		return "", nil, false
	}
	n := 0
	for n < len(rest) && 'A' <= rest[n] && rest[n] <= 'Z' {
		n++
	}
	typ := rest[:n]
	rest, ok = bytes.CutPrefix(rest[n:], envelopeObject)
	if n == 0 || !ok || len(rest) < 3 || rest[0] != '{' {
		return "", nil, false
	}
	end := objectEnd(rest)
	if end != len(rest)-1 || rest[end] != '}' {
		return "", nil, false
	}
	return string(typ), rest[:end], true
}

// objectEnd returns the length of the JSON object (or array) at the start
// of valid JSON b, -1 when its brackets do not balance.
func objectEnd(b []byte) int {
	var s objectScanner
	return s.scan(b)
}

// lbrouteSerializer is the rest client's content negotiation for the LBRoute
// watch: JSON only (custom resources have no protobuf), typedOrUnstructured
// for the objects.
type lbrouteSerializer struct{ infos []runtime.SerializerInfo }

func newLBRouteSerializer() lbrouteSerializer {
	typed := json.NewSerializerWithOptions(json.DefaultMetaFactory, lbrouteScheme, lbrouteScheme, json.SerializerOptions{})
	return lbrouteSerializer{infos: []runtime.SerializerInfo{{
		MediaType: "application/json", MediaTypeType: "application", MediaTypeSubType: "json",
		EncodesAsText: true,
		Serializer:    typedOrUnstructured{typed},
		StreamSerializer: &runtime.StreamSerializerInfo{
			EncodesAsText: true,
			Serializer:    watchEnvelopes{typed},
			Framer:        objectFramer{},
		},
	}}}
}

func (s lbrouteSerializer) SupportedMediaTypes() []runtime.SerializerInfo { return s.infos }

func (s lbrouteSerializer) EncoderForVersion(e runtime.Encoder, gv runtime.GroupVersioner) runtime.Encoder {
	return runtime.WithVersionEncoder{Version: gv, Encoder: e, ObjectTyper: lbrouteScheme}
}

func (s lbrouteSerializer) DecoderToVersion(d runtime.Decoder, _ runtime.GroupVersioner) runtime.Decoder {
	return d
}

// lbrouteListWatch lists LBRoutes in every namespace with the dynamic client
// (a list that does not decode as a whole must still give every good
// object) and watches them through typedOrUnstructured. The store then holds
// *v1alpha1.LBRoute and, for objects that do not decode, *unstructured;
// toLBRoute turns the rest into one or the other.
func lbrouteListWatch(cfg *rest.Config, dyn dynamic.Interface) (cache.ListerWatcher, error) {
	c := rest.CopyConfig(cfg)
	c.ContentType, c.AcceptContentTypes = "application/json", "application/json"
	c.NegotiatedSerializer = newLBRouteSerializer()
	rc, err := rest.UnversionedRESTClientFor(c)
	if err != nil {
		return nil, err
	}
	gv := LBRouteResource.GroupVersion()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return dyn.Resource(LBRouteResource).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.Watch = true
			return rc.Get().AbsPath("/apis", gv.Group, gv.Version, LBRouteResource.Resource).
				VersionedParams(&o, metav1.ParameterCodec).Watch(ctx)
		},
	}, nil
}
