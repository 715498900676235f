package healthcheck

import "testing"

func TestVerdictRiseFall(t *testing.T) {
	cases := []struct {
		name       string
		rise, fall int
		results    string // o = success, x = failure
		want       string // verdict after each result: U = healthy, D = down
		flips      int
	}{
		{"starts healthy, stays on success", 2, 3, "ooo", "UUU", 0},
		{"fall 3: down on third failure in a row", 2, 3, "xxx", "UUD", 1},
		{"a success resets the failure streak", 2, 3, "xxoxxo", "UUUUUU", 0},
		{"rise 2: up on second success in a row", 2, 3, "xxxoo", "UUDDU", 2},
		{"a failure resets the success streak", 2, 3, "xxxoxoxoo", "UUDDDDDDU", 2},
		{"fall 1 rise 1 follows every result", 1, 1, "xoxo", "DUDU", 4},
		{"zero counts act as one", 0, 0, "xo", "DU", 2},
		{"down stays down on failures", 3, 1, "xxxxoo", "DDDDDD", 1},
		{"rise 3", 3, 1, "xooo", "DDDU", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := NewVerdict()
			got, flips := "", 0
			for _, r := range c.results {
				var f bool
				v, f = v.Observe(r == 'o', c.rise, c.fall)
				if f {
					flips++
				}
				if v.Healthy {
					got += "U"
				} else {
					got += "D"
				}
			}
			if got != c.want || flips != c.flips {
				t.Errorf("results %s: verdicts %s (%d flips), want %s (%d flips)", c.results, got, flips, c.want, c.flips)
			}
		})
	}
}
