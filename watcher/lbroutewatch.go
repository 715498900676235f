package watcher

import (
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
)

// The LBRoute watch decodes each object straight into its typed form and
// falls back to the unstructured form for one that does not fit it, so one
// bad object is still reported on its own (toLBRoute) instead of breaking
// the watch. client-go's typed clients have no such fallback (a decode error
// ends the watch), and its dynamic client decodes into unstructured only,
// which the informer then converted by reflection: at 10,000 routes every
// agent decoded each of the leader's status writes twice, about a third of
// its CPU during a fresh install's first report (docs/benchmarks/kube.md).

// lbrouteScheme knows LBRoutes and the apiserver's own watch types
// (WatchEvent, Status).
var lbrouteScheme = runtime.NewScheme()

func init() {
	utilruntime.Must(v1alpha1.AddToScheme(lbrouteScheme))
	metav1.AddToGroupVersion(lbrouteScheme, schema.GroupVersion{Version: "v1"})
}

// typedOrUnstructured decodes into the scheme's type for the object's kind
// and, when there is none or the object does not fit it, into
// unstructured.
type typedOrUnstructured struct {
	runtime.Serializer // typed (and its encoder, for the rest client)
}

func (d typedOrUnstructured) Decode(data []byte, defaults *schema.GroupVersionKind, _ runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if obj, gvk, err := d.Serializer.Decode(data, defaults, nil); err == nil {
		return obj, gvk, nil
	}
	return unstructured.UnstructuredJSONScheme.Decode(data, defaults, nil)
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
			Serializer:    typed, // the WatchEvent envelopes
			Framer:        json.Framer,
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
