package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/spf13/pflag"
)

// noStaticDefault are the flags whose default is not a value --help can
// show: it comes from the environment or the host ($NODE_NAME, the host
// name, the node IP, $POD_NAMESPACE) or the setting is empty unless given.
var noStaticDefault = []string{"node-name", "kubeconfig", "source-dir", "vip-pool", "bgp-router-id",
	"bgp-peer", "bgp-import-cidr", "kubernetes-namespace", "bgp-node-peers"}

// Every flag's default, the one --help shows, is the configuration's own:
// giving a flag its default value changes nothing in the effective
// configuration. A flag added with a default of its own fails here.
func TestFlagDefaultsAreTheConfigDefaults(t *testing.T) {
	for _, env := range []string{"NODE_NAME", "POD_NAMESPACE", "HTTP2_READ_IDLE_TIMEOUT_SECONDS", "HTTP2_PING_TIMEOUT_SECONDS"} {
		t.Setenv(env, "")
	}
	want := config.Default()
	want.ApplyDefaults()

	var names []string
	var o overrides
	all := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.register(all)
	all.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })

	for _, name := range names {
		var o overrides
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		o.register(fs)
		f := fs.Lookup(name)
		if slices.Contains(noStaticDefault, name) {
			if f.DefValue != "" && f.DefValue != "[]" {
				t.Errorf("--%s shows the default %q, but the configuration's comes from the environment or is empty", name, f.DefValue)
			}
			continue
		}
		if f.DefValue == "" || f.DefValue == "[]" {
			t.Errorf("--%s shows no default in --help; give it the configuration's (package config)", name)
			continue
		}
		if err := fs.Set(name, f.DefValue); err != nil {
			t.Fatalf("--%s=%s: %v", name, f.DefValue, err)
		}
		got := config.Default()
		if err := o.apply(fs, got); err != nil {
			t.Fatalf("--%s=%s: %v", name, f.DefValue, err)
		}
		got.ApplyDefaults()
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("--%s's default %q is not the configuration's:\nwith it: %s\nwithout: %s", name, f.DefValue, g, w)
		}
	}
}

// The defaults the flags' help names for `edgeagent status` are the agent's.
func TestStatusFlagDefault(t *testing.T) {
	cmd := newStatusCommand()
	if got := cmd.Flags().Lookup("admin-address").DefValue; got != config.DefaultAdminAddress {
		t.Errorf("status --admin-address defaults to %q, the agent listens on %q", got, config.DefaultAdminAddress)
	}
}

// --help shows the effective defaults, the configuration's.
func TestRunHelpShowsTheDefaults(t *testing.T) {
	out, code := runCLI(t, "run", "--help")
	if code != 0 {
		t.Fatalf("run --help exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		fmt.Sprintf("local AS number (default %d)", config.DefaultASN),
		fmt.Sprintf("(default %q)", config.DefaultVIPInterface),
		fmt.Sprintf("(default %v)", config.DefaultResyncInterval),
		fmt.Sprintf("(default %q)", config.DefaultAdminAddress),
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("run --help does not show %q:\n%s", want, out)
		}
	}
}
