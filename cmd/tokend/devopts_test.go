package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/config"
)

// TestDevFlagsAgreeWithConfig guards dev's own lifetime checks against
// drifting from internal/config's: for each combination of values, dev
// refuses the flags exactly when the config it would write is refused.
func TestDevFlagsAgreeWithConfig(t *testing.T) {
	dir := t.TempDir()
	for _, ch := range devChannels {
		if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "secrets", ch.Name), []byte("s3cr3t"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ttls := []time.Duration{0, time.Second, 59 * time.Second, time.Minute, 61*time.Second + 500*time.Millisecond,
		2 * time.Minute, 30 * config.Day, 30*config.Day + time.Second, 31 * config.Day}
	others := []time.Duration{0, time.Millisecond, time.Second, 59 * time.Second, time.Minute, 2 * time.Minute,
		30 * config.Day, 31 * config.Day}
	n := 0
	for _, ttl := range ttls {
		for _, rb := range others {
			for _, ra := range others {
				o := devFlags{ttl: devDuration{d: ttl}, rotateBefore: devDuration{d: rb}, revokeAfter: devDuration{d: ra}}
				flagErr := o.check()
				var buf bytes.Buffer
				data := devConfigData{Dir: dir, BaseURL: "http://127.0.0.1:1", Socket: filepath.Join(dir, "tokend.sock"), Jitter: devJitter,
					TTL: config.Duration(ttl), RotateBefore: config.Duration(rb), RevokeAfter: config.Duration(ra)}
				for _, ch := range devChannels {
					data.Channels = append(data.Channels, devChannel{ch.ID, ch.Name, "kid"})
				}
				if err := devConfig.Execute(&buf, data); err != nil {
					t.Fatal(err)
				}
				_, cfgErr := config.Parse(&buf, config.ParseOptions{Dir: dir, LookupEnv: func(string) (string, bool) { return "", false }})
				if (flagErr == nil) != (cfgErr == nil) {
					t.Errorf("-token-ttl %s -rotate-before %s -revoke-after %s: dev says %v; the config says %v",
						config.Duration(ttl), config.Duration(rb), config.Duration(ra), flagErr, cfgErr)
				}
				n++
			}
		}
	}
	t.Logf("%d combinations agree", n)
}

// TestDevDurationFlag: the lifetime flags take the config's syntax, d
// included, and refuse negative values.
func TestDevDurationFlag(t *testing.T) {
	for s, want := range map[string]time.Duration{"30d": 30 * config.Day, "1d12h": 36 * time.Hour, "90s": 90 * time.Second, "2m0s": 2 * time.Minute} {
		var v devDuration
		if err := v.Set(s); err != nil || v.d != want || v.String() != s {
			t.Errorf("Set(%q): %v, %v, String %q", s, v.d, err, v.String())
		}
	}
	for _, s := range []string{"-1s", "", "10", "1x", "--5s"} {
		var v devDuration
		if err := v.Set(s); err == nil {
			t.Errorf("Set(%q) = %v, want an error", s, v.d)
		}
	}
	if got := (&devDuration{d: 2 * time.Minute}).String(); got != "2m" {
		t.Errorf("default String = %q, want 2m", got)
	}
}
