package config

import (
	"strings"
	"testing"
)

func TestAPVDeviceNeedsCredentialFiles(t *testing.T) {
	c, err := Parse([]byte(`apv: {devices: [{name: a, url: "https://192.0.2.10:9997"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c.NodeName = "n"
	c.ApplyDefaults()
	err = c.Validate()
	for _, want := range []string{"apv.devices[0].usernameFile", "apv.devices[0].passwordFile"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, want)
		}
	}
	if c.APV.SyncInterval.Duration.String() != "30s" || c.APV.ScanInterval.Duration.String() != "1m0s" {
		t.Errorf("defaults: sync %v scan %v", c.APV.SyncInterval, c.APV.ScanInterval)
	}
}
