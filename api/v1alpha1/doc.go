// Package v1alpha1 holds the LBRoute API (group apv.arraynetworks.com).
//
// Deepcopy functions and the CRD manifest are generated from these types by
// controller-gen (`make generate`); the markers below are its input.
//
// +kubebuilder:object:generate=true
// +groupName=apv.arraynetworks.com
package v1alpha1
