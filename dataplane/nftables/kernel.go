package nftables

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"syscall"

	nft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// elemSet is the elements of the table's sets and maps: set name → key →
// value ("" in a set), keys and values as the kernel stores them.
type elemSet map[string]map[string]string

func (e elemSet) put(set string, key, val []byte) {
	m := e[set]
	if m == nil {
		m = map[string]string{}
		e[set] = m
	}
	m[string(key)] = string(val)
}

func (e elemSet) putString(set, key, val string) {
	m := e[set]
	if m == nil {
		m = map[string]string{}
		e[set] = m
	}
	m[key] = val
}

func (e elemSet) delString(set, key string) {
	if m := e[set]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(e, set)
		}
	}
}

func (e elemSet) count() int {
	n := 0
	for _, m := range e {
		n += len(m)
	}
	return n
}

// kernel talks to nf_tables over netlink, in one network namespace, on one
// lasting socket. Writes are batches: every batch is one kernel
// transaction, applied whole or not at all.
type kernel struct {
	c *nft.Conn
	t *nft.Table
}

// maxBatch is the socket send buffer forced for batches: a batch is one
// sendmsg and must fit. 10,000 IPv4 services × 4 reals are about 2.5 MB.
const maxBatch = 256 << 20

func openKernel(ns netns.NsHandle, table string) (*kernel, error) {
	opts := []nft.ConnOption{nft.AsLasting(), nft.WithSockOptions(func(c *netlink.Conn) error {
		// Errors for big messages without the message echoed back, so a
		// failing batch cannot overflow the receive buffer with copies.
		if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
			return fmt.Errorf("netlink cap ack: %w", err)
		}
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			// FORCE: beyond net.core.wmem_max (CAP_NET_ADMIN, which the
			// agent has anyway); else the usual, capped buffer.
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxBatch); serr != nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, maxBatch)
			}
			if serr == nil {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<20)
				}
			}
		}); err != nil {
			return err
		}
		return serr
	})}
	if ns.IsOpen() {
		opts = append(opts, nft.WithNetNSFd(int(ns)))
	}
	c, err := nft.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return &kernel{c: c, t: &nft.Table{Name: table, Family: nft.TableFamilyINet}}, nil
}

func (k *kernel) close() error { return k.c.CloseLasting() }

// snapshot is the agent's table as read from the kernel.
type snapshot struct {
	exists bool
	flags  uint32 // the table's; the agent's has none (dormant stops it)
	chains map[string]*nft.Chain
	rules  map[string][]*nft.Rule
	sets   map[string]*nft.Set
	elems  elemSet
}

// read reads the whole table: chains, their rules, sets and every element.
// Elements come in a netlink dump, which the kernel pages; at 10,000
// services this takes about a second, so it runs at start, after Resync
// and after a failed write, never on a sync's normal path.
func (k *kernel) read() (*snapshot, error) {
	s := &snapshot{chains: map[string]*nft.Chain{}, rules: map[string][]*nft.Rule{}, sets: map[string]*nft.Set{}, elems: elemSet{}}
	tables, err := k.c.ListTablesOfFamily(nft.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list inet tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == k.t.Name {
			s.exists, s.flags = true, t.Flags
		}
	}
	if !s.exists {
		return s, nil
	}
	chains, err := k.c.ListChainsOfTableFamily(nft.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != k.t.Name {
			continue
		}
		s.chains[c.Name] = c
		rules, err := k.c.GetRules(k.t, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", c.Name, err)
		}
		s.rules[c.Name] = rules
	}
	sets, err := k.c.GetSets(k.t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, set := range sets {
		s.sets[set.Name] = set
		els, err := k.c.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("list elements of %s: %w", set.Name, err)
		}
		for _, e := range els {
			s.elems.put(set.Name, e.Key, e.Val)
		}
	}
	return s, nil
}

// serviceRules reads the rules of the services chain only (a handful):
// after adding selector rules, to learn their handles.
func (k *kernel) serviceRules() ([]*nft.Rule, error) {
	rules, err := k.c.GetRules(k.t, &nft.Chain{Name: chainServices, Table: k.t})
	if err != nil {
		return nil, fmt.Errorf("list rules of chain %s: %w", chainServices, err)
	}
	return rules, nil
}

// forwardDrops lists the base chains at the forward hook, in any table of
// any family, whose policy is drop. The agent's accept cannot override
// them (each base chain decides on its own), so load-balanced traffic to
// reals behind this node would be dropped unless they accept it.
func (k *kernel) forwardDrops() ([]string, error) {
	chains, err := k.c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var out []string
	for _, c := range chains {
		if c.Hooknum != nil && *c.Hooknum == *nft.ChainHookForward && c.Policy != nil && *c.Policy == nft.ChainPolicyDrop &&
			(c.Table.Family == nft.TableFamilyIPv4 || c.Table.Family == nft.TableFamilyIPv6 || c.Table.Family == nft.TableFamilyINet) {
			out = append(out, fmt.Sprintf("%s %s chain %s", familyName(c.Table.Family), c.Table.Name, c.Name))
		}
	}
	return out, nil
}

