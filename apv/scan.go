package apv

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Scan commands. `show interface`, `show health server` and `show running`
// print formats published in Array material; the others are assumptions
// (docs/apv.md) and their parsers are deliberately tolerant.
const (
	cmdShowRunning     = "show running"
	cmdShowHA          = "show ha status"
	cmdShowInterface   = "show interface"
	cmdShowCPU         = "show statistics cpu"
	cmdShowMemory      = "show memory"
	cmdShowHealth      = "show health server"
	cmdShowRealStats   = "show statistics slb real"
	cmdShowVirtualStat = "show statistics slb virtual"
)

// ScanResult is what one scan read from a device. A section that could not
// be read is left empty (ratios are -1).
type ScanResult struct {
	HAState    string
	Interfaces map[string]bool
	CPU        float64
	Memory     float64
	// Certs maps an SSL virtual host to its certificate's expiry.
	Certs    map[string]time.Time
	Reals    map[string]ServiceStatus
	Virtuals map[string]ServiceStatus
	// Errors lists the sections that could not be read.
	Errors []string
}

// ServiceStatus is the state of one SLB virtual or real service.
type ServiceStatus struct {
	Up          bool
	Connections float64
	HasConns    bool
}

// Scan reads a device's state. It fails only when the device cannot be
// reached (or refuses the credentials); a command the device does not know
// leaves its section empty and is listed in ScanResult.Errors.
func Scan(ctx context.Context, c *Client) (ScanResult, error) {
	res := ScanResult{HAState: "unknown", CPU: -1, Memory: -1, Interfaces: map[string]bool{}, Certs: map[string]time.Time{},
		Reals: map[string]ServiceStatus{}, Virtuals: map[string]ServiceStatus{}}
	run := func(cmd string) (string, bool, error) {
		out, err := c.Run(ctx, cmd)
		if err != nil {
			if Transport(err) {
				return "", false, err
			}
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", cmd, err))
			return "", false, nil
		}
		return out, true, nil
	}
	// The HA status goes first: it doubles as the reachability check.
	out, ok, err := run(cmdShowHA)
	if err != nil {
		return res, err
	}
	if ok {
		res.HAState = ParseHAState(out)
	}
	steps := []struct {
		cmd   string
		parse func(string)
	}{
		{cmdShowInterface, func(s string) { res.Interfaces = ParseInterfaces(s) }},
		{cmdShowCPU, func(s string) { res.CPU = ParseCPU(s) }},
		{cmdShowMemory, func(s string) { res.Memory = ParseMemory(s) }},
		{cmdShowHealth, func(s string) {
			for n, up := range ParseHealthServer(s) {
				res.Reals[n] = ServiceStatus{Up: up}
			}
		}},
		{cmdShowRealStats, func(s string) { mergeStats(res.Reals, ParseStats(s), true) }},
		{cmdShowVirtualStat, func(s string) { mergeStats(res.Virtuals, ParseStats(s), false) }},
		{cmdShowRunning, func(s string) {
			for _, vh := range ParseSSLHosts(s) {
				cert, ok, err := run("show ssl certificate " + q(vh))
				if err != nil || !ok {
					continue
				}
				if t, ok := ParseNotAfter(cert); ok {
					res.Certs[vh] = t
				}
			}
		}},
	}
	for _, st := range steps {
		out, ok, err := run(st.cmd)
		if err != nil {
			return res, err
		}
		if ok {
			st.parse(out)
		}
	}
	return res, ctx.Err()
}

// mergeStats adds connection counts; real up/down comes from
// `show health server` when it answered, else from the statistics.
func mergeStats(into map[string]ServiceStatus, stats map[string]ServiceStatus, keepUp bool) {
	for n, s := range stats {
		cur, had := into[n]
		if had && keepUp {
			s.Up = cur.Up
		}
		into[n] = s
	}
}

var (
	haOffRE     = regexp.MustCompile(`(?i)\bha\s+(status\s*:\s*)?off\b`)
	haGroupRE   = regexp.MustCompile(`(?i)\bgroup\s+\d+\b.*?\b(active|standby|init)\b`)
	haAnyRE     = regexp.MustCompile(`(?i)\b(active|standby|init)\b`)
	ifaceHeadRE = regexp.MustCompile(`^([A-Za-z0-9_.:-]+)\(([^)]*)\):\s*flags=`)
	ifaceStatRE = regexp.MustCompile(`^\s+status:\s*(.+?)\s*$`)
	pctRE       = regexp.MustCompile(`(\d+(?:\.\d+)?)\s*%`)
	memRE       = regexp.MustCompile(`(?i)mem\w*\s+(?:usage|used|utili[sz]ation)\s*:?\s*(\d+(?:\.\d+)?)\s*%`)
	notAfterRE  = regexp.MustCompile(`(?i)not\s+after\s*:\s*(.+?)\s*$`)
)

