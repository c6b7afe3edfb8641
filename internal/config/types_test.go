package config

import (
	"os"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseDuration(t *testing.T) {
	const bad = "not a duration; write e.g. 90s, 10m, 24h, 30d or 1d12h"
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"0", 0, ""},
		{"0s", 0, ""},
		{"90s", 90 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"30d", 30 * Day, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"12h1d", 36 * time.Hour, ""},
		{"1.5d", 36 * time.Hour, ""},
		{"2d3h4m5s6ms", 2*Day + 3*time.Hour + 4*time.Minute + 5*time.Second + 6*time.Millisecond, ""},
		{"+1d", Day, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"1µs", time.Microsecond, ""},
		{"-1s", 0, "must not be negative"},
		{"-1d", 0, "must not be negative"},
		{"-", 0, bad},
		{"-x", 0, bad},
		{"", 0, bad},
		{"+", 0, bad},
		{"10", 0, bad},
		{"d", 0, bad},
		{"1w", 0, bad},
		{"1D", 0, bad},
		{"1d 2h", 0, bad},
		{".d", 0, bad},
		{"1..5d", 0, bad},
		{"soon", 0, bad},
		{"106752d", 0, bad}, // more than time.Duration holds
		{"106751d23h47m17s", 0, bad},
		{"106751d23h47m16s", 106751*Day + 23*time.Hour + 47*time.Minute + 16*time.Second, ""},
		{"106751d", 106751 * Day, ""},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.err {
			t.Errorf("ParseDuration(%q) = %v, %q; want %v, %q", tc.in, got, gotErr, tc.want, tc.err)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{30 * Day, "30d"},
		{36 * time.Hour, "1d12h"},
		{10 * time.Hour, "10h"},
		{90 * time.Second, "1m30s"},
		{Day + time.Second, "1d1s"},
		{1500 * time.Millisecond, "1.5s"},
		{time.Minute + 500*time.Millisecond, "1m500ms"},
		{-2 * time.Hour, "-2h"},
		{time.Duration(-1 << 63), "-2562047h47m16.854775808s"},
	} {
		got := Duration(tc.d).String()
		if got != tc.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tc.d, got, tc.want)
		}
		if tc.d >= 0 {
			back, err := ParseDuration(got)
			if err != nil || back != tc.d {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", got, back, err, tc.d)
			}
		}
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1d12h\n"), &v); err != nil || time.Duration(v.D) != 36*time.Hour {
		t.Errorf("unmarshal: %v, %v", v.D, err)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 1d12h\n" {
		t.Errorf("marshal: %q, %v", out, err)
	}
	if err := yaml.Unmarshal([]byte("d: [1]\n"), &v); err == nil {
		t.Error("a list unmarshalled as a duration")
	}
}

func TestParseFileMode(t *testing.T) {
	const notOctal = `not an octal file mode; write e.g. "0640"`
	const tooBig = "must be at most 0777 (permission bits only)"
	tests := []struct {
		in   string
		want os.FileMode
		err  string
	}{
		{"0640", 0o640, ""},
		{"640", 0o640, ""},
		{"0o640", 0o640, ""},
		{"0O600", 0o600, ""},
		{"0", 0, ""},
		{"0777", 0o777, ""},
		{"00640", 0o640, ""},
		{"01000", 0, tooBig},
		{"4755", 0, tooBig},
		{"0999", 0, notOctal},
		{"", 0, notOctal},
		{"0o", 0, notOctal},
		{"rw-r-----", 0, notOctal},
		{"-640", 0, notOctal},
		{"+640", 0, notOctal},
		{"0x1a4", 0, notOctal},
		{"77777777777777777777777", 0, notOctal},
	}
	for _, tc := range tests {
		got, err := ParseFileMode(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.err {
			t.Errorf("ParseFileMode(%q) = %o, %q; want %o, %q", tc.in, got, gotErr, tc.want, tc.err)
		}
	}
}

func TestFileModeYAML(t *testing.T) {
	// yaml.v3 itself reads an unquoted 0640 as the octal integer 416; the
	// mode is read from the text as written, so every form means 0640.
	for _, src := range []string{`m: "0640"`, `m: 0640`, `m: 640`, `m: 0o640`, `m: '640'`} {
		var v struct {
			M FileMode `yaml:"m"`
		}
		if err := yaml.Unmarshal([]byte(src), &v); err != nil || v.M != 0o640 {
			t.Errorf("%s: %v, %v", src, v.M, err)
		}
		out, err := yaml.Marshal(v)
		if err != nil || string(out) != "m: \"0640\"\n" {
			t.Errorf("%s: marshal %q, %v", src, out, err)
		}
	}
	if got := FileMode(0o7).String(); got != "0007" {
		t.Errorf("String() = %q", got)
	}
}
