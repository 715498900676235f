package agent

import (
	"fmt"
	"log/slog"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/prometheus/client_golang/prometheus"
)

// buildAPV constructs the APV driver when apv.devices is configured (nil
// otherwise). Credential and CA file paths are resolved against the config
// file's directory. Events go to the log until the Kubernetes side provides
// an event recorder.
func buildAPV(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*apv.Appliance, error) {
	if len(cfg.APV.Devices) == 0 {
		return nil, nil
	}
	c := cfg.APV
	c.Devices = append([]config.APVDevice(nil), cfg.APV.Devices...)
	for i := range c.Devices {
		d := &c.Devices[i]
		d.UsernameFile, d.PasswordFile, d.CAFile = cfg.Resolve(d.UsernameFile), cfg.Resolve(d.PasswordFile), cfg.Resolve(d.CAFile)
	}
	// Events: nil logs them (apv.LogEvents) with the apv component's logger.
	return apv.New(c, apv.Options{Logger: log, Registerer: reg})
}

// apvDegraded lists the devices that are failing, for /status degraded.
func apvDegraded(devs []status.APVDevice) []string {
	var out []string
	for _, d := range devs {
		if d.LastError != "" {
			out = append(out, fmt.Sprintf("apv %s: %s", d.Name, d.LastError))
		}
	}
	return out
}

var _ Appliance = (*apv.Appliance)(nil)
