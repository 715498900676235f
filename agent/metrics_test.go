package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestVIPAdvertisedMetric: an accepted route whose VIP is announced reads 1;
// one that is accepted but not announced (here: not programmed) reads 0;
// a refused route has no series; a route that leaves takes its series
// with it.
func TestVIPAdvertisedMetric(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{
		route("a", "10.200.0.1", 80),
		route("b", "10.200.0.2", 9999), // the dataplane fails to program it
		route("c", "10.99.0.1", 80),    // outside the pools: refused
	}}}
	reg := prometheus.NewRegistry()
	a := New(Options{Config: testConfig(), Source: src, Dataplane: &fakeDataplane{}, Speaker: &fakeSpeaker{}, Registerer: reg})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	const head = `
# HELP edgeagent_lbroute_vip_advertised 1 when this node advertises the VIP of the accepted LBRoute over BGP, 0 when it does not (no healthy real, or not programmed); refused LBRoutes have no series.
# TYPE edgeagent_lbroute_vip_advertised gauge
`
	want := head + `edgeagent_lbroute_vip_advertised{lbroute="default/a",vip="10.200.0.1"} 1
edgeagent_lbroute_vip_advertised{lbroute="default/b",vip="10.200.0.2"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "edgeagent_lbroute_vip_advertised"); err != nil {
		t.Error(err)
	}
	src.snap.Routes = src.snap.Routes[:1]
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = head + `edgeagent_lbroute_vip_advertised{lbroute="default/a",vip="10.200.0.1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "edgeagent_lbroute_vip_advertised"); err != nil {
		t.Errorf("after b left: %v", err)
	}
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Errorf("metric lint: %v %v", err, probs)
	}
}

// Without BGP nothing is ever advertised: no series rather than a wall of
// zeros that would page someone.
func TestVIPAdvertisedMetricWithoutBGP(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	reg := prometheus.NewRegistry()
	a := New(Options{Config: testConfig(), Source: src, Dataplane: &fakeDataplane{}, Registerer: reg})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "edgeagent_lbroute_vip_advertised"); err != nil || n != 0 {
		t.Errorf("%d series (%v), want none without a speaker", n, err)
	}
}
