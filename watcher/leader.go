package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the Lease the agents elect their leader with.
const LeaseName = "edgeagent-leader"

// LeaderOptions configure RunLeaderElection.
type LeaderOptions struct {
	Client    kubernetes.Interface
	Namespace string
	// Identity is this agent's node name.
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod default to 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
}

// RunLeaderElection campaigns for the Lease until ctx ends. While this agent
// leads, lead runs with a context that ends when leadership is lost; after a
// loss the agent campaigns again. The Lease is released on shutdown so a
// successor takes over without waiting for it to expire.
func RunLeaderElection(ctx context.Context, o LeaderOptions, lead func(ctx context.Context)) error {
	if o.Identity == "" || o.Namespace == "" {
		return fmt.Errorf("leader election: identity and namespace must be set")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	log := o.Logger.With("component", "leader-election", "lease", o.Namespace+"/"+LeaseName)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: o.Namespace},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   o.LeaseDuration,
			RenewDeadline:   o.RenewDeadline,
			RetryPeriod:     o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					log.Info("became leader")
					lead(ctx)
				},
				OnStoppedLeading: func() { log.Info("stopped leading") },
				OnNewLeader: func(id string) {
					if id != o.Identity {
						log.Info("leader is", "identity", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(o.RetryPeriod):
		}
	}
	return nil
}
