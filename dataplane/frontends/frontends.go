// Package frontends decides which virtual service owns a frontend (VIP,
// port, protocol) that several claim: the smallest key, so the verdict on
// a duplicate does not depend on input order. Both rules backends keep an
// Index and render only the owner of each frontend.
package frontends

import "github.com/arraynetworks/edgeagent/model"

// Index holds every service key (rendered or not) by frontend.
type Index struct {
	keys map[model.Frontend]map[string]bool
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{keys: map[model.Frontend]map[string]bool{}} }

// Of is vs's frontend with an IPv4-mapped VIP unmapped, so ::ffff:a.b.c.d
// and a.b.c.d are the same frontend.
func Of(vs *model.VirtualService) model.Frontend {
	fe := vs.Frontend()
	fe.VIP = fe.VIP.Unmap()
	return fe
}

// Owner is the smallest key using fe ("" when none does).
func (x *Index) Owner(fe model.Frontend) string {
	owner := ""
	for key := range x.keys[fe] {
		if owner == "" || key < owner {
			owner = key
		}
	}
	return owner
}

// Applied looks up a service as the backend last applied it: its input and
// whether it owned its frontend (ok false: not applied).
type Applied func(key string) (vs *model.VirtualService, owner, ok bool)

// Reassign moves the services in todo (their new input in next) and takes
// those in gone out of the index, then looks only at the frontends that
// changed hands: an unchanged service that won or lost its frontend is added
// to next (a copy of its applied input) and to the todo it returns.
func (x *Index) Reassign(todo, gone []string, next map[string]*model.VirtualService, applied Applied) []string {
	touched := map[model.Frontend]bool{}
	remove := func(key string) {
		if vs, _, ok := applied(key); ok {
			fe := Of(vs)
			delete(x.keys[fe], key)
			if len(x.keys[fe]) == 0 {
				delete(x.keys, fe)
			}
			touched[fe] = true
		}
	}
	for _, key := range todo {
		remove(key)
	}
	for _, key := range gone {
		remove(key)
	}
	for _, key := range todo {
		fe := Of(next[key])
		if x.keys[fe] == nil {
			x.keys[fe] = map[string]bool{}
		}
		x.keys[fe][key] = true
		touched[fe] = true
	}
	for fe := range touched {
		owner := x.Owner(fe)
		for key := range x.keys[fe] {
			if vs, wasOwner, ok := applied(key); ok && next[key] == nil && wasOwner != (key == owner) {
				c := *vs
				next[key] = &c
				todo = append(todo, key)
			}
		}
	}
	return todo
}
