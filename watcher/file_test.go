package watcher

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
)

const routeA = `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: a, namespace: shop}
spec: {vsIP: 10.200.0.1, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}
`

const routeB = `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: b, namespace: shop}
spec: {vsIP: 10.200.0.2, ports: [{port: 80}], realServers: [{ip: 10.244.1.11}]}
`

func write(t *testing.T, dir, name, data string) {
	t.Helper()
	// Write then rename, as editors and kubectl-style tools do, so the
	// watcher never sees a half-written file.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func keys(s Snapshot) []string {
	var out []string
	for _, r := range s.Routes {
		out = append(out, r.Namespace+"/"+r.Name+"@"+r.Spec.VSIP)
	}
	return out
}

// rejectPort0 stands in for translation-level validation.
func rejectPort0(rt *v1alpha1.LBRoute) model.Problems {
	for _, p := range rt.Spec.Ports {
		if p.Port == 0 {
			return model.Problems{{Field: "spec.ports[0].port", Reason: model.ReasonInvalidSpec, Detail: "must be 1-65535, got 0"}}
		}
	}
	return nil
}

func TestFileSourceKeepsLastGoodVersion(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "routes.yaml", routeA+"---\n"+routeB)
	write(t, dir, "notes.txt", "not a manifest")
	src, err := NewFileSource(FileOptions{Dir: dir, Validate: rejectPort0})
	if err != nil {
		t.Fatal(err)
	}
	if src.Synced() {
		t.Fatal("synced before the first load")
	}
	src.Reload()
	if got := keys(src.Snapshot()); !slices.Equal(got, []string{"shop/a@10.200.0.1", "shop/b@10.200.0.2"}) {
		t.Fatalf("initial: %v", got)
	}

	// The file turns bad: document 1 breaks (YAML error), document 0 is
	// edited validly. a gets its new version; b keeps its last good one.
	write(t, dir, "routes.yaml", strings.Replace(routeA, "10.200.0.1", "10.200.0.9", 1)+"---\n"+"kind: LBRoute\nspec: [\n")
	if !src.Reload() {
		t.Fatal("reload reported no change")
	}
	snap := src.Snapshot()
	if got := keys(snap); !slices.Equal(got, []string{"shop/a@10.200.0.9", "shop/b@10.200.0.2"}) {
		t.Fatalf("after bad edit: %v", got)
	}
	if len(snap.Errors) != 1 || !strings.HasPrefix(snap.Errors[0].Source, "routes.yaml[1]") {
		t.Fatalf("errors: %+v, want one for routes.yaml[1]", snap.Errors)
	}

	// An object failing validation is also kept at its last good version.
	write(t, dir, "routes.yaml", routeA+"---\n"+strings.Replace(routeB, "port: 80", "port: 0", 1))
	src.Reload()
	snap = src.Snapshot()
	if got := keys(snap); !slices.Equal(got, []string{"shop/a@10.200.0.1", "shop/b@10.200.0.2"}) {
		t.Fatalf("after invalid edit: %v", got)
	}
	if len(snap.Errors) != 1 || !strings.Contains(snap.Errors[0].Error, "spec.ports[0].port") {
		t.Fatalf("errors: %+v", snap.Errors)
	}

	// Fixed, with b removed: now b goes.
	write(t, dir, "routes.yaml", routeA)
	src.Reload()
	snap = src.Snapshot()
	if got := keys(snap); !slices.Equal(got, []string{"shop/a@10.200.0.1"}) || len(snap.Errors) != 0 {
		t.Fatalf("after fix: %v %+v", got, snap.Errors)
	}
	if src.Reload() {
		t.Fatal("reload of an unchanged directory reported a change")
	}

	// The file is deleted: its objects go.
	os.Remove(filepath.Join(dir, "routes.yaml"))
	src.Reload()
	if got := keys(src.Snapshot()); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
}

func TestFileSourceDuplicateAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "1.yaml", routeA)
	write(t, dir, "2.yaml", strings.Replace(routeA, "10.200.0.1", "10.200.0.7", 1))
	src, _ := NewFileSource(FileOptions{Dir: dir})
	src.Reload()
	snap := src.Snapshot()
	if got := keys(snap); !slices.Equal(got, []string{"shop/a@10.200.0.1"}) {
		t.Fatalf("got %v, want the first file's version", got)
	}
	if len(snap.Errors) != 1 || !strings.Contains(snap.Errors[0].Error, "also defined in 1.yaml") {
		t.Fatalf("errors %+v", snap.Errors)
	}
}

func TestFileSourceIgnoresConfigFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "agent.yaml", "nodeName: x\n")
	write(t, dir, "a.yaml", routeA)
	src, _ := NewFileSource(FileOptions{Dir: dir, Ignore: []string{filepath.Join(dir, "agent.yaml")}})
	src.Reload()
	if snap := src.Snapshot(); len(snap.Routes) != 1 || len(snap.Errors) != 0 {
		t.Fatalf("snapshot %v errors %+v", keys(snap), snap.Errors)
	}
}

// TestFileSourceWatches checks the watch loop: a burst of writes ends in a
// notification and a snapshot holding the last write.
func TestFileSourceWatches(t *testing.T) {
	dir := t.TempDir()
	src, _ := NewFileSource(FileOptions{Dir: dir, Debounce: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() { changed <- struct{}{} }) }()
	<-changed // initial load
	if !src.Synced() {
		t.Fatal("not synced after the initial load")
	}
	for i := range 5 {
		write(t, dir, "a.yaml", strings.Replace(routeA, "10.200.0.1", "10.200.0.1"+string(rune('0'+i)), 1))
	}
	deadline := time.After(10 * time.Second)
	for !slices.Equal(keys(src.Snapshot()), []string{"shop/a@10.200.0.14"}) {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no notification with the last write; snapshot %v", keys(src.Snapshot()))
		}
	}
	if got := keys(src.Snapshot()); !slices.Equal(got, []string{"shop/a@10.200.0.14"}) {
		t.Fatalf("snapshot %v, want the last write", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFileSourceFastPathIsAdditive: with the debounced reload held off, a
// good new file still appears at once, and a truncated (empty) rewrite of
// it removes nothing — removal waits for the quiet-period reload.
func TestFileSourceFastPathIsAdditive(t *testing.T) {
	dir := t.TempDir()
	src, _ := NewFileSource(FileOptions{Dir: dir, Debounce: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 100)
	go src.Run(ctx, func() { changed <- struct{}{} })
	<-changed

	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(routeA), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("a new file did not appear without the debounced reload")
	}
	if got := keys(src.Snapshot()); !slices.Equal(got, []string{"shop/a@10.200.0.1"}) {
		t.Fatalf("snapshot %v", got)
	}
	// Truncate in place, as an editor's first write step does.
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(routeA[:len(routeA)/2]), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatalf("a half-written file changed the snapshot: %v", keys(src.Snapshot()))
	case <-time.After(300 * time.Millisecond):
	}
	if got := keys(src.Snapshot()); !slices.Equal(got, []string{"shop/a@10.200.0.1"}) {
		t.Fatalf("snapshot %v after a half-written file", got)
	}
}

// An object defined in two files: when the winning file goes, the other
// (unchanged) file's definition takes over.
func TestFileSourceDuplicateResolvesWhenWinnerGoes(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "1.yaml", routeA)
	write(t, dir, "2.yaml", strings.Replace(routeA, "10.200.0.1", "10.200.0.7", 1))
	src, _ := NewFileSource(FileOptions{Dir: dir})
	src.Reload()
	if src.Reload() {
		t.Fatal("a reload of unchanged files reported a change")
	}
	os.Remove(filepath.Join(dir, "1.yaml"))
	if !src.Reload() {
		t.Fatal("removing a file reported no change")
	}
	snap := src.Snapshot()
	if got := keys(snap); !slices.Equal(got, []string{"shop/a@10.200.0.7"}) || len(snap.Errors) != 0 {
		t.Fatalf("got %v %+v, want 2.yaml's version and no errors", got, snap.Errors)
	}
}

// A file applied by the fast path and then put back to what the last full
// reload read must be decoded again, not skipped as unchanged.
func TestFileSourceRevertAfterFastPath(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", routeA)
	src, _ := NewFileSource(FileOptions{Dir: dir})
	src.Reload()
	write(t, dir, "a.yaml", strings.Replace(routeA, "10.200.0.1", "10.200.0.9", 1))
	if !src.loadAdditive(filepath.Join(dir, "a.yaml")) {
		t.Fatal("fast path applied nothing")
	}
	write(t, dir, "a.yaml", routeA)
	src.Reload()
	if got := keys(src.Snapshot()); !slices.Equal(got, []string{"shop/a@10.200.0.1"}) {
		t.Fatalf("got %v, want the reverted file's version", got)
	}
}
