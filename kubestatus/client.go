package kubestatus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// client is a typed REST client for the apv.arraynetworks.com group. The
// project has no generated clientset; the few calls status writing needs
// are here, and informers built on it decode straight into the API types
// (no unstructured step, which costs memory with thousands of objects).
type client struct {
	rc *rest.RESTClient
}

const (
	lbroutes      = "lbroutes"
	lbroutereport = "lbroutereports"
)

var scheme = runtime.NewScheme()

func init() {
	// client-go's scheme brings meta/v1 (Status, WatchEvent, options) and
	// the core types Events are recorded against.
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
}

func newClient(cfg *rest.Config) (*client, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &v1alpha1.GroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c.ContentType = runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("status client: %w", err)
	}
	return &client{rc: rc}, nil
}

// applyReport server-side applies one report object (which the node owns
// whole) as manager.
func (c *client) applyReport(ctx context.Context, name string, body any, manager string) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.rc.Patch(types.ApplyPatchType).Resource(lbroutereport).Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: manager, Force: ptr.To(true)}, metav1.ParameterCodec).
		Body(data).Do(ctx).Error()
}

func (c *client) deleteReport(ctx context.Context, name string, uid types.UID) error {
	opts := metav1.DeleteOptions{}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	return c.rc.Delete().Resource(lbroutereport).Name(name).Body(&opts).Do(ctx).Error()
}

// putRouteStatus replaces an LBRoute's status (the status subresource
// ignores the rest of the object) and returns the object written.
func (c *client) putRouteStatus(ctx context.Context, rt *v1alpha1.LBRoute, manager string) (*v1alpha1.LBRoute, error) {
	data, err := json.Marshal(rt)
	if err != nil {
		return nil, err
	}
	out := &v1alpha1.LBRoute{}
	err = c.rc.Put().Namespace(rt.Namespace).Resource(lbroutes).Name(rt.Name).SubResource("status").
		VersionedParams(&metav1.UpdateOptions{FieldManager: manager}, metav1.ParameterCodec).
		Body(data).Do(ctx).Into(out)
	return out, err
}

// reportListWatch lists and watches reports, all of them or those matching
// a label selector.
func (c *client) reportListWatch(selector string) cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(c.rc, lbroutereport, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = selector
		o.FieldSelector = fields.Everything().String()
	})
}
