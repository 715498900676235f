package frontends

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/arraynetworks/edgeagent/model"
)

// TestReassign plays the backends' part: it keeps what was applied (input
// and ownership) and applies whatever Reassign returns, and checks who owns
// the shared frontend after each step and which unchanged services had to
// be re-rendered.
func TestReassign(t *testing.T) {
	svc := func(route, vip string) model.VirtualService {
		return model.VirtualService{Namespace: "ns", Route: route, VIP: netip.MustParseAddr(vip), Port: 80, Protocol: model.TCP}
	}
	type state struct {
		vs    model.VirtualService
		owner bool
	}
	applied := map[string]state{}
	x := NewIndex()
	lookup := func(key string) (*model.VirtualService, bool, bool) {
		s, ok := applied[key]
		return &s.vs, s.owner, ok
	}
	step := func(name string, changed []model.VirtualService, gone []string, wantOwner string, wantTodo []string) {
		t.Helper()
		next := map[string]*model.VirtualService{}
		var todo []string
		for i := range changed {
			next[changed[i].Key()] = &changed[i]
			todo = append(todo, changed[i].Key())
		}
		todo = x.Reassign(todo, gone, next, lookup)
		for _, key := range gone {
			delete(applied, key)
		}
		fe := Of(&changed[0])
		owner := x.Owner(fe)
		for _, key := range todo {
			applied[key] = state{vs: *next[key], owner: key == owner}
		}
		slices.Sort(todo)
		if owner != wantOwner || !slices.Equal(todo, wantTodo) {
			t.Fatalf("%s: owner %q, todo %v; want %q, %v", name, owner, todo, wantOwner, wantTodo)
		}
	}
	b, c := svc("b", "10.200.0.1"), svc("c", "::ffff:10.200.0.1") // the same frontend
	a := svc("a", "10.200.0.1")
	step("b first", []model.VirtualService{b}, nil, "ns/b/TCP/80", []string{"ns/b/TCP/80"})
	step("c joins, b keeps it", []model.VirtualService{c}, nil, "ns/b/TCP/80", []string{"ns/c/TCP/80"})
	step("a joins and takes it; b, unchanged, loses it", []model.VirtualService{a}, nil, "ns/a/TCP/80", []string{"ns/a/TCP/80", "ns/b/TCP/80"})
	step("b is updated on the same frontend: nothing else moves", []model.VirtualService{b}, nil, "ns/a/TCP/80", []string{"ns/b/TCP/80"})
	step("a goes: b, unchanged, wins it back", []model.VirtualService{c}, []string{"ns/a/TCP/80"}, "ns/b/TCP/80", []string{"ns/b/TCP/80", "ns/c/TCP/80"})
	if x.Owner(Of(&a)) != "ns/b/TCP/80" || applied["ns/c/TCP/80"].owner || !applied["ns/b/TCP/80"].owner {
		t.Fatalf("applied ownership %+v", applied)
	}
}
