package kubestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	acv1alpha1 "github.com/arraynetworks/edgeagent/api/applyconfiguration/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// neighbors writes this node's EdgeNodeStatus: at once when a session
// changes state (at most one write a second), otherwise at most every
// NeighborInterval when only counters moved.
type neighbors struct {
	w    *Writer
	kick chan struct{}

	mu      sync.Mutex
	desired []v1alpha1.BGPNeighborStatus
	written []v1alpha1.BGPNeighborStatus
	last    time.Time
}

func (nb *neighbors) report(ns []status.Neighbor) {
	if !nb.w.opts.NeighborStatus {
		return
	}
	now := time.Now()
	out := make([]v1alpha1.BGPNeighborStatus, 0, len(ns))
	nb.mu.Lock()
	defer nb.mu.Unlock()
	prev := map[string]v1alpha1.BGPNeighborStatus{}
	for _, n := range nb.desired {
		prev[n.Address] = n
	}
	for _, n := range ns {
		b := v1alpha1.BGPNeighborStatus{
			Address: n.Address, ASN: int64(n.ASN), State: n.State,
			Received: int32(n.Received), Accepted: int32(n.Accepted), Advertised: int32(n.Advertised),
			LocalAddress: n.LocalAddress, GracefulRestart: n.GracefulRestart,
			LastError: truncate(n.LastError, 256), Source: n.Source,
		}
		if n.State == "established" {
			since := metav1.NewTime(now.Add(-time.Duration(n.UptimeSeconds) * time.Second).Truncate(time.Second))
			// Uptime is whole seconds: keep the earlier value unless the
			// session really restarted.
			if p, ok := prev[n.Address]; ok && p.EstablishedSince != nil && absDur(p.EstablishedSince.Sub(since.Time)) <= 2*time.Second {
				since = *p.EstablishedSince
			}
			b.EstablishedSince = &since
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b v1alpha1.BGPNeighborStatus) int { return strings.Compare(a.Address, b.Address) })
	if semantic.DeepEqual(out, nb.desired) {
		return
	}
	nb.desired = out
	select {
	case nb.kick <- struct{}{}:
	default:
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// stateKey is what makes a neighbor write urgent: addresses and states.
func stateKey(ns []v1alpha1.BGPNeighborStatus) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "%s=%s;", n.Address, n.State)
	}
	return b.String()
}

func (nb *neighbors) run(ctx context.Context) {
	if !nb.w.opts.NeighborStatus {
		<-ctx.Done()
		return
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-nb.kick:
		case <-timer.C:
		}
		nb.mu.Lock()
		want := nb.desired
		urgent := stateKey(want) != stateKey(nb.written) || nb.written == nil
		due := nb.last.Add(nb.w.opts.NeighborInterval)
		if urgent {
			due = nb.last.Add(time.Second)
		}
		same := nb.written != nil && semantic.DeepEqual(want, nb.written)
		nb.mu.Unlock()
		if same {
			continue
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			continue
		}
		if err := nb.write(ctx, want); err != nil {
			if ctx.Err() != nil {
				return
			}
			nb.w.failures.Inc()
			nb.w.log.Warn("EdgeNodeStatus write failed", "err", err)
			timer.Reset(5 * time.Second)
			nb.mu.Lock()
			nb.last = time.Now()
			nb.mu.Unlock()
			continue
		}
		nb.mu.Lock()
		nb.written, nb.last = want, time.Now()
		nb.mu.Unlock()
	}
}

func (nb *neighbors) write(ctx context.Context, ns []v1alpha1.BGPNeighborStatus) error {
	node := nb.w.opts.NodeName
	var established int32
	st := acv1alpha1.EdgeNodeState()
	for _, n := range ns {
		if n.State == "established" {
			established++
		}
		b := acv1alpha1.BGPNeighborStatus().WithAddress(n.Address).WithASN(n.ASN).WithState(n.State)
		if n.EstablishedSince != nil {
			b.WithEstablishedSince(*n.EstablishedSince)
		}
		if n.Received != 0 {
			b.WithReceived(n.Received)
		}
		if n.Accepted != 0 {
			b.WithAccepted(n.Accepted)
		}
		if n.Advertised != 0 {
			b.WithAdvertised(n.Advertised)
		}
		if n.LocalAddress != "" {
			b.WithLocalAddress(n.LocalAddress)
		}
		if n.GracefulRestart {
			b.WithGracefulRestart(true)
		}
		if n.LastError != "" {
			b.WithLastError(n.LastError)
		}
		if n.Source != "" {
			b.WithSource(n.Source)
		}
		st.WithNeighbors(b)
	}
	st.WithPeers(int32(len(ns))).WithEstablished(established).WithLastUpdated(metav1.NewTime(time.Now().Truncate(time.Second)))
	ac := acv1alpha1.EdgeNodeStatus(node).WithStatus(st)
	if owner := nb.w.node.ownerRef(ctx); owner != nil {
		ac.WithOwnerReferences(owner) // deleted with the Node, like the reports
	}
	data, err := json.Marshal(ac)
	if err != nil {
		return err
	}
	if err := nb.w.limiter.Wait(ctx); err != nil {
		return err
	}
	err = nb.w.c.rc.Patch(types.ApplyPatchType).Resource("edgenodestatuses").Name(node).
		VersionedParams(&metav1.PatchOptions{FieldManager: NodeFieldManager(node), Force: ptr.To(true)}, metav1.ParameterCodec).
		Body(data).Do(ctx).Error()
	if err != nil {
		return fmt.Errorf("apply EdgeNodeStatus %s: %w", node, err)
	}
	nb.w.wrote("neighbors")
	return nil
}
