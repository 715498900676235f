// Package admin serves the agent's admin endpoints: GET /status (the JSON
// document of package status), /healthz (the process is alive), /readyz
// (the agent has synced its source and its last reconcile succeeded) and
// Go's profiles under /debug/pprof/ (net/http/pprof; the admin address is
// loopback unless configured otherwise, as kube components serve theirs).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/arraynetworks/edgeagent/status"
)

// StatusFunc returns the current status document.
type StatusFunc func() status.Report

// Handler returns the admin mux.
func Handler(report StatusFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := report()
		if !r.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(r.Degraded, "; "))
			return
		}
		if len(r.Degraded) > 0 {
			// Degraded but serving: the dataplane keeps forwarding with the
			// last known state, so the pod must not be restarted for it.
			fmt.Fprintf(w, "degraded: %s\n", strings.Join(r.Degraded, "; "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Serve listens on addr and serves h until ctx ends, then shuts down
// gracefully. It returns once the listener is closed; the listen error, if
// any, is returned at once so a port clash fails the agent's start.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (func() error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	log.Info("serving", "address", ln.Addr().String())
	wait := func() error {
		select {
		case <-ctx.Done():
		case err := <-done:
			return err
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return <-done
	}
	return wait, nil
}
