package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "apv.arraynetworks.com", Version: "v1alpha1"}

// SchemeGroupVersion is GroupVersion under the name generated code
// (api/applyconfiguration) expects.
var SchemeGroupVersion = GroupVersion

var (
	// SchemeBuilder registers the package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &LBRoute{}, &LBRouteList{}, &EdgeNodeStatus{}, &EdgeNodeStatusList{},
		&LBRouteReport{}, &LBRouteReportList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Resource returns a GroupResource for a resource name of this group.
func Resource(resource string) schema.GroupResource {
	return GroupVersion.WithResource(resource).GroupResource()
}
