package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// fakeEnv is a LookupEnv over a map, so tests never read the real environment.
func fakeEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// parseYAML parses src as if it were /etc/tokend/config.yaml.
func parseYAML(src string, env map[string]string) (*Config, error) {
	return Parse(strings.NewReader(src), ParseOptions{Dir: "/etc/tokend", LookupEnv: fakeEnv(env)})
}

// channel0 is a valid v2.1 channel, to append keys to.
const channel0 = `
channels:
  - id: "1000"
    key_id: kid-1
    private_key_file: /k/1.jwk
    channel_secret: s3cret-value
`

func mustParse(t *testing.T, src string, env map[string]string) *Config {
	t.Helper()
	cfg, err := parseYAML(src, env)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return cfg
}

func TestExampleConfig(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "shop-bot.secret"), []byte("shop-secret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := Parse(f, ParseOptions{Dir: "/etc/tokend", LookupEnv: fakeEnv(map[string]string{
		"CREDENTIALS_DIRECTORY":   creds,
		"NEWS_BOT_CHANNEL_SECRET": "news-secret",
	})})
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	want := &Config{
		StateDir: "/var/lib/tokend",
		Log:      Log{Level: "info", Format: "json"},
		LINE:     LINE{BaseURL: "https://api.line.me", Timeout: 10 * time.Second, MaxInFlight: 16},
		Socket:   Socket{Path: "/run/tokend/tokend.sock", Mode: 0o660, AllowedUIDs: []int{}},
		Channels: []Channel{{
			ID: "1657000000", Name: "shop-bot", Kind: KindV21,
			KeyID:          "536e453c-aa93-4449-8e90-add2608783c6",
			PrivateKeyFile: "/etc/tokend/keys/shop-bot.jwk",
			ChannelSecret:  "shop-secret",
			TokenTTL:       30 * Day, RotateBefore: 7 * Day, RevokeAfter: 24 * time.Hour,
			Jitter: 0.1, ReconcileEvery: time.Hour,
			Outputs: []Output{
				{Path: "/shared/tokens/shop-bot.token", Format: "raw", Mode: 0o640},
				{Path: "/shared/tokens/shop-bot.json", Format: "json", Mode: 0o600},
			},
			OnRotate: []Hook{
				{Exec: []string{"/usr/bin/systemctl", "reload", "shop-bot.service"}, Timeout: 30 * time.Second},
				{Signal: "HUP", PIDFile: "/run/shop-bot.pid", Timeout: 30 * time.Second},
			},
		}, {
			ID: "1657000001", Name: "news-bot", Kind: KindShortLived,
			ChannelSecret: "news-secret",
			TokenTTL:      30 * Day, RotateBefore: 10 * Day, RevokeAfter: time.Hour,
			Jitter: 0.1, ReconcileEvery: time.Hour,
			Outputs: []Output{{Path: "/shared/tokens/news-bot.env", Format: "env", Mode: 0o600}},
			OnRotate: []Hook{{
				Exec:    []string{"/bin/sh", "-c", "kill -HUP $(cat /run/news-bot.pid)"},
				Timeout: 30 * time.Second,
			}},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config.example.yaml:\n got %#v\nwant %#v", cfg, want)
	}
	// Secret does not print, even in a %#v diff: compare it by hand.
	for i, s := range []string{"shop-secret", "news-secret"} {
		if got := string(cfg.Channels[i].ChannelSecret); got != s {
			t.Errorf("channels[%d] secret wrong (len %d, want len %d)", i, len(got), len(s))
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, channel0, nil)
	want := &Config{
		StateDir: "/var/lib/tokend",
		Log:      Log{Level: "info", Format: "json"},
		LINE:     LINE{BaseURL: "https://api.line.me", Timeout: 10 * time.Second, MaxInFlight: 16},
		Socket:   Socket{Path: "/run/tokend/tokend.sock", Mode: 0o660, AllowedUIDs: []int{}},
		Channels: []Channel{{
			ID: "1000", KeyID: "kid-1", PrivateKeyFile: "/k/1.jwk", ChannelSecret: "s3cret-value",
			Kind: KindV21, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour,
			ReconcileEvery: time.Hour, Jitter: 0.1,
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	if got := cfg.Channels[0].Label(); got != "1000" {
		t.Errorf("Label() = %q, want the id", got)
	}

	// systemd's directories, when set, replace the built-in paths.
	cfg = mustParse(t, channel0, map[string]string{
		"STATE_DIRECTORY":   "/var/lib/tokend-a:/var/lib/other",
		"RUNTIME_DIRECTORY": "/run/tokend-a",
	})
	if cfg.StateDir != "/var/lib/tokend-a" || cfg.Socket.Path != "/run/tokend-a/tokend.sock" {
		t.Errorf("with systemd dirs: state_dir %q, socket %q", cfg.StateDir, cfg.Socket.Path)
	}

	// The socket: absent or null is the default, "" disables it, relative
	// paths are relative to the config's directory.
	for _, tc := range []struct{ socket, want string }{
		{"socket: {}", "/run/tokend/tokend.sock"},
		{"socket: {path: }", "/run/tokend/tokend.sock"},
		{"socket: {path: ~}", "/run/tokend/tokend.sock"},
		{`socket: {path: ""}`, ""},
		{`socket: {path: "${EMPTY}"}`, ""},
		{"socket: {path: run/t.sock}", "/etc/tokend/run/t.sock"},
		{"socket: {path: /x/../y/t.sock}", "/y/t.sock"},
	} {
		cfg := mustParse(t, tc.socket+channel0, map[string]string{"EMPTY": ""})
		if cfg.Socket.Path != tc.want {
			t.Errorf("%s: socket path %q, want %q", tc.socket, cfg.Socket.Path, tc.want)
		}
	}
}

func TestEveryTopLevelKey(t *testing.T) {
	cfg := mustParse(t, `
state_dir: /srv/tokend/
log: {level: debug, format: console}
line: {base_url: "http://127.0.0.1:8080", timeout: 1m30s, max_in_flight: 1024}
socket: {path: /run/t.sock, mode: 0600, allowed_uids: [0, 1000]}
metrics_listen: "127.0.0.1:9090"
`+channel0, nil)
	want := Config{
		StateDir: "/srv/tokend",
		Log:      Log{Level: "debug", Format: "console"},
		LINE:     LINE{BaseURL: "http://127.0.0.1:8080", Timeout: 90 * time.Second, MaxInFlight: 1024},
		Socket:   Socket{Path: "/run/t.sock", Mode: 0o600, AllowedUIDs: []int{0, 1000}},

		MetricsListen: "127.0.0.1:9090",
	}
	cfg.Channels = nil
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got  %+v\nwant %+v", *cfg, want)
	}
}

func TestDefaultsResolution(t *testing.T) {
	const keyed = `key_id: k, private_key_file: /k, channel_secret: s`
	tests := []struct {
		name     string
		defaults string
		channel  string
		want     Channel // only the resolved fields are compared
	}{
		{"v2.1 kind defaults", "", `{id: "1", ` + keyed + `}`,
			Channel{Kind: KindV21, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"short-lived kind defaults", "", `{id: "1", kind: short-lived, channel_secret: s}`,
			Channel{Kind: KindShortLived, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"stateless kind defaults", "", `{id: "1", kind: stateless, channel_secret: s}`,
			Channel{Kind: KindStateless, TokenTTL: 15 * time.Minute, RotateBefore: 5 * time.Minute, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"defaults block over kind",
			`{token_ttl: 20d, rotate_before: 5d, revoke_after: 2h, jitter: 0.2, reconcile_every: 30m}`,
			`{id: "1", ` + keyed + `}`,
			Channel{Kind: KindV21, TokenTTL: 20 * Day, RotateBefore: 5 * Day, RevokeAfter: 2 * time.Hour, Jitter: 0.2, ReconcileEvery: 30 * time.Minute}},
		{"channel over defaults block",
			`{token_ttl: 20d, rotate_before: 5d, revoke_after: 2h, jitter: 0.2, reconcile_every: 30m}`,
			`{id: "1", ` + keyed + `, token_ttl: 1d12h, rotate_before: 12h, revoke_after: 90s, jitter: 0, reconcile_every: 1m}`,
			Channel{Kind: KindV21, TokenTTL: 36 * time.Hour, RotateBefore: 12 * time.Hour, RevokeAfter: 90 * time.Second, Jitter: 0, ReconcileEvery: time.Minute}},
		{"kind from defaults block", `{kind: short-lived}`, `{id: "1", channel_secret: s}`,
			Channel{Kind: KindShortLived, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"channel kind over defaults block", `{kind: short-lived}`, `{id: "1", kind: v2.1, ` + keyed + `}`,
			Channel{Kind: KindV21, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"fixed token_ttl ignores the defaults block", `{token_ttl: 20d}`, `{id: "1", kind: short-lived, channel_secret: s}`,
			Channel{Kind: KindShortLived, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"stateless ignores defaults revoke_after", `{revoke_after: 1h, rotate_before: 2m}`, `{id: "1", kind: stateless, channel_secret: s}`,
			Channel{Kind: KindStateless, TokenTTL: 15 * time.Minute, RotateBefore: 2 * time.Minute, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"stateless may restate LINE's values", "", `{id: "1", kind: stateless, channel_secret: s, token_ttl: 15m}`,
			Channel{Kind: KindStateless, TokenTTL: 15 * time.Minute, RotateBefore: 5 * time.Minute, Jitter: 0.1, ReconcileEvery: time.Hour}},
		{"short-lived may restate LINE's values", "", `{id: "1", kind: short-lived, channel_secret: s, token_ttl: 720h}`,
			Channel{Kind: KindShortLived, TokenTTL: 30 * Day, RotateBefore: 10 * Day, RevokeAfter: 24 * time.Hour, Jitter: 0.1, ReconcileEvery: time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "channels: [" + tc.channel + "]\n"
			if tc.defaults != "" {
				src = "defaults: " + tc.defaults + "\n" + src
			}
			ch := mustParse(t, src, nil).Channels[0]
			got := Channel{Kind: ch.Kind, TokenTTL: ch.TokenTTL, RotateBefore: ch.RotateBefore, RevokeAfter: ch.RevokeAfter,
				Jitter: ch.Jitter, ReconcileEvery: ch.ReconcileEvery}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	cfg := mustParse(t, `
channels:
  - id: 1657000000
    name: a.b_c-1
    key_id: kid
    private_key_file: keys/a.jwk
    channel_secret: s
    outputs:
      - {path: tokens/a.token}
      - {path: /abs/../abs2/a.json, format: json, mode: 640}
      - {path: a.env, format: env, mode: "0o644"}
    on_rotate:
      - {signal: sighup, pid_file: run/a.pid}
      - {signal: SIGUSR1, pid_file: /run/b.pid, timeout: 2s}
      - {signal: Usr2, pid_file: /run/c.pid}
      - {exec: [reload-bot, --fast]}
      - {exec: [hooks/reload.sh, ./x]}
      - {exec: [./reload.sh]}
`, nil)
	ch := cfg.Channels[0]
	if ch.ID != "1657000000" || ch.Label() != "a.b_c-1" {
		t.Errorf("id %q label %q", ch.ID, ch.Label())
	}
	if ch.PrivateKeyFile != "/etc/tokend/keys/a.jwk" {
		t.Errorf("private_key_file %q", ch.PrivateKeyFile)
	}
	wantOut := []Output{
		{Path: "/etc/tokend/tokens/a.token", Format: "raw", Mode: 0o600},
		{Path: "/abs2/a.json", Format: "json", Mode: 0o640},
		{Path: "/etc/tokend/a.env", Format: "env", Mode: 0o644},
	}
	if !reflect.DeepEqual(ch.Outputs, wantOut) {
		t.Errorf("outputs %+v", ch.Outputs)
	}
	wantHooks := []Hook{
		{Signal: "HUP", PIDFile: "/etc/tokend/run/a.pid", Timeout: 30 * time.Second},
		{Signal: "USR1", PIDFile: "/run/b.pid", Timeout: 2 * time.Second},
		{Signal: "USR2", PIDFile: "/run/c.pid", Timeout: 30 * time.Second},
		{Exec: []string{"reload-bot", "--fast"}, Timeout: 30 * time.Second},
		{Exec: []string{"/etc/tokend/hooks/reload.sh", "./x"}, Timeout: 30 * time.Second}, // only the program is a path of tokend's
		{Exec: []string{"/etc/tokend/reload.sh"}, Timeout: 30 * time.Second},
	}
	if !reflect.DeepEqual(ch.OnRotate, wantHooks) {
		t.Errorf("hooks %+v", ch.OnRotate)
	}
}

func TestValidationErrors(t *testing.T) {
	// Each case is a whole file; want is the whole error text.
	const v21 = `key_id: k, private_key_file: /k, channel_secret: s`
	tests := []struct {
		name, src, want string
	}{
		// The file as a whole.
		{"empty file", ``,
			`channels: no channels configured; add one (see config.example.yaml)`},
		{"comments only", "# nothing\n",
			`channels: no channels configured; add one (see config.example.yaml)`},
		{"empty channel list", "channels: []\n",
			`channels: no channels configured; add one (see config.example.yaml)`},
		{"null channels", "channels:\n",
			`channels: no channels configured; add one (see config.example.yaml)`},
		{"root is a list", "- a\n- b\n",
			`line 1: must be a mapping of keys, not a list`},
		{"root is a scalar", "hello\n",
			`line 1: "hello": must be a mapping of keys, not a single value`},
		{"second document", channel0 + "---\nstate_dir: /x\n",
			`line 8: a second YAML document starts here; keep the whole config in one document`},
		{"syntax error", "channels:\n  - id: \"1\n",
			`line 2: invalid YAML: found unexpected end of stream`},
		{"tab indentation", "log:\n\tlevel: info\n",
			`line 2: invalid YAML: found character that cannot start any token`},
		{"control character", "state_dir: /a\x01\n" + channel0,
			`invalid YAML: control characters are not allowed`},
		{"document after a channel list", "channels: []\n--- !!map\n",
			`line 2: a second YAML document starts here; keep the whole config in one document`},
		{"duplicate key", "state_dir: /a\nstate_dir: /b\n" + channel0,
			`state_dir: key is set twice (first on line 1); keep one`},

		// Top-level sections.
		{"state_dir relative", "state_dir: var/lib/tokend\n" + channel0,
			`state_dir: "var/lib/tokend": must be an absolute path`},
		{"state_dir empty", "state_dir: ''\n" + channel0,
			`state_dir: must not be empty; leave the key out for the default ($STATE_DIRECTORY, else /var/lib/tokend)`},
		{"log level and format", "log: {level: verbose, format: text}\n" + channel0,
			"log.level: \"verbose\": must be debug, info, warn or error\nlog.format: \"text\": must be json or console"},
		{"base_url scheme", "line: {base_url: 'ftp://api.line.me'}\n" + channel0,
			`line.base_url: "ftp://api.line.me": must be an http:// or https:// URL with a host and no query, e.g. https://api.line.me`},
		{"base_url host", "line: {base_url: 'https://'}\n" + channel0,
			`line.base_url: "https://": must be an http:// or https:// URL with a host and no query, e.g. https://api.line.me`},
		{"timeout zero", "line: {timeout: 0s}\n" + channel0,
			`line.timeout: "0s": must be greater than 0 and at most 5m`},
		{"timeout too long", "line: {timeout: 301s}\n" + channel0,
			`line.timeout: "5m1s": must be greater than 0 and at most 5m`},
		{"timeout negative", "line: {timeout: -1s}\n" + channel0,
			`line.timeout: "-1s": must not be negative`},
		{"timeout garbage", "line: {timeout: soon}\n" + channel0,
			`line.timeout: "soon": not a duration; write e.g. 90s, 10m, 24h, 30d or 1d12h`},
		{"timeout without unit", "line: {timeout: 10}\n" + channel0,
			`line.timeout: "10": not a duration; write e.g. 90s, 10m, 24h, 30d or 1d12h`},
		{"max_in_flight range", "line: {max_in_flight: 0}\n" + channel0,
			`line.max_in_flight: "0": must be between 1 and 1024`},
		{"max_in_flight too big", "line: {max_in_flight: 1025}\n" + channel0,
			`line.max_in_flight: "1025": must be between 1 and 1024`},
		{"max_in_flight not a number", "line: {max_in_flight: many}\n" + channel0,
			`line.max_in_flight: "many": must be a whole number`},
		{"max_in_flight fraction", "line: {max_in_flight: 1.5}\n" + channel0,
			`line.max_in_flight: "1.5": must be a whole number`},
		{"socket mode not octal", "socket: {mode: '0999'}\n" + channel0,
			`socket.mode: "0999": not an octal file mode; write e.g. "0640"`},
		{"socket mode too big", "socket: {mode: 01777}\n" + channel0,
			`socket.mode: "01777": must be at most 0777 (permission bits only)`},
		{"socket mode list", "socket: {mode: [6, 6, 0]}\n" + channel0,
			`socket.mode: must be an octal file mode such as "0640", not a list`},
		{"allowed_uids negative", "socket: {allowed_uids: [1000, -1, 4294967295]}\n" + channel0,
			"socket.allowed_uids[1]: \"-1\": must be a user ID between 0 and 4294967294\n" +
				"socket.allowed_uids[2]: \"4294967295\": must be a user ID between 0 and 4294967294"},
		{"socket path too long", "socket: {path: /" + strings.Repeat("s", 107) + "}\n" + channel0,
			`socket.path: "/` + strings.Repeat("s", 107) + `": is 108 bytes long; a Unix socket path can have at most 107: choose a shorter one`},
		{"state_dir NUL", "state_dir: \"/a\\0b\"\n" + channel0,
			`state_dir: "/a\x00b": must not contain a NUL byte`},
		{"output path NUL", "channels: [{id: '1', " + v21 + ", outputs: [{path: \"/a\\0b\"}]}]\n",
			`channels[0].outputs[0].path: "/a\x00b": must not contain a NUL byte`},
		{"timeout a list", "line: {timeout: [1s]}\n" + channel0,
			`line.timeout: must be a duration such as 90s, 24h or 30d, not a list`},
		{"socket path a directory", "socket: {path: /run/}\n" + channel0,
			`socket.path: "/run/": must name a file, not a directory`},
		{"metrics_listen no port", "metrics_listen: '9090'\n" + channel0,
			`metrics_listen: "9090": must be host:port with a numeric port, e.g. "127.0.0.1:9090" or ":9090"; leave it out to serve no metrics over TCP`},
		{"metrics_listen not an IP", "metrics_listen: '256.1.1.1:80'\n" + channel0,
			`metrics_listen: "256.1.1.1:80": host "256.1.1.1" is not an IP address`},
		{"metrics_listen named port", "metrics_listen: 'localhost:http'\n" + channel0,
			`metrics_listen: "localhost:http": must be host:port with a numeric port, e.g. "127.0.0.1:9090" or ":9090"; leave it out to serve no metrics over TCP`},

		// The defaults block, reported once however many channels inherit.
		{"defaults ranges", `
defaults: {kind: v3, token_ttl: 31d, rotate_before: 0s, jitter: 1, reconcile_every: 30s}
channels: [{id: "1", ` + v21 + `}, {id: "2", ` + v21 + `}]
`,
			"defaults.kind: \"v3\": must be v2.1, stateless or short-lived\n" +
				"defaults.token_ttl: \"31d\": must be between 1m and 30d (LINE's limit for v2.1 tokens)\n" +
				"defaults.rotate_before: \"0s\": must be greater than 0\n" +
				"defaults.jitter: \"1\": must be at least 0 and less than 1 (a fraction of rotate_before)\n" +
				"defaults.reconcile_every: \"30s\": must be at least 1m"},
		{"defaults token_ttl fraction", "defaults: {token_ttl: 1m500ms}\n" + channel0,
			`defaults.token_ttl: "1m500ms": must be a whole number of seconds`},
		{"defaults jitter negative", "defaults: {jitter: -0.1}\n" + channel0,
			`defaults.jitter: "-0.1": must be at least 0 and less than 1 (a fraction of rotate_before)`},
		{"defaults jitter NaN", "defaults: {jitter: NaN}\n" + channel0,
			`defaults.jitter: "NaN": must be at least 0 and less than 1 (a fraction of rotate_before)`},

		// Channel identity.
		{"id missing", "channels: [{" + v21 + "}]\n",
			`channels[0].id: required: the channel ID shown in the LINE Developers Console`},
		{"id not digits", "channels: [{id: '12a', " + v21 + "}]\n",
			`channels[0].id: "12a": must be the numeric channel ID shown in the LINE Developers Console`},
		{"id duplicate", "channels: [{id: '1', " + v21 + "}, {id: 1, " + v21 + "}]\n",
			`channels[1].id: "1": duplicate of channels[0].id`},
		{"name bad", "channels: [{id: '1', name: 'shop/bot', " + v21 + "}, {id: '2', name: '..', " + v21 + "}, {id: '3', name: '-x', " + v21 + "}]\n",
			"channels[0].name: \"shop/bot\": must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit\n" +
				"channels[1].name: \"..\": must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit\n" +
				"channels[2].name: \"-x\": must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
		{"name too long", "channels: [{id: '1', name: " + strings.Repeat("n", 65) + ", " + v21 + "}]\n",
			`channels[0].name: "` + strings.Repeat("n", 65) + `": must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"name duplicate", "channels: [{id: '1', name: bot, " + v21 + "}, {id: '2', name: bot, " + v21 + "}]\n",
			`channels[1].name: "bot": already used by channels[0].name`},
		{"name is another id", "channels: [{id: '1', name: '2', " + v21 + "}, {id: '2', " + v21 + "}]\n",
			`channels[0].name: "2": is the id of channels[1]; names and ids must not collide`},
		{"kind unknown", "channels: [{id: '1', kind: v2, " + v21 + "}]\n",
			`channels[0].kind: "v2": must be v2.1, stateless or short-lived`},
		{"kind as a number", "channels: [{id: '1', kind: 2.1, " + v21 + "}]\n",
			`channels[0].kind: "2.1": must be v2.1, stateless or short-lived`},

		// Credentials by kind.
		{"v2.1 needs key and secret", "channels: [{id: '1'}]\n",
			"channels[0].key_id: required for kind v2.1: the key ID the LINE Developers Console showed when you registered the public key\n" +
				"channels[0].private_key_file: required for kind v2.1: the private key (JWK or PEM) that signs assertions; `tokend keygen` makes one\n" +
				"channels[0].channel_secret: required for kind v2.1 (set channel_secret or channel_secret_file): revoking superseded tokens needs the channel secret"},
		{"short-lived needs secret, not key", "channels: [{id: '1', kind: short-lived, key_id: k, private_key_file: /k}]\n",
			"channels[0].key_id: \"k\": not used by kind short-lived, whose tokens LINE issues for the channel secret; leave it out\n" +
				"channels[0].private_key_file: \"/k\": not used by kind short-lived, whose tokens LINE issues for the channel secret; leave it out\n" +
				"channels[0].channel_secret: required for kind short-lived (set channel_secret or channel_secret_file): LINE issues these tokens for the channel secret"},
		{"stateless needs key or secret", "channels: [{id: '1', kind: stateless}]\n",
			`channels[0]: kind stateless needs key_id and private_key_file, or channel_secret (or channel_secret_file)`},
		{"stateless key_id alone", "channels: [{id: '1', kind: stateless, key_id: k, channel_secret: s}]\n",
			`channels[0].private_key_file: required with key_id: the private key (JWK or PEM) that signs assertions`},
		{"stateless private_key_file alone", "channels: [{id: '1', kind: stateless, private_key_file: /k}]\n",
			`channels[0].key_id: required with private_key_file: the key ID the LINE Developers Console showed when you registered the public key`},
		{"both secrets", "channels: [{id: '1', key_id: k, private_key_file: /k, channel_secret: s, channel_secret_file: /s}]\n",
			`channels[0]: set only one of channel_secret or channel_secret_file`},
		{"private_key_file a directory", "channels: [{id: '1', key_id: k, private_key_file: /keys/, channel_secret: s}]\n",
			`channels[0].private_key_file: "/keys/": must name a file, not a directory`},

		// Lifetimes.
		{"v2.1 token_ttl too long", "channels: [{id: '1', token_ttl: 31d, " + v21 + "}]\n",
			`channels[0].token_ttl: "31d": must be between 1m and 30d (LINE's limit for v2.1 tokens)`},
		{"v2.1 token_ttl too short", "channels: [{id: '1', token_ttl: 59s, rotate_before: 1s, revoke_after: 1s, " + v21 + "}]\n",
			`channels[0].token_ttl: "59s": must be between 1m and 30d (LINE's limit for v2.1 tokens)`},
		{"v2.1 token_ttl fraction", "channels: [{id: '1', token_ttl: 1h0.5s, rotate_before: 1s, revoke_after: 1s, " + v21 + "}]\n",
			`channels[0].token_ttl: "1h500ms": must be a whole number of seconds`},
		{"short-lived token_ttl fixed", "channels: [{id: '1', kind: short-lived, token_ttl: 20d, channel_secret: s}]\n",
			`channels[0].token_ttl: "20d": LINE fixes short-lived tokens at 30d; leave token_ttl out`},
		{"stateless token_ttl fixed", "channels: [{id: '1', kind: stateless, token_ttl: 1h, channel_secret: s}]\n",
			`channels[0].token_ttl: "1h": LINE fixes stateless tokens at 15m; leave token_ttl out`},
		{"stateless revoke_after", "channels: [{id: '1', kind: stateless, revoke_after: 1h, channel_secret: s}, {id: '2', kind: stateless, revoke_after: 0s, channel_secret: s}]\n",
			"channels[0].revoke_after: \"1h\": stateless tokens cannot be revoked; leave revoke_after out\n" +
				"channels[1].revoke_after: \"0s\": stateless tokens cannot be revoked; leave revoke_after out"},
		{"rotate_before zero", "channels: [{id: '1', rotate_before: 0s, " + v21 + "}]\n",
			`channels[0].rotate_before: "0s": must be greater than 0`},
		{"rotate_before not shorter than ttl", "channels: [{id: '1', token_ttl: 10d, rotate_before: 10d, " + v21 + "}]\n",
			`channels[0].rotate_before: "10d": must be shorter than token_ttl (10d)`},
		{"rotate_before from the defaults block", "defaults: {rotate_before: 10d}\nchannels: [{id: '1', kind: stateless, channel_secret: s}]\n",
			`channels[0].rotate_before: "10d": must be shorter than token_ttl (15m); it comes from defaults.rotate_before: set rotate_before on this channel`},
		{"rotate_before from the kind", "channels: [{id: '1', token_ttl: 5d, revoke_after: 1h, " + v21 + "}]\n",
			`channels[0].rotate_before: "10d": must be shorter than token_ttl (5d); it is the default for kind v2.1: set rotate_before on this channel`},
		{"revoke_after not shorter than ttl", "channels: [{id: '1', token_ttl: 1d, rotate_before: 1h, revoke_after: 24h, " + v21 + "}]\n",
			`channels[0].revoke_after: "1d": must be shorter than token_ttl (1d)`},
		{"revoke_after from the defaults block", "defaults: {revoke_after: 2d}\nchannels: [{id: '1', token_ttl: 1d, rotate_before: 1h, " + v21 + "}]\n",
			`channels[0].revoke_after: "2d": must be shorter than token_ttl (1d); it comes from defaults.revoke_after: set revoke_after on this channel`},
		{"too many tokens held at once", "channels: [{id: '1', token_ttl: 30d, rotate_before: 29d12h, revoke_after: 29d, " + v21 + "}]\n",
			`channels[0].revoke_after: "29d": with token_ttl 30d, rotate_before 29d12h and jitter 0.1, tokend would keep up to 118 of this channel's tokens valid at LINE at once, more than 15 of LINE's 30 (LINE recommends 2 a consumer: the current one and the next); shorten revoke_after or rotate_before`},
		{"too many short-lived tokens held at once", "channels: [{id: '1', kind: short-lived, rotate_before: 29d, revoke_after: 20d, channel_secret: s}]\n",
			`channels[0].revoke_after: "20d": with token_ttl 30d, rotate_before 29d and jitter 0.1, tokend would keep up to 42 of this channel's tokens valid at LINE at once, more than 15 of LINE's 30 (LINE recommends 2 a consumer: the current one and the next); shorten revoke_after or rotate_before`},
		{"jitter and reconcile_every", "channels: [{id: '1', jitter: 1.5, reconcile_every: 59s, " + v21 + "}]\n",
			"channels[0].jitter: \"1.5\": must be at least 0 and less than 1 (a fraction of rotate_before)\n" +
				"channels[0].reconcile_every: \"59s\": must be at least 1m"},
		{"bad defaults value inherited is reported once", "defaults: {token_ttl: 40d}\nchannels: [{id: '1', " + v21 + "}]\n",
			`defaults.token_ttl: "40d": must be between 1m and 30d (LINE's limit for v2.1 tokens)`},

		// Outputs.
		{"output path missing", "channels: [{id: '1', " + v21 + ", outputs: [{format: json}]}]\n",
			`channels[0].outputs[0].path: required: the file to write the token to`},
		{"output format and mode", "channels: [{id: '1', " + v21 + ", outputs: [{path: /t, format: yaml, mode: '0999'}]}]\n",
			// One line: the decoder's complaint comes before the validator's.
			"channels[0].outputs[0].mode: \"0999\": not an octal file mode; write e.g. \"0640\"\n" +
				"channels[0].outputs[0].format: \"yaml\": must be raw, json or env"},
		{"output mode writable by others", "channels: [{id: '1', " + v21 + ", outputs: [{path: /t, mode: '0666'}, {path: /u, mode: '0620'}, {path: /v, mode: '0644'}]}]\n",
			"channels[0].outputs[0].mode: \"0666\": must not let group or others write: the file holds a token, and whoever may write it may hand bots a token of their own; drop the write bits (e.g. \"0640\")\n" +
				"channels[0].outputs[1].mode: \"0620\": must not let group or others write: the file holds a token, and whoever may write it may hand bots a token of their own; drop the write bits (e.g. \"0640\")"},
		{"output mode above 0777", "channels: [{id: '1', " + v21 + ", outputs: [{path: /t, mode: 4755}]}]\n",
			`channels[0].outputs[0].mode: "4755": must be at most 0777 (permission bits only)`},
		// 239 bytes is the longest name whose temporary file fits 255.
		{"output file name too long", "channels: [{id: '1', " + v21 + ", outputs: [{path: /t/" + strings.Repeat("a", 239) + "}, {path: /t/" + strings.Repeat("b", 240) + "}]}]\n",
			`channels[0].outputs[1].path: "/t/` + strings.Repeat("b", 240) + `": the file name is 240 bytes; at most 239: tokend writes it through a temporary file named .NAME.tmp-NNNNNNNNNN beside it, which must fit the file system's 255`},
		{"output paths shared", `
channels:
  - {id: '1', ` + v21 + `, outputs: [{path: tok}, {path: /other}]}
  - {id: '2', ` + v21 + `, outputs: [{path: /etc/tokend/tok}]}
  - {id: '3', ` + v21 + `, outputs: [{path: /other/}]}
`,
			"channels[1].outputs[0].path: \"/etc/tokend/tok\": already written by channels[0].outputs[0].path; give each output its own file\n" +
				"channels[2].outputs[0].path: \"/other/\": must name a file, not a directory"},

		// Hooks.
		{"hook both", "channels: [{id: '1', " + v21 + ", on_rotate: [{exec: [a], signal: HUP, pid_file: /p}]}]\n",
			`channels[0].on_rotate[0]: set only one of exec or signal; add a second on_rotate entry for the other`},
		{"hook neither", "channels: [{id: '1', " + v21 + ", on_rotate: [{timeout: 1s}]}]\n",
			`channels[0].on_rotate[0]: set exec (a command to run) or signal (with pid_file), e.g. exec: ["/usr/bin/systemctl", "reload", "bot.service"]`},
		{"hook exec empty", "channels: [{id: '1', " + v21 + ", on_rotate: [{exec: []}, {exec: ['', x]}]}]\n",
			"channels[0].on_rotate[0].exec: must name a program and its arguments, e.g. [\"/usr/bin/systemctl\", \"reload\", \"bot.service\"]\n" +
				"channels[0].on_rotate[1].exec[0]: must name a program: an absolute path, or a name looked up in PATH"},
		{"hook exec with pid_file", "channels: [{id: '1', " + v21 + ", on_rotate: [{exec: [a], pid_file: /p}]}]\n",
			`channels[0].on_rotate[0].pid_file: "/p": only used with signal; leave it out`},
		{"hook bad signal", "channels: [{id: '1', " + v21 + ", on_rotate: [{signal: KILL, pid_file: /p}]}]\n",
			`channels[0].on_rotate[0].signal: "KILL": must be HUP, USR1, USR2, TERM or INT`},
		{"hook signal without pid_file", "channels: [{id: '1', " + v21 + ", on_rotate: [{signal: HUP}]}]\n",
			`channels[0].on_rotate[0].pid_file: required with signal: the file holding the ID of the process to signal`},
		{"hook timeout zero", "channels: [{id: '1', " + v21 + ", on_rotate: [{signal: HUP, pid_file: /p, timeout: 0s}]}]\n",
			`channels[0].on_rotate[0].timeout: "0s": must be greater than 0`},
		{"hook exec a string", "channels: [{id: '1', " + v21 + ", on_rotate: [{exec: 'systemctl reload bot'}]}]\n",
			`channels[0].on_rotate[0].exec: "systemctl reload bot": must be a list, not a single value`},

		// Shapes and types: reported once, without follow-on complaints.
		{"channels a string", "channels: all\n",
			`channels: "all": must be a list, not a single value`},
		{"log a list", "log: [info]\n" + channel0,
			`log: must be a mapping of keys, not a list`},
		{"path a list", "channels: [{id: '1', " + v21 + ", outputs: [{path: [a]}]}]\n",
			`channels[0].outputs[0].path: must be a string, not a list`},
		{"secret a list is not echoed", "channels: [{id: '1', key_id: k, private_key_file: /k, channel_secret: [s3cret]}]\n",
			`channels[0].channel_secret: must be a string, not a list`},
		{"secret a mapping is not echoed", "channels: [{id: '1', key_id: k, private_key_file: /k, channel_secret: {s3cret: x}}]\n",
			`channels[0].channel_secret: must be a string, not a mapping`},
		{"uid not a number", "socket: {allowed_uids: [root]}\n" + channel0,
			`socket.allowed_uids[0]: "root": must be a whole number`},
		{"jitter not a number", "defaults: {jitter: lots}\n" + channel0,
			`defaults.jitter: "lots": must be a number`},
		{"key not a name", "channels: [{id: '1', " + v21 + ", [a]: b}]\n",
			`channels[0]: keys must be plain names, not a list`},

		// Several problems at once, in file order.
		{"many", `
log: {level: loud}
channels:
  - id: abc
    kind: stateless
    outputs: [{path: /t, format: xml}]
  - id: "2"
    name: abc
    kind: short-lived
    channel_secret: s
    on_rotate: [{signal: STOP, pid_file: /p}]
`,
			"log.level: \"loud\": must be debug, info, warn or error\n" +
				"channels[0].id: \"abc\": must be the numeric channel ID shown in the LINE Developers Console\n" +
				"channels[0]: kind stateless needs key_id and private_key_file, or channel_secret (or channel_secret_file)\n" +
				"channels[0].outputs[0].format: \"xml\": must be raw, json or env\n" +
				"channels[1].on_rotate[0].signal: \"STOP\": must be HUP, USR1, USR2, TERM or INT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseYAML(tc.src, nil)
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config %+v returned with an error", cfg)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestTrailingDocumentMarker(t *testing.T) {
	for _, end := range []string{"---\n", "...\n", "---\n# nothing\n"} {
		mustParse(t, channel0+end, nil)
	}
}

func TestErrorLines(t *testing.T) {
	_, err := parseYAML(`log:
  level: info
channels:
  - id: "1"
    key_id: k
    channel_secret: s
    outputs:
      - path: /t
        mode: "0999"
`, nil)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Path))
	}
	want := []string{"4 channels[0].private_key_file", "9 channels[0].outputs[0].mode"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "channels[0].private_key_file" {
		t.Errorf("errors.As(*FieldError) = %v", fe)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct{ src, want string }{
		{"colour: red\n" + channel0,
			`colour: unknown key; valid keys here: channels, defaults, line, log, metrics_listen, socket, state_dir`},
		{"state-dir: /x\n" + channel0,
			`state-dir: unknown key; did you mean state_dir?`},
		{"Channels: []\n",
			"Channels: unknown key; did you mean channels?\nchannels: no channels configured; add one (see config.example.yaml)"},
		{"log: {level: info, colour: red}\n" + channel0,
			`log.colour: unknown key; valid keys here: format, level`},
		{"line: {baseurl: x}\n" + channel0,
			`line.baseurl: unknown key; did you mean base_url?`},
		{"socket: {allowed_uid: [1]}\n" + channel0,
			`socket.allowed_uid: unknown key; did you mean allowed_uids?`},
		{"defaults: {ttl: 1d}\n" + channel0,
			`defaults.ttl: unknown key; valid keys here: jitter, kind, reconcile_every, revoke_after, rotate_before, token_ttl`},
		{channel0 + "    secret: x\n",
			`channels[0].secret: unknown key; valid keys here: channel_secret, channel_secret_file, id, jitter, key_id, kind, name, on_rotate, outputs, private_key_file, reconcile_every, revoke_after, rotate_before, token_ttl`},
		{channel0 + "    outputs: [{path: /t, colour: red}]\n",
			`channels[0].outputs[0].colour: unknown key; valid keys here: format, mode, path`},
		{channel0 + "    on_rotate: [{signal: HUP, pidfile: /p}]\n",
			"channels[0].on_rotate[0].pidfile: unknown key; did you mean pid_file?\n" +
				"channels[0].on_rotate[0].pid_file: required with signal: the file holding the ID of the process to signal"},
	}
	for _, tc := range tests {
		_, err := parseYAML(tc.src, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{
		"SECRET": "s3cret-from-env",
		"DIR":    "/srv/tokens",
		"N":      "8",
		"MODE":   "0640",
		"TTL":    "20d",
		"EMPTY":  "",
		"YAML":   "a: b\n- c",
	}
	cfg := mustParse(t, `
state_dir: ${DIR}/state
line:
  max_in_flight: ${N}
  timeout: ${N}s
socket:
  mode: ${MODE}
channels:
  - id: "1"
    name: "bot${EMPTY}"
    key_id: "$${NOT_EXPANDED}"
    private_key_file: "/k/$$HOME/a$b$"
    channel_secret: ${SECRET}
    token_ttl: ${TTL}
    outputs: [{path: "${DIR}/${YAML}"}]
    on_rotate: [{exec: [/bin/sh, -c, "echo $$PPID $1 ${N}"]}]
`, env)
	ch := cfg.Channels[0]
	checks := []struct{ name, got, want string }{
		{"state_dir", cfg.StateDir, "/srv/tokens/state"},
		{"max_in_flight", fmt.Sprint(cfg.LINE.MaxInFlight), "8"},
		{"timeout", cfg.LINE.Timeout.String(), "8s"},
		{"socket mode", FileMode(cfg.Socket.Mode).String(), "0640"},
		{"name", ch.Name, "bot"},
		{"key_id", ch.KeyID, "${NOT_EXPANDED}"},
		{"private_key_file", ch.PrivateKeyFile, "/k/$HOME/a$b$"},
		{"secret", string(ch.ChannelSecret), "s3cret-from-env"},
		{"token_ttl", Duration(ch.TokenTTL).String(), "20d"},
		{"output (YAML in a value stays text)", ch.Outputs[0].Path, "/srv/tokens/a: b\n- c"},
		{"exec", strings.Join(ch.OnRotate[0].Exec, "|"), "/bin/sh|-c|echo $PPID $1 8"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	// Keys and non-string scalars are never expanded.
	_, err := parseYAML("${KEY}: 1\n"+channel0, map[string]string{"KEY": "state_dir"})
	if err == nil || !strings.Contains(err.Error(), "${KEY}: unknown key") {
		t.Errorf("a key was expanded: %v", err)
	}

	// Errors name the path and the variable, never a value.
	_, err = parseYAML(`
channels:
  - id: "1"
    key_id: k
    private_key_file: ${KEYS}/a
    channel_secret: "abc${LINE_SECRET}"
    outputs: [{path: "${OK}/${BAD-NAME}"}, {path: "/t/${UNCLOSED"}]
`, map[string]string{"OK": "s3cret-env-value"})
	want := "channels[0].private_key_file: environment variable KEYS is not set\n" +
		"channels[0].channel_secret: environment variable LINE_SECRET is not set\n" +
		"channels[0].outputs[0].path: ${...} must hold an environment variable name (letters, digits and _); write $$ for a literal $\n" +
		"channels[0].outputs[1].path: unterminated ${; write ${NAME} to use an environment variable, or $$ for a literal $"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	if err != nil && (strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "s3cret")) {
		t.Errorf("error shows a value: %v", err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := fakeEnv(map[string]string{"A": "x", "B_2": "y", "E": "", "D": "$${A}"})
	tests := []struct{ in, want, err string }{
		{"", "", ""},
		{"plain", "plain", ""},
		{"${A}", "x", ""},
		{"${A}${B_2}-${E}.", "xy-.", ""},
		{"$$", "$", ""},
		{"$${A}", "${A}", ""},
		{"$$$${A}", "$${A}", ""},
		{"$$${A}", "$x", ""},
		{"${D}", "$${A}", ""}, // values are not expanded again
		{"$A $1 $( $", "$A $1 $( $", ""},
		{"${}", "", "${...} must hold an environment variable name (letters, digits and _); write $$ for a literal $"},
		{"${1A}", "", "${...} must hold an environment variable name (letters, digits and _); write $$ for a literal $"},
		{"${A", "", "unterminated ${; write ${NAME} to use an environment variable, or $$ for a literal $"},
		{"${NOPE}", "", "environment variable NOPE is not set"},
	}
	for _, tc := range tests {
		got, err := expandEnv(tc.in, env)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.err {
			t.Errorf("expandEnv(%q) = %q, %q; want %q, %q", tc.in, got, gotErr, tc.want, tc.err)
		}
	}
}

func TestSecretFile(t *testing.T) {
	cfgDir, creds := t.TempDir(), t.TempDir()
	write := func(dir, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfgDir, "crlf", "from-config-dir\r\n")
	write(cfgDir, "lf", "lf-secret\n\n")
	write(cfgDir, "empty", "\r\n")
	write(cfgDir, "big", strings.Repeat("x", maxSecretSize+1))
	write(creds, "crlf", "from-credentials\n")
	if err := os.Mkdir(filepath.Join(cfgDir, "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	parse := func(file string, env map[string]string) (*Config, error) {
		src := fmt.Sprintf("channels: [{id: '1', key_id: k, private_key_file: /k, channel_secret_file: %q}]\n", file)
		return Parse(strings.NewReader(src), ParseOptions{Dir: cfgDir, LookupEnv: fakeEnv(env)})
	}
	for _, tc := range []struct {
		file string
		env  map[string]string
		want string
	}{
		{"crlf", nil, "from-config-dir"},
		{"lf", nil, "lf-secret"},
		{filepath.Join(cfgDir, "crlf"), nil, "from-config-dir"},
		{"crlf", map[string]string{"CREDENTIALS_DIRECTORY": creds}, "from-credentials"},
		{filepath.Join(cfgDir, "crlf"), map[string]string{"CREDENTIALS_DIRECTORY": creds}, "from-config-dir"},
		{"crlf", map[string]string{"CREDENTIALS_DIRECTORY": ""}, "from-config-dir"},
	} {
		cfg, err := parse(tc.file, tc.env)
		if err != nil {
			t.Errorf("%s %v: %v", tc.file, tc.env, err)
			continue
		}
		if got := string(cfg.Channels[0].ChannelSecret); got != tc.want {
			t.Errorf("%s %v: secret %q, want %q", tc.file, tc.env, got, tc.want)
		}
	}

	for _, tc := range []struct {
		file string
		env  map[string]string
		want string
	}{
		{"missing", nil, `channels[0].channel_secret_file: "missing": ` + cfgDir + `/missing: no such file`},
		{"missing", map[string]string{"CREDENTIALS_DIRECTORY": creds}, `channels[0].channel_secret_file: "missing": ` + creds + `/missing: no such file`},
		{"/nonexistent/secret", nil, `channels[0].channel_secret_file: "/nonexistent/secret": no such file`},
		{"empty", nil, `channels[0].channel_secret_file: "empty": ` + cfgDir + `/empty: the file is empty; put the channel secret in it`},
		{"dir", nil, `channels[0].channel_secret_file: "dir": ` + cfgDir + `/dir: not a regular file`},
		{"big", nil, `channels[0].channel_secret_file: "big": ` + cfgDir + `/big: larger than 64 KiB`},
	} {
		_, err := parse(tc.file, tc.env)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.file, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret-in-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tokend.yaml")
	src := fmt.Sprintf(`state_dir: /var/lib/tokend
socket: {path: tokend.sock}
channels:
  - id: "1"
    key_id: k
    private_key_file: key.jwk
    channel_secret_file: %q
    outputs: [{path: out/token}]
    on_rotate: [{signal: HUP, pid_file: bot.pid}]
`, secret)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	cfg, err := Load("tokend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ch := cfg.Channels[0]
	for _, c := range []struct{ name, got, want string }{
		{"Path", cfg.Path, path},
		{"socket", cfg.Socket.Path, filepath.Join(dir, "tokend.sock")},
		{"private_key_file", ch.PrivateKeyFile, filepath.Join(dir, "key.jwk")},
		{"output", ch.Outputs[0].Path, filepath.Join(dir, "out/token")},
		{"pid_file", ch.OnRotate[0].PIDFile, filepath.Join(dir, "bot.pid")},
		{"secret", string(ch.ChannelSecret), "s3cret-in-file"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	missing := filepath.Join(dir, "nope.yaml")
	_, err = Load(missing)
	if want := "config file " + missing + ": no such file; set -config or $TOKEND_CONFIG"; err == nil || err.Error() != want {
		t.Errorf("missing file: %v, want %s", err, want)
	}
	_, err = Load(dir)
	if want := "config file " + dir + ": not a regular file"; err == nil || err.Error() != want {
		t.Errorf("directory: %v, want %s", err, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("channels: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "channels" {
		t.Errorf("invalid file: %#v", err)
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("TOKEND_CONFIG", "")
	if got := DefaultPath(); got != "/etc/tokend/config.yaml" {
		t.Errorf("DefaultPath() = %q", got)
	}
	t.Setenv("TOKEND_CONFIG", "/srv/t.yaml")
	if got := DefaultPath(); got != "/srv/t.yaml" {
		t.Errorf("DefaultPath() with $TOKEND_CONFIG = %q", got)
	}
}

func TestParseLimits(t *testing.T) {
	big := strings.NewReader(strings.Repeat("#", maxConfigSize+1))
	_, err := Parse(big, ParseOptions{LookupEnv: fakeEnv(nil)})
	if want := "the config is larger than 4 MiB"; err == nil || err.Error() != want {
		t.Errorf("big config: %v", err)
	}

	// A billion laughs along the schema: channels x on_rotate x exec.
	const n = 300
	many := func(alias string) string { return "[" + strings.TrimSuffix(strings.Repeat(alias+", ", n), ", ") + "]" }
	bomb := "x-exec: &e " + many("a") + "\n" +
		"x-hooks: &h " + many("{exec: *e}") + "\n" +
		"x-channel: &c {id: '1', key_id: k, private_key_file: /k, channel_secret: s, on_rotate: *h}\n" +
		"channels: " + many("*c") + "\n"
	// The bound is on work, not time (this takes 4.5 s on one 2-core VM
	// and 11 s there under -race beside other packages): with the node
	// budget the bomb allocates about 184 MB; without it, its 27 million
	// nodes would take gigabytes.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = parseYAML(bomb, nil)
	runtime.ReadMemStats(&after)
	if want := "the config is too large or uses too many aliases"; err == nil || !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("alias bomb: %v", err)
	}
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 512 {
		t.Errorf("alias bomb allocated %d MB; want at most 512", mb)
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	cfg := mustParse(t, `
channels:
  - &first
    id: "1"
    key_id: &kid k
    private_key_file: /k
    channel_secret: s
    rotate_before: 5d
    outputs: [{path: /a}]
  - <<: *first
    id: "2"
    rotate_before: 6d
    outputs: [{path: /b}]
  - <<: [{jitter: 0.5}, *first]
    id: "3"
    key_id: *kid
    outputs: []
`, nil)
	type got struct {
		ID, KeyID string
		Rotate    time.Duration
		Jitter    float64
		Outputs   int
	}
	var gots []got
	for _, ch := range cfg.Channels {
		gots = append(gots, got{ch.ID, ch.KeyID, ch.RotateBefore, ch.Jitter, len(ch.Outputs)})
	}
	want := []got{{"1", "k", 5 * Day, 0.1, 1}, {"2", "k", 6 * Day, 0.1, 1}, {"3", "k", 5 * Day, 0.5, 0}}
	if !reflect.DeepEqual(gots, want) {
		t.Errorf("got  %+v\nwant %+v", gots, want)
	}

	_, err := parseYAML("channels: [{<<: 5, id: '1'}]\n", nil)
	if want := "channels[0].<<: a merge key (<<) must merge a mapping or a list of mappings"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("bad merge: %v", err)
	}
	_, err = parseYAML("channels: [{<<: {colour: red}, id: '1'}]\n", nil)
	if want := "channels[0].colour: unknown key"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("unknown key in a merge: %v", err)
	}
}

func TestRedaction(t *testing.T) {
	const secret = "s3cret-value"
	cfg := mustParse(t, channel0, nil)
	var s Secret = secret
	outputs := map[string]string{
		"%v Config":   fmt.Sprintf("%v", cfg),
		"%+v Config":  fmt.Sprintf("%+v", cfg),
		"%#v Config":  fmt.Sprintf("%#v", cfg),
		"%v Channel":  fmt.Sprintf("%v", cfg.Channels[0]),
		"%s Secret":   fmt.Sprintf("%s", s),
		"%q Secret":   fmt.Sprintf("%q", s),
		"%x Secret":   fmt.Sprintf("%x", s),
		"%d Secret":   fmt.Sprintf("%d", s),
		"%10.3s":      fmt.Sprintf("%10.3s", s),
		"String":      s.String(),
		"GoString":    s.GoString(),
		"error wraps": fmt.Errorf("issue: %v", s).Error(),
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs["yaml"] = string(y)
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var decoded any
	if err := json.Unmarshal(j, &decoded); err != nil {
		t.Fatal(err)
	}
	outputs["json"] = fmt.Sprint(decoded)
	txt, _ := s.MarshalText()
	outputs["text"] = string(txt)
	outputs["slog"] = s.LogValue().String()
	for name, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
			t.Errorf("%s reveals the secret: %s", name, out)
		}
		if !strings.Contains(out, "<redacted>") {
			t.Errorf("%s does not say <redacted>: %s", name, out)
		}
	}
	if string(cfg.Channels[0].ChannelSecret) != secret {
		t.Error("the secret itself is lost")
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{Path: "a.b", Value: "v", Msg: "bad"}, `a.b: "v": bad`},
		{FieldError{Path: "a.b", Msg: "required"}, `a.b: required`},
		{FieldError{Path: "a.b", Value: "<redacted>", Msg: "bad"}, `a.b: <redacted>: bad`},
		{FieldError{Path: "a", Value: "tab\there", Msg: "bad"}, `a: "tab\there": bad`},
		{FieldError{Line: 3, Msg: "invalid YAML: x"}, `line 3: invalid YAML: x`},
		{FieldError{Path: "a", Line: 3, Msg: "m"}, `a: m`},
		{FieldError{Msg: "m"}, `m`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.e, got, tc.want)
		}
	}
	es := Errors{{Path: "a", Msg: "x"}, {Path: "b", Msg: "y"}}
	if got := es.Error(); got != "a: x\nb: y" {
		t.Errorf("Errors: %q", got)
	}
}

func TestTooManyProblems(t *testing.T) {
	src := "channels:\n" + strings.Repeat("  - {id: x, key_id: k, private_key_file: /k, channel_secret: s}\n", 150)
	_, err := parseYAML(src, nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != maxErrors+1 {
		t.Fatalf("got %d errors", len(errs))
	}
	if errs[0].Path != "channels[0].id" || errs[maxErrors-1].Path != "channels[99].id" {
		t.Errorf("first %v, last listed %v", errs[0], errs[maxErrors-1])
	}
	if got := errs[maxErrors].Error(); got != "and 50 more problems" {
		t.Errorf("last: %q", got)
	}
}

func TestValidConfigsAreResolved(t *testing.T) {
	// The invariants the fuzzer checks hold for the configs used above.
	checkResolved(t, mustParse(t, channel0, nil))
	checkResolved(t, mustParse(t, "channels: [{id: '1', kind: stateless, key_id: k, private_key_file: k.pem}]\n", nil))
}

// TestDefaultSocket: tokend token/status find the socket the daemon
// chose, also when systemd lists several RuntimeDirectory= entries.
func TestDefaultSocket(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{nil, DefaultSocketPath},
		{map[string]string{"RUNTIME_DIRECTORY": ""}, DefaultSocketPath},
		{map[string]string{"RUNTIME_DIRECTORY": "/run/tokend"}, "/run/tokend/tokend.sock"},
		{map[string]string{"RUNTIME_DIRECTORY": "/run/tokend:/run/tokend/tokens"}, "/run/tokend/tokend.sock"},
	} {
		lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
		if got := DefaultSocket(lookup); got != tt.want {
			t.Errorf("DefaultSocket(%v) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

// TestHeldAtOnce: the tokens a channel's lifetimes keep valid at LINE at
// once, counted the way the rotator rotates (rotator.RotateAt) and revokes.
func TestHeldAtOnce(t *testing.T) {
	for _, tt := range []struct {
		name                string
		ttl, rotate, revoke time.Duration
		jitter              float64
		want                int
	}{
		{"the defaults", 30 * Day, 10 * Day, 24 * time.Hour, 0.1, 2},
		{"tokend dev's", 2 * time.Minute, time.Minute, 20 * time.Second, 0.1, 2},
		{"revoked at once, after the issue that superseded it", 30 * Day, 10 * Day, 0, 0.1, 2},
		{"revoke_after past the superseded token's expiry", 30 * Day, 10 * Day, 29 * Day, 0, 2},
		// Rotated every 20 days at the least; each superseded token lives
		// 10 days: at most one beside the current.
		{"no jitter", 30 * Day, 10 * Day, 15 * Day, 0, 2},
		// Rotated every 12 h, less jitter's 2.95 d, but never sooner than
		// half the 12 h gap: every 6 h, each kept 29 days (116 periods),
		// and the one revoked at the instant of a rotation.
		{"rotate_before near token_ttl", 30 * Day, 29*Day + 12*time.Hour, 29 * Day, 0.1, 118},
		{"exactly the most allowed", 20 * time.Hour, 19 * time.Hour, 14*time.Hour - time.Second, 0, 15},
		{"one more: revoked at the instant of a rotation", 20 * time.Hour, 19 * time.Hour, 14 * time.Hour, 0, 16},
	} {
		if got := HeldAtOnce(tt.ttl, tt.rotate, tt.revoke, tt.jitter); got != tt.want {
			t.Errorf("%s: HeldAtOnce(%s, %s, %s, %g) = %d, want %d", tt.name, tt.ttl, tt.rotate, tt.revoke, tt.jitter, got, tt.want)
		}
	}
	// The most allowed passes validation; one more is refused.
	for _, tt := range []struct {
		revoke string
		ok     bool
	}{{"13h59m59s", true}, {"14h", false}} {
		_, err := parseYAML("channels: [{id: '1', token_ttl: 20h, rotate_before: 19h, jitter: 0, revoke_after: "+tt.revoke+", key_id: k, private_key_file: /k, channel_secret: s}]\n", nil)
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "tokens valid at LINE at once")) {
			t.Errorf("revoke_after %s: error %v, want ok %v", tt.revoke, err, tt.ok)
		}
	}
}
