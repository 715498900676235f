package apv

import (
	"strings"
	"testing"
)

// Whatever a device prints, parsing never panics, a parsed configuration
// diffs to nothing against itself, and every line Diff would send to remove
// it either passes the wire check or is refused by it (never a second
// command).
func FuzzParseConfig(f *testing.F) {
	c, _ := Render(sampleState())
	f.Add(strings.Join(c.Lines(), "\n"))
	f.Add("slb real tcp \"ea_x\" 1.2.3.4 80 1000 tcp 3 3\nslb group member \"ea_g\" \"ea_x\" 1 0\nslb group health \"ea_g\" \"ea_h\"")
	f.Add("slb health \"ea_h\" http 5 2 2 3 GET \"/a b\" \"200\"\nslb policy default ea_v \"ea_g")
	f.Fuzz(func(t *testing.T, text string) {
		got, _ := ParseConfig(text)
		if d := Diff(got, got); len(d) != 0 {
			t.Fatalf("self-diff not empty: %v", d)
		}
		for _, l := range Diff(got, Config{}) {
			if strings.ContainsAny(l, "\n\r") && checkLine(l) == nil {
				t.Fatalf("line with a newline passes the wire check: %q", l)
			}
		}
	})
}
