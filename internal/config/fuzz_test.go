package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that what it rejects it
// rejects with Errors, and that what it accepts is fully resolved.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop-bot.secret"), []byte("fuzz-secret\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	env := fakeEnv(map[string]string{"NEWS_BOT_CHANNEL_SECRET": "news", "A": "1", "E": ""})

	for _, seed := range []string{
		string(example),
		channel0,
		"",
		"---\n",
		"channels: []\n",
		"channels: [{id: '1', kind: stateless, channel_secret: '${A}'}]\n",
		"channels: [{id: '1', kind: short-lived, channel_secret_file: shop-bot.secret, outputs: [{path: t, mode: 0640}]}]\n",
		"defaults: &d {kind: stateless, rotate_before: 1m}\nchannels: [{<<: *d, id: '1', channel_secret: s}]\n",
		"socket: {path: '', mode: '0600', allowed_uids: [0]}\nline: {timeout: 1d, max_in_flight: x}\n" + channel0,
		channel0 + "    on_rotate: [{signal: sighup, pid_file: p}, {exec: ['$${A}', '$$']}]\n",
		channel0 + "---\nx: 1\n",
		"a: &a [*a]\n",
		"{",
		"channels:\n  - id: \"1\n",
		"channels: [&c {id: '1'}, *c, *c]\n",
		"? [a]\n: b\n",
		"state_dir: !!binary aGVsbG8=\n" + channel0,
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(bytes.NewReader(data), ParseOptions{Dir: dir, LookupEnv: env})
		if err != nil {
			if cfg != nil {
				t.Fatal("a config returned with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			if len(errs) > maxErrors+1 {
				t.Fatalf("%d errors listed", len(errs))
			}
			for _, e := range errs {
				if e.Msg == "" {
					t.Fatalf("error without a message: %+v", e)
				}
			}
			return
		}
		checkResolved(t, cfg)
	})
}

// checkResolved fails t if cfg breaks what a valid config promises.
func checkResolved(t *testing.T, cfg *Config) {
	t.Helper()
	abs := func(what, p string) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Fatalf("%s %q is not a clean absolute path", what, p)
		}
	}
	abs("state_dir", cfg.StateDir)
	if cfg.Socket.Path != "" {
		abs("socket", cfg.Socket.Path)
	}
	if cfg.LINE.Timeout <= 0 || cfg.LINE.MaxInFlight < 1 || cfg.Socket.Mode > 0o777 {
		t.Fatalf("line %+v socket %+v", cfg.LINE, cfg.Socket)
	}
	if len(cfg.Channels) == 0 {
		t.Fatal("no channels")
	}
	seen := map[string]bool{}
	for _, ch := range cfg.Channels {
		if !isDigits(ch.ID) || ch.Label() == "" || seen[ch.ID] {
			t.Fatalf("channel id %q label %q", ch.ID, ch.Label())
		}
		seen[ch.ID] = true
		rule, ok := kindRules[ch.Kind]
		switch {
		case !ok:
			t.Fatalf("kind %q", ch.Kind)
		case ch.RotateBefore <= 0 || ch.RotateBefore >= ch.TokenTTL || ch.TokenTTL > maxTokenTTL:
			t.Fatalf("ttl %v rotate_before %v", ch.TokenTTL, ch.RotateBefore)
		case ch.RevokeAfter < 0 || ch.RevokeAfter >= ch.TokenTTL || !rule.revocable && ch.RevokeAfter != 0:
			t.Fatalf("revoke_after %v", ch.RevokeAfter)
		case !(ch.Jitter >= 0 && ch.Jitter < 1) || ch.ReconcileEvery < minReconcile:
			t.Fatalf("jitter %v reconcile_every %v", ch.Jitter, ch.ReconcileEvery)
		case ch.Kind != KindShortLived && ch.ChannelSecret == "" && (ch.KeyID == "" || ch.PrivateKeyFile == ""):
			t.Fatalf("kind %s without credentials", ch.Kind)
		}
		if ch.PrivateKeyFile != "" {
			abs("private_key_file", ch.PrivateKeyFile)
		}
		for _, o := range ch.Outputs {
			abs("output", o.Path)
			if o.Mode > 0o777 || !strings.Contains("raw json env", o.Format) || o.Format == "" {
				t.Fatalf("output %+v", o)
			}
		}
		for _, h := range ch.OnRotate {
			if (len(h.Exec) == 0) == (h.Signal == "") || h.Timeout <= 0 || (h.Signal != "") != (h.PIDFile != "") {
				t.Fatalf("hook %+v", h)
			}
		}
	}
}
