package apv

import (
	"fmt"
	"regexp"
	"strings"
)

// Limits on what may reach an ArrayOS command line.
const (
	// OwnerPrefix starts the name of every object the agent creates. Objects
	// without it are never changed or deleted.
	OwnerPrefix = "ea_"
	// MaxObjectNameLen bounds the names the agent gives device objects.
	// Array's LBaaS agent names reals, groups and virtual services after
	// 36-character OpenStack UUIDs, so 36 is a length real devices are known
	// to accept; derived names are built to fit it.
	MaxObjectNameLen = 36
	// MaxSourceNameLen bounds the vsName / group names taken from the
	// desired state (the LBRoute contract, translate.MaxAPVNameLen).
	MaxSourceNameLen = 63
	// maxPathLen bounds an HTTP health-check path.
	maxPathLen = 255
)

var (
	// sourceNameRE is the LBRoute contract for vsName and group; the apv
	// package checks it again on its own, so a value that slipped past
	// translation never reaches a device.
	sourceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// pathRE admits an absolute URL path without quotes, backslashes,
	// blanks or control characters (it is sent inside double quotes), and
	// without ';' and '$' (see checkLine).
	pathRE  = regexp.MustCompile(`^/[A-Za-z0-9._~!&()*+,=:@%/?-]*$`)
	codesRE = regexp.MustCompile(`^[0-9]{3}(-[0-9]{3})?(,[0-9]{3}(-[0-9]{3})?)*$`)
)

// checkSourceName validates a name from the desired state (vsName, group).
func checkSourceName(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: must be set", field)
	case len(s) > MaxSourceNameLen:
		return fmt.Errorf("%s: must be at most %d characters, got %d", field, MaxSourceNameLen, len(s))
	case !sourceNameRE.MatchString(s):
		return fmt.Errorf("%s: %q may contain only letters, digits, '_', '.', '-' and must start with a letter or digit", field, printable(s))
	}
	return nil
}

// checkObjectName validates a device object name before it is quoted into a
// command line.
func checkObjectName(s string) error {
	if len(s) == 0 || len(s) > MaxObjectNameLen || !objectNameChars(s) {
		return fmt.Errorf("object name %q is not 1-%d characters of [A-Za-z0-9_.-]", printable(s), MaxObjectNameLen)
	}
	return nil
}

// checkLine is the last guard before a line goes on the wire: whatever built
// it, a line that could end the command early, start a second one or
// unbalance a quoted argument is refused. cli_extend runs every line of a
// multi-line "cmd" (Array's own driver answers confirmation prompts that
// way), so a newline inside a value would be a second command; the same
// driver joins two commands in one "cmd" with "; " (adc_device.py
// create_policy) and wraps arguments in "$$…$$" where it cannot send
// quotes (create_health_monitor), so ';' and '$' are command syntax too and
// never travel inside a value.
func checkLine(line string) error {
	if line == "" {
		return fmt.Errorf("empty command")
	}
	for _, r := range line {
		switch {
		case r < 0x20 || r == 0x7f || r == '\\' || r == '`':
			return fmt.Errorf("command %q contains a control character or escape", printable(line))
		case r == ';' || r == '$':
			return fmt.Errorf("command %q contains %q, which the ArrayOS CLI reads as command syntax", printable(line), r)
		}
	}
	if strings.Count(line, `"`)%2 != 0 {
		return fmt.Errorf("command %q has unbalanced quotes", printable(line))
	}
	return nil
}

// q quotes an object name the way `show` prints it back.
func q(name string) string { return `"` + name + `"` }

// printable escapes control characters so an error message stays one line.
func printable(s string) string {
	return strings.Trim(fmt.Sprintf("%q", s), `"`)
}

// tokenize splits an ArrayOS configuration line into fields; a double-quoted
// field may hold blanks and loses its quotes.
func tokenize(line string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQ = !inQ
			have = true
		case (r == ' ' || r == '\t') && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// objectNameChars reports whether s is [A-Za-z0-9_][A-Za-z0-9_.-]* (a loop,
// not a regexp: it runs for every real of every render).
func objectNameChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