func familyName(f nft.TableFamily) string {
	switch f {
	case nft.TableFamilyIPv4:
		return "ip"
	case nft.TableFamilyIPv6:
		return "ip6"
	case nft.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprint(f)
}

// deleteTable removes the table if it exists; reports whether it did.
func (k *kernel) deleteTable() (bool, error) {
	s, err := k.c.ListTablesOfFamily(nft.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list inet tables: %w", err)
	}
	for _, t := range s {
		if t.Name == k.t.Name {
			k.c.DelTable(k.t)
			if err := k.c.Flush(); err != nil {
				if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) {
					return false, nil
				}
				return false, fmt.Errorf("delete table inet %s: %w", k.t.Name, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// sameExprs compares rule expressions as the agent writes them with what
// the kernel returns, ignoring what the netlink decoding fills in or
// cannot tell apart (set IDs, NAT max registers defaulting to the min
// ones, the source flag of ct set).
func sameExprs(a, b []expr.Any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(normalize(a[i]), normalize(b[i])) {
			return false
		}
	}
	return true
}

func normalize(e expr.Any) expr.Any {
	switch x := e.(type) {
	case *expr.Lookup:
		c := *x
		c.SetID = 0
		return &c
	case *expr.NAT:
		c := *x
		if c.RegAddrMax == 0 {
			c.RegAddrMax = c.RegAddrMin
		}
		if c.RegProtoMax == 0 {
			c.RegProtoMax = c.RegProtoMin
		}
		return &c
	case *expr.Ct:
		c := *x
		if c.SourceRegister {
			// The decoder reads ct set as a load into register 0.
			c.SourceRegister, c.Register = false, 0
		}
		return &c
	}
	return e
}

// ruleComment returns a rule's comment, "" without one.
func commentOf(r *nft.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// sameChain compares a chain's hook, type, priority and policy.
func sameChain(want, have *nft.Chain) bool {
	if (want.Hooknum == nil) != (have.Hooknum == nil) {
		return false
	}
	if want.Hooknum == nil {
		return true
	}
	return *want.Hooknum == *have.Hooknum && want.Type == have.Type &&
		have.Priority != nil && *want.Priority == *have.Priority &&
		have.Policy != nil && *want.Policy == *have.Policy
}

// sameSet compares a set's or map's definition.
func sameSet(want, have *nft.Set) bool {
	return want.IsMap == have.IsMap && want.Concatenation == have.Concatenation &&
		want.Interval == have.Interval && want.HasTimeout == have.HasTimeout &&
		want.KeyType.Bytes == have.KeyType.Bytes && want.KeyType.GetNFTMagic() == have.KeyType.GetNFTMagic() &&
		want.DataType.Bytes == have.DataType.Bytes && want.DataType.GetNFTMagic() == have.DataType.GetNFTMagic()
}

// elemChunk is how many elements go in one netlink message. The element
// list is one netlink attribute, and attribute lengths are 16 bits: a
// longer list silently wraps around and the kernel adds only part of it.
func elemChunk(keyLen, valLen int) int {
	per := keyLen + valLen + 40 // nested attribute headers
	return max(1, 60000/per)
}

// addElements queues elements for set in as many messages as needed.
func (k *kernel) addElements(set *nft.Set, els []nft.SetElement) error {
	if len(els) == 0 {
		return nil
	}
	n := elemChunk(len(els[0].Key), len(els[0].Val))
	for i := 0; i < len(els); i += n {
		if err := k.c.SetAddElements(set, els[i:min(i+n, len(els))]); err != nil {
			return fmt.Errorf("add elements to %s: %w", set.Name, err)
		}
	}
	return nil
}

func (k *kernel) deleteElements(set *nft.Set, els []nft.SetElement) error {
	if len(els) == 0 {
		return nil
	}
	n := elemChunk(len(els[0].Key), 0)
	for i := 0; i < len(els); i += n {
		if err := k.c.SetDeleteElements(set, els[i:min(i+n, len(els))]); err != nil {
			return fmt.Errorf("delete elements from %s: %w", set.Name, err)
		}
	}
	return nil
}

// condensed shortens the error of a refused batch: the library reports one
// error per message of the batch, usually the same one many times.
type condensed struct{ err error }

func (c condensed) Error() string {
	lines := strings.Split(c.err.Error(), "\n")
	seen := map[string]int{}
	var order []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if seen[l] == 0 {
			order = append(order, l)
		}
		seen[l]++
	}
	for i, l := range order {
		if n := seen[l]; n > 1 {
			order[i] = fmt.Sprintf("%s (×%d)", l, n)
		}
	}
	return strings.Join(order, "; ")
}

func (c condensed) Unwrap() error { return c.err }
