package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kind is a channel's token kind, as written in the `kind` key.
type Kind string

// The token kinds LINE issues.
const (
	KindV21        Kind = "v2.1"        // JWT assertion, user-set expiry up to 30 days, 30 per channel
	KindStateless  Kind = "stateless"   // 15 minutes, unlimited, cannot be revoked
	KindShortLived Kind = "short-lived" // channel secret, 30 days, 30 per channel
)

// Duration is a time.Duration written as Go syntax plus a `d` (24h) unit:
// "30d", "1d12h", "90s", "1h30m".
type Duration time.Duration

// Day is the `d` unit of Duration.
const Day = 24 * time.Hour

// String formats d the way the config writes it: "30d", "1d12h", "1m30s".
func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0s"
	}
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
		if v == math.MinInt64 {
			return time.Duration(v).String()
		}
		v = -v
	}
	for _, u := range []struct {
		size time.Duration
		name string
	}{{Day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}} {
		if n := v / u.size; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			v -= n * u.size
		}
	}
	switch {
	case v == 0:
	case v%time.Second == 0:
		b.WriteString(strconv.FormatInt(int64(v/time.Second), 10))
		b.WriteByte('s')
	default:
		b.WriteString(v.String()) // "1.5s", "250ms"
	}
	return b.String()
}

// errNegative is the message for a negative duration.
var errNegative = errors.New("must not be negative")

// ParseDuration parses a duration in Go syntax plus a `d` (24h) unit, e.g.
// "30d", "1d12h", "90s". Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	bad := errors.New("not a duration; write e.g. 90s, 10m, 24h, 30d or 1d12h")
	if s == "" {
		return 0, bad
	}
	if s[0] == '-' {
		if _, err := ParseDuration(s[1:]); err == nil {
			return 0, errNegative
		}
		return 0, bad
	}
	rest := strings.TrimPrefix(s, "+")
	if rest == "0" {
		return 0, nil
	}
	if rest == "" {
		return 0, bad
	}
	var total time.Duration
	for rest != "" {
		// One component: a decimal number and a unit.
		i := 0
		for i < len(rest) && (rest[i] == '.' || rest[i] >= '0' && rest[i] <= '9') {
			i++
		}
		j := i
		for j < len(rest) && rest[j] != '.' && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		if num == "" || unit == "" {
			return 0, bad
		}
		var part time.Duration
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f*float64(Day) >= math.MaxInt64 {
				return 0, bad
			}
			part = time.Duration(f * float64(Day))
		} else {
			p, err := time.ParseDuration(rest[:j])
			if err != nil {
				return 0, bad
			}
			part = p
		}
		if total > math.MaxInt64-part {
			return 0, bad
		}
		total += part
		rest = rest[j:]
	}
	return total, nil
}

// UnmarshalYAML reads a duration such as "30d" or "90s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a duration such as 90s, 24h or 30d")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in the form String gives.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// FileMode is a permission mode written in octal: "0640" (or 0640, 640,
// "0o640"); the digits are always read as octal, as chmod reads them.
type FileMode os.FileMode

// String formats the mode as four octal digits: "0640".
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// ParseFileMode parses an octal permission mode no greater than 0777.
func ParseFileMode(s string) (os.FileMode, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil {
		return 0, errors.New(`not an octal file mode; write e.g. "0640"`)
	}
	if v > 0o777 {
		return 0, errors.New("must be at most 0777 (permission bits only)")
	}
	return os.FileMode(v), nil
}

// UnmarshalYAML reads an octal mode from a string ("0640") or an integer
// (0640, which YAML itself would read as octal, or 640).
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New(`must be an octal file mode such as "0640"`)
	}
	v, err := ParseFileMode(n.Value)
	if err != nil {
		return err
	}
	*m = FileMode(v)
	return nil
}

// MarshalYAML writes the mode as a quoted octal string.
func (m FileMode) MarshalYAML() (any, error) { return m.String(), nil }

// Secret is a string that never prints: String, GoString, Format, the YAML,
// JSON and text encodings and slog all give "<redacted>". Convert it with
// string(s) only where the value is sent to LINE.
type Secret string

const redacted = "<redacted>"

// String returns "<redacted>".
func (Secret) String() string { return redacted }

// GoString returns "<redacted>", so %#v does not print the secret.
func (Secret) GoString() string { return redacted }

// Format writes "<redacted>" for every verb (%d and %x included).
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalYAML returns "<redacted>".
func (Secret) MarshalYAML() (any, error) { return redacted, nil }

// MarshalJSON returns "<redacted>" as a JSON string.
func (Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalText returns "<redacted>".
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue returns "<redacted>" for log/slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
