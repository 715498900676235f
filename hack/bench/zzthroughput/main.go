package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/lbrgen"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

func main() {
	n := flag.Int("n", 5000, "")
	w := flag.Int("w", 16, "")
	flag.Parse()
	dir, _ := os.MkdirTemp("", "tp-")
	defer os.RemoveAll(dir)
	bin, _ := apiservertest.BinDir()
	s, err := apiservertest.New(bin, dir, apiservertest.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Stop()
	cfg := s.Config()
	cfg.QPS, cfg.Burst = -1, 0
	kc := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	ctx := context.Background()
	o := lbrgen.Options{Routes: *n}
	t0 := time.Now()
	if err := lbrgen.Create(ctx, lbrgen.Clients{Kube: kc, Dynamic: dyn}, o, nil); err != nil {
		panic(err)
	}
	fmt.Printf("create %d: %v\n", *n, time.Since(t0))
	if os.Getenv("PROF") != "" {
		go func() {
			time.Sleep(3 * time.Second)
			raw, err := kc.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "20").DoRaw(ctx)
			if err != nil {
				fmt.Println("profile:", err)
				return
			}
			os.WriteFile(os.Getenv("PROF"), raw, 0o644)
			fmt.Println("profile written")
		}()
	}
	modes := []string{"put", "merge", "apply"}
	if m := os.Getenv("MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	for _, mode := range modes {
		objs := map[string]*unstructured.Unstructured{}
		if mode == "put" {
			l, err := dyn.Resource(lbrgen.LBRouteResource).List(ctx, metav1.ListOptions{})
			if err != nil {
				panic(err)
			}
			for i := range l.Items {
				u := &l.Items[i]
				u.SetManagedFields(nil)
				objs[u.GetNamespace()+"/"+u.GetName()] = u
			}
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 = time.Now()
		for range *w {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= *n {
						return
					}
					ns, name := o.Namespace(i), lbrgen.Name(i)
					msg := fmt.Sprintf("programmed on %d of %d nodes (%s)", 5, 5, mode)
					conds := []map[string]any{}
					for _, t := range []string{"Accepted", "Programmed", "Advertised", "Ready"} {
						conds = append(conds, map[string]any{"type": t, "status": "True", "reason": t, "message": msg, "observedGeneration": 1, "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)})
					}
					st := map[string]any{"conditions": conds, "vsName": ns + "-" + name, "group": ns + "-" + name, "ports": "80/TCP", "realServers": 4, "observedGeneration": 1}
					var err error
					if mode == "put" {
						u := objs[ns+"/"+name].DeepCopy()
						u.Object["status"] = st
						_, err = dyn.Resource(lbrgen.LBRouteResource).Namespace(ns).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: "edgeagent-leader"})
					} else if mode == "merge" {
						b, _ := json.Marshal(map[string]any{"status": st})
						_, err = dyn.Resource(lbrgen.LBRouteResource).Namespace(ns).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{}, "status")
					} else {
						b, _ := json.Marshal(map[string]any{"apiVersion": "apv.arraynetworks.com/v1alpha1", "kind": "LBRoute", "metadata": map[string]any{"name": name, "namespace": ns}, "status": st})
						_, err = dyn.Resource(lbrgen.LBRouteResource).Namespace(ns).Patch(ctx, name, types.ApplyPatchType, b, metav1.PatchOptions{FieldManager: "edgeagent-leader", Force: ptr(true)}, "status")
					}
					if err != nil {
						panic(err)
					}
				}
			})
		}
		wg.Wait()
		el := time.Since(t0)
		fmt.Printf("%s %d status writes, %d workers: %v = %.0f/s\n", mode, *n, *w, el, float64(*n)/el.Seconds())
	}
}

func ptr[T any](v T) *T { return &v }
