package apv

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Scan commands; docs/apv.md names the public source of each (and of the
// output format its parser reads), or says there is none.
const (
	cmdShowRunning   = "show running"
	cmdShowHAConfig  = "show ha config"
	cmdShowHAStatus  = "show ha status"
	cmdShowHADomain  = "show ha status domain"
	cmdShowIPAddress = "show ip address"
	cmdShowInterface = "show interface"
	cmdShowCPU       = "show statistics cpu"
	cmdShowHealth    = "show health server"
	cmdShowSLBStats  = "show statistics slb all"
)

// ScanResult is what one scan read from a device. A section that could not
// be read is left empty (CPU is -1).
type ScanResult struct {
	// HAState is the local unit's state: active, standby, init, off or
	// unknown (HA on but the local unit or its state not found: never the
	// peer's state).
	HAState string
	// HAConfigured is true when `show ha config` lists HA units, whether
	// HA is on or off.
	HAConfigured bool
	// HAUnit is the local unit's name, HADomain the sorted addresses of
	// every unit in the HA configuration (the same on both units of a
	// pair), HAUnitsUp the units `show ha status domain` reports UP.
	HAUnit    string
	HADomain  string
	HAUnitsUp map[string]bool
	// Interfaces maps an interface to its carrier.
	Interfaces map[string]bool
	CPU        float64
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

// ScanTarget says how to identify the local HA unit: by name when
// configured, else by the device's own addresses or the URL's host.
type ScanTarget struct {
	HAUnit  string
	URLHost string
}

// Scan reads a device's state. It fails only when the device cannot be
// reached (or refuses the credentials); a command the device does not know
// leaves its section empty and is listed in ScanResult.Errors. Scan only
// reads: a read-only account is enough.
func Scan(ctx context.Context, c *Client, tgt ScanTarget) (ScanResult, error) {
	res := ScanResult{HAState: "unknown", CPU: -1, HAUnitsUp: map[string]bool{}, Interfaces: map[string]bool{},
		Certs: map[string]time.Time{}, Reals: map[string]ServiceStatus{}, Virtuals: map[string]ServiceStatus{}}
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
	// The HA configuration goes first: it doubles as the reachability check.
	out, ok, err := run(cmdShowHAConfig)
	if err != nil {
		return res, err
	}
	if ok {
		if err := scanHA(run, ParseHAConfig(out), tgt, &res); err != nil {
			return res, err
		}
	}
	steps := []struct {
		cmd   string
		parse func(string)
	}{
		{cmdShowInterface, func(s string) { res.Interfaces = ParseInterfaces(s) }},
		{cmdShowCPU, func(s string) { res.CPU = ParseCPU(s) }},
		{cmdShowHealth, func(s string) {
			for n, up := range ParseHealthServer(s) {
				res.Reals[n] = ServiceStatus{Up: up}
			}
		}},
		{cmdShowSLBStats, func(s string) {
			reals, virtuals := ParseSLBStatistics(s)
			mergeStats(res.Reals, reals, true)
			mergeStats(res.Virtuals, virtuals, false)
		}},
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

// scanHA fills the HA part of res from the HA configuration and, when HA is
// on, the status commands.
func scanHA(run func(string) (string, bool, error), cfg HAConfig, tgt ScanTarget, res *ScanResult) error {
	res.HAConfigured = len(cfg.Units) > 0
	res.HADomain = cfg.Domain()
	var own []netip.Addr
	if tgt.HAUnit == "" && res.HAConfigured {
		out, ok, err := run(cmdShowIPAddress)
		if err != nil {
			return err
		}
		if ok {
			own = ParseIPAddresses(out)
		}
	}
	res.HAUnit = cfg.LocalUnit(tgt.HAUnit, own, tgt.URLHost)
	if cfg.Off {
		res.HAState = "off"
		return nil
	}
	if !res.HAConfigured {
		return nil
	}
	out, ok, err := run(cmdShowHADomain)
	if err != nil {
		return err
	}
	if ok {
		res.HAUnitsUp = ParseHADomainStatus(out, cfg.Units)
	}
	if res.HAUnit == "" {
		return nil
	}
	out, ok, err = run(cmdShowHAStatus)
	if err != nil {
		return err
	}
	if ok {
		res.HAState = ParseHAStatus(out, res.HAUnit)
	}
	return nil
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

// HAUnit is one `ha unit "<name>" <ip> <port>` line of the HA
// configuration.
type HAUnit struct {
	Name string
	IP   netip.Addr
}

// HAConfig is what the agent reads out of `show ha config`.
type HAConfig struct {
	// Off is true when the configuration holds `ha off`.
	Off   bool
	Units []HAUnit
}

// ParseHAConfig reads `show ha config`, which prints the HA configuration
// lines: Array's LBaaS agent reads "ha off" in it to tell that HA is
// disabled (apv_driver.py get_ha_status) and its `ha decision rule` lines
// field by field (clear_ha), and configures units with
// `ha unit "<name>" <ip> <port>` (adc_device.py ha_unit).
func ParseHAConfig(out string) HAConfig {
	var c HAConfig
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := tokenize(strings.TrimSpace(sc.Text()))
		switch {
		case len(f) == 2 && f[0] == "ha" && f[1] == "off":
			c.Off = true
		case len(f) >= 4 && f[0] == "ha" && f[1] == "unit":
			ip, err := netip.ParseAddr(f[3])
			if err == nil && checkObjectNameLoose(f[2]) {
				c.Units = append(c.Units, HAUnit{Name: f[2], IP: ip.Unmap()})
			}
		}
	}
	return c
}

// Domain identifies the HA pair: the sorted unit addresses, which both
// units of a pair list alike ("" when no unit is configured).
func (c HAConfig) Domain() string {
	ips := make([]string, 0, len(c.Units))
	for _, u := range c.Units {
		ips = append(ips, u.IP.String())
	}
	slices.Sort(ips)
	return strings.Join(slices.Compact(ips), ",")
}

// LocalUnit picks the device's own unit: the configured name when it is one
// of the units, else the unit whose address the device holds (`show ip
// address`), else the unit whose address is the management URL's host
// (Array's LBaaS agent names each unit after the address it manages the
// device by). "" when none matches: the state is then unknown, never the
// peer's.
func (c HAConfig) LocalUnit(name string, own []netip.Addr, urlHost string) string {
	if name != "" {
		for _, u := range c.Units {
			if u.Name == name {
				return name
			}
		}
		return ""
	}
	for _, u := range c.Units {
		if slices.Contains(own, u.IP) {
			return u.Name
		}
	}
	if h, err := netip.ParseAddr(urlHost); err == nil {
		for _, u := range c.Units {
			if u.IP == h.Unmap() {
				return u.Name
			}
		}
	}
	return ""
}

// ParseIPAddresses reads the device's addresses out of `show ip address`
// (`ip address "port1" 10.10.11.1 255.255.255.0`, the form
// jp05451/array-script's resolvePortNames reads).
func ParseIPAddresses(out string) []netip.Addr {
	var res []netip.Addr
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := tokenize(strings.TrimSpace(sc.Text()))
		if len(f) >= 4 && f[0] == "ip" && f[1] == "address" {
			if a, err := netip.ParseAddr(f[3]); err == nil {
				res = append(res, a.Unmap())
			}
		}
	}
	return res
}

// ParseHADomainStatus reads `show ha status domain`: Array's LBaaS agent
// takes a unit as up when a line holds its name and "UP"
// (apv_driver.py get_ha_domain_status). Every configured unit gets an
// entry; units named on no line are down.
func ParseHADomainStatus(out string, units []HAUnit) map[string]bool {
	res := make(map[string]bool, len(units))
	for _, u := range units {
		res[u.Name] = false
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !containsWord(line, "UP") {
			continue
		}
		for _, u := range units {
			if containsWord(line, u.Name) {
				res[u.Name] = true
			}
		}
	}
	return res
}

// containsWord reports whether w occurs in s as a whole word: not inside a
// longer name (unit_m is not in unit_m2, UP is not in BACKUP).
func containsWord(s, w string) bool {
	isName := func(c byte) bool {
		return c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; w != ""; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !isName(s[start-1])) && (end == len(s) || !isName(s[end])) {
			return true
		}
		i = start + 1
	}
	return false
}

var haRoleRE = regexp.MustCompile(`(?i)^(active|standby|init)$`)

// ParseHAStatus reads the local unit's role out of `show ha status`. No
// public sample of this output exists, so only lines that name the local
// unit count (the peer's line never does), and a role word on such a line
// is its state; with several HA groups, "active" wins over "standby" over
// "init" (active for at least one group). "unknown" when no line names the
// unit with a role.
func ParseHAStatus(out, unit string) string {
	best := ""
	rank := map[string]int{"active": 3, "standby": 2, "init": 1}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !containsWord(line, unit) {
			continue
		}
		for _, w := range strings.FieldsFunc(line, func(r rune) bool { return !unicode.IsLetter(r) }) {
			if haRoleRE.MatchString(w) {
				if r := strings.ToLower(w); rank[r] > rank[best] {
					best = r
				}
			}
		}
	}
	if best == "" {
		return "unknown"
	}
	return best
}

var (
	ifaceHeadRE = regexp.MustCompile(`^([A-Za-z0-9_.:-]+)\(([^)]*)\):\s*flags=`)
	ifaceStatRE = regexp.MustCompile(`^\s+status:\s*(.+?)\s*$`)
	cpuRE       = regexp.MustCompile(`(?i)CPU\s+Utilization\s+(\d+(?:\.\d+)?)\s*%`)
	notAfterRE  = regexp.MustCompile(`(?i)not\s+after\s*:\s*(.+?)\s*$`)
	realStatRE  = regexp.MustCompile(`^\s*Real service\s+("[^"]+"|\S+)\s+(\S+)\s+(\d+)\s+(.+?)\s*$`)
	virtStatRE  = regexp.MustCompile(`^\s*\w+\s+virtual service\s+"([^"]+)"\s+\((\S+)\s+(\d+)\)\s+(\S+)`)
	statKVRE    = regexp.MustCompile(`^\s+(.+?):\s+(.+?)\s*$`)
	pagerRE     = regexp.MustCompile(`[ \t]*--More--[ \t]*|\x08+`)
)

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

// ParseCPU reads the CPU utilisation ratio out of `show statistics cpu`
// ("CPU Utilization 7 %", the line jp05451/array-script's system monitor
// reads from real APVs); -1 when there is none.
func ParseCPU(out string) float64 {
	m := cpuRE.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v / 100
}

// ParseHealthServer reads the "Server Status" table of `show health
// server`: "<real name> UP|DOWN" lines between the "status" header and the
// "Health Check" section, as Array's LBaaS agent reads it
// (apv_driver.py get_all_health_status).
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

// ParseSLBStatistics reads `show statistics slb all`, the blocks
// jp05451/array-script's parseSLBStats reads from real APVs:
//
//	Real service <name> <ip> <port> <state>
//	    Current Connection Count: 3
//	    ...
//	tcp virtual service "<name>" (<ip> <port>) UP
//	    Current Connection Count: 12
//
// A service is up when its state word is UP; connections are the
// "Current Connection Count" of its block. SSH pager residue (--More--,
// backspaces) is ignored.
func ParseSLBStatistics(out string) (reals, virtuals map[string]ServiceStatus) {
	reals, virtuals = map[string]ServiceStatus{}, map[string]ServiceStatus{}
	var cur map[string]ServiceStatus
	name := ""
	sc := bufio.NewScanner(strings.NewReader(pagerRE.ReplaceAllString(out, "")))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := realStatRE.FindStringSubmatch(line); m != nil {
			cur, name = reals, strings.Trim(m[1], `"`)
			reals[name] = ServiceStatus{Up: upWord(m[4])}
			continue
		}
		if m := virtStatRE.FindStringSubmatch(line); m != nil {
			cur, name = virtuals, m[1]
			virtuals[name] = ServiceStatus{Up: upWord(m[4])}
			continue
		}
		if cur == nil {
			continue
		}
		m := statKVRE.FindStringSubmatch(line)
		if m == nil || !strings.EqualFold(m[1], "Current Connection Count") {
			continue
		}
		if n, err := strconv.ParseFloat(m[2], 64); err == nil {
			s := cur[name]
			s.Connections, s.HasConns = n, true
			cur[name] = s
		}
	}
	return reals, virtuals
}

// upWord reads a state field ("UP", "DOWN", "UP (enabled)").
func upWord(s string) bool {
	f := strings.Fields(s)
	return len(f) > 0 && strings.EqualFold(f[0], "UP")
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
// ("Not After : Dec  8 07:00:00 2026 GMT"). No public sample of `show ssl
// certificate` exists; OpenSSL's layout is the assumption (docs/apv.md).
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