// ParseHAState reads the local unit's HA state out of `show ha status`:
// "off" when HA is off, else the first group's state word (active, standby,
// init), else "unknown".
func ParseHAState(out string) string {
	if haOffRE.MatchString(out) {
		return "off"
	}
	if m := haGroupRE.FindStringSubmatch(out); m != nil {
		return strings.ToLower(m[1])
	}
	if m := haAnyRE.FindStringSubmatch(out); m != nil {
		return strings.ToLower(m[1])
	}
	return "unknown"
}

// ParseInterfaces reads `show interface` (the BSD ifconfig-like layout:
// "port1(port1): flags=8843<UP,...>" then "status: active" or
// "status: no carrier") into name → carrier.
func ParseInterfaces(out string) map[string]bool {
	res := map[string]bool{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := ifaceHeadRE.FindStringSubmatch(line); m != nil {
			cur = m[1]
			res[cur] = strings.Contains(line, "<UP") || strings.Contains(line, ",UP")
			continue
		}
		if m := ifaceStatRE.FindStringSubmatch(line); m != nil && cur != "" {
			res[cur] = strings.EqualFold(m[1], "active")
		}
	}
	return res
}

// ParseCPU reads a CPU utilisation ratio: the "average"/"total" line if
// there is one, else the mean of every CPU percentage. -1 if none.
func ParseCPU(out string) float64 {
	var sum float64
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(strings.ToLower(line), "cpu") {
			continue
		}
		m := pctRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		l := strings.ToLower(line)
		if strings.Contains(l, "average") || strings.Contains(l, "total") {
			return v / 100
		}
		sum += v
		n++
	}
	if n == 0 {
		return -1
	}
	return sum / float64(n) / 100
}

// ParseMemory reads "Memory usage: 43.0%" style lines; -1 if none.
func ParseMemory(out string) float64 {
	m := memRE.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v / 100
}

// ParseHealthServer reads the "Server Status" table of `show health
// server`: "<real name> UP|DOWN" lines between the two dashed headers.
func ParseHealthServer(out string) map[string]bool {
	res := map[string]bool{}
	inStatus := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.Contains(line, "Server Status"):
			inStatus = true
			continue
		case strings.Contains(line, "Health Check"):
			inStatus = false
			continue
		}
		if !inStatus {
			continue
		}
		f := tokenize(line)
		if len(f) >= 2 && (strings.EqualFold(f[1], "UP") || strings.EqualFold(f[1], "DOWN")) {
			res[f[0]] = strings.EqualFold(f[1], "UP")
		}
	}
	return res
}

// ParseStats reads statistics tables whose rows are
// "<name> UP|DOWN <active connections> ...".
func ParseStats(out string) map[string]ServiceStatus {
	res := map[string]ServiceStatus{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := tokenize(strings.TrimSpace(sc.Text()))
		if len(f) < 3 || !(strings.EqualFold(f[1], "UP") || strings.EqualFold(f[1], "DOWN")) {
			continue
		}
		n, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		res[f[0]] = ServiceStatus{Up: strings.EqualFold(f[1], "UP"), Connections: n, HasConns: true}
	}
	return res
}

// ParseSSLHosts lists the SSL virtual hosts in configuration text
// (`ssl host virtual "<vhost>" "<vs>"`, the form Array's LBaaS agent
// creates).
func ParseSSLHosts(out string) []string {
	var res []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		f := tokenize(strings.TrimSpace(sc.Text()))
		if len(f) >= 4 && f[0] == "ssl" && f[1] == "host" && f[2] == "virtual" && !seen[f[3]] && checkObjectNameLoose(f[3]) {
			seen[f[3]] = true
			res = append(res, f[3])
		}
	}
	return res
}

// checkObjectNameLoose admits a device-made name that is safe to quote back
// into a show command.
func checkObjectNameLoose(s string) bool { return s != "" && len(s) <= 128 && checkLine(q(s)) == nil }

// ParseNotAfter reads the certificate expiry from OpenSSL-style text
// ("Not After : Dec  8 07:00:00 2026 GMT").
func ParseNotAfter(out string) (time.Time, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := notAfterRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		s := strings.Join(strings.Fields(m[1]), " ")
		for _, layout := range []string{"Jan 2 15:04:05 2006 MST", "2006-01-02 15:04:05 MST", time.RFC3339} {
			if t, err := time.Parse(layout, s); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}
