package kubestatus

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Slicing a node's report: a route goes to slice fnv32a("ns/name") mod the
// slice count, which is a power of two chosen so that a slice holds at most
// sliceTarget routes (and is only lowered again once the routes fall to a
// quarter of that, so a count hovering at a boundary does not reslice
// every time). A route change rewrites one slice of a few hundred routes
// (tens of kB), a first report of 10,000 routes is 32 writes per node.
const (
	sliceTarget = 500
	// maxSlices bounds the objects per node (and so the routes: 1M).
	maxSlices = 2048
)

// NodeLabel carries the node's name on its reports (or "h-" and a hash
// when the name is not a valid label value), for a label selector.
const NodeLabel = "apv.arraynetworks.com/node"

// SliceOf is the slice of route key ("namespace/name") among n slices.
func SliceOf(key string, n int32) int32 {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32() % uint32(n))
}

// SliceCount is the number of slices for routes routes, given the count in
// use now (0: none yet).
func SliceCount(routes int, current int32) int32 {
	if current > 0 && routes <= sliceTarget*int(current) && (current == 1 || routes*4 >= sliceTarget*int(current)) {
		return current
	}
	n := int32(1)
	for int(n)*sliceTarget < routes && n < maxSlices {
		n *= 2
	}
	return n
}

// ReportName is the name of slice i of node's report.
func ReportName(node string, i int32) string {
	suffix := fmt.Sprintf("-%d", i)
	if len(node)+len(suffix) > validation.DNS1123SubdomainMaxLength {
		node = node[:validation.DNS1123SubdomainMaxLength-len(suffix)]
	}
	return node + suffix
}

// NodeLabelValue is the value of NodeLabel for node.
func NodeLabelValue(node string) string {
	if len(validation.IsValidLabelValue(node)) == 0 {
		return node
	}
	sum := sha256.Sum256([]byte(node))
	return "h-" + hex.EncodeToString(sum[:15])
}

// routeKey is "namespace/name".
func routeKey(ns, name string) string { return ns + "/" + name }

func compareRoutes(a, b v1alpha1.ReportedRoute) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// Slice splits a node's routes into n slices, each sorted by namespace and
// name.
func Slice(routes []v1alpha1.ReportedRoute, n int32) [][]v1alpha1.ReportedRoute {
	out := make([][]v1alpha1.ReportedRoute, n)
	for _, r := range routes {
		i := SliceOf(routeKey(r.Namespace, r.Name), n)
		out[i] = append(out[i], r)
	}
	for _, s := range out {
		slices.SortFunc(s, compareRoutes)
	}
	return out
}

// Find looks a route up in a slice sorted by namespace and name.
func Find(routes []v1alpha1.ReportedRoute, ns, name string) (v1alpha1.ReportedRoute, bool) {
	i, ok := slices.BinarySearchFunc(routes, v1alpha1.ReportedRoute{Namespace: ns, Name: name}, compareRoutes)
	if !ok {
		return v1alpha1.ReportedRoute{}, false
	}
	return routes[i], true
}

// Serves reports whether a node's entry means the node serves the route:
// programmed with a healthy real and, on a node that runs BGP, advertised.
func Serves(r v1alpha1.ReportedRoute, advertises bool) bool {
	return r.Programmed && r.HealthyReals > 0 && (r.Advertised || !advertises)
}

// failing reports whether a node's entry is worth listing in the route's
// status: anything short of fully serving with every real healthy.
func failing(r v1alpha1.ReportedRoute, advertises bool) bool {
	return !Serves(r, advertises) || r.HealthyReals < r.Reals || r.Message != ""
}

// Summarize counts a slice's routes.
func Summarize(routes []v1alpha1.ReportedRoute, advertises bool) v1alpha1.LBRouteReportSummary {
	s := v1alpha1.LBRouteReportSummary{Routes: int32(len(routes))}
	for _, r := range routes {
		if r.Programmed {
			s.Programmed++
		}
		if failing(r, advertises) {
			s.Failing++
		}
	}
	return s
}
