package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/google/uuid"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
)

// devChannels are the channels `tokend dev` runs; short TTLs so a full
// issue, rotate, revoke cycle shows in the log within minutes.
var devChannels = []struct{ ID, Name string }{
	{"1650000001", "shop-bot"},
	{"1650000002", "news-bot"},
}

var devConfig = template.Must(template.New("config").Parse(`# Written by "tokend dev": a real config pointing at the built-in LINE simulator.
# Copy it as a starting point; see config.example.yaml for every key.
state_dir: {{.Dir}}/state
log: {level: info, format: console}
line:
  base_url: {{.BaseURL}}
  timeout: 5s
  max_in_flight: 4
socket:
  path: {{.Socket}}
  mode: "0600"
defaults:
  kind: v2.1
  token_ttl: {{.TTL}}
  rotate_before: {{.RotateBefore}}
  revoke_after: {{.RevokeAfter}}
  jitter: 0.1
  reconcile_every: 1m
channels:
{{- range .Channels}}
  - id: "{{.ID}}"
    name: {{.Name}}
    key_id: {{.KeyID}}
    private_key_file: keys/{{.Name}}.jwk
    channel_secret_file: secrets/{{.Name}}
    outputs:
      - {path: tokens/{{.Name}}.token, format: raw, mode: "0600"}
      - {path: tokens/{{.Name}}.json, format: json, mode: "0600"}
{{- end}}
`))

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	dir := fs.String("dir", "tokend-dev", "where dev keeps keys, secrets, state, tokens and its config")
	ttl := fs.Duration("token-ttl", 2*time.Minute, "token lifetime (at least 1m)")
	rotateBefore := fs.Duration("rotate-before", time.Minute, "rotate this long before expiry")
	revokeAfter := fs.Duration("revoke-after", 20*time.Second, "revoke the superseded token this long after rotation")
	if err := parse(fs, args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	for _, sub := range []string{"", "keys", "secrets", "tokens"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o700); err != nil {
			return fmt.Errorf("dev directory: %w", err)
		}
	}

	sim := linefake.New(linefake.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start LINE simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close below
	defer srv.Close()

	type chanData struct{ ID, Name, KeyID string }
	data := struct {
		Dir, BaseURL, Socket           string
		TTL, RotateBefore, RevokeAfter time.Duration
		Channels                       []chanData
	}{Dir: abs, BaseURL: "http://" + ln.Addr().String(), Socket: devSocket(abs),
		TTL: *ttl, RotateBefore: *rotateBefore, RevokeAfter: *revokeAfter}
	for _, ch := range devChannels {
		kid, err := devKey(abs, ch.Name)
		if err != nil {
			return err
		}
		secret, err := devSecret(abs, ch.Name)
		if err != nil {
			return err
		}
		key, err := oauth.LoadPrivateKey(filepath.Join(abs, "keys", ch.Name+".jwk"))
		if err != nil {
			return err
		}
		sim.AddChannel(ch.ID, secret)
		sim.RegisterKey(ch.ID, kid, &key.PublicKey)
		data.Channels = append(data.Channels, chanData{ch.ID, ch.Name, kid})
	}
	cfgPath := filepath.Join(abs, "config.yaml")
	f, err := os.OpenFile(cfgPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write dev config: %w", err)
	}
	if err := devConfig.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("write dev config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write dev config: %w", err)
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, `tokend dev: LINE simulator at %s; everything lives under %s
  config:  %s
  tokens:  %s/tokens/*.token (raw) and *.json
  try:     tokend token -socket %s shop-bot
           tokend status -socket %s
  Tokens live %s, rotate %s before expiry, the old one is revoked %s later. Ctrl-C stops.
`, data.BaseURL, abs, cfgPath, abs, data.Socket, data.Socket, data.TTL, data.RotateBefore, data.RevokeAfter)
	return runDaemon(ctx, cfg, cfgPath, false, defaultDevOptions())
}

// devSocket keeps the socket path under the 108-byte limit of sun_path.
func devSocket(dir string) string {
	p := filepath.Join(dir, "tokend.sock")
	if len(p) < 100 {
		return p
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tokend-dev-%d.sock", os.Getuid()))
}

// devKey makes (once) the channel's signing key and returns its key ID,
// derived from the public key so it is stable across runs.
func devKey(dir, name string) (string, error) {
	path := filepath.Join(dir, "keys", name+".jwk")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := oauth.WriteNewKey(path); err != nil {
			return "", err
		}
	}
	key, err := oauth.LoadPrivateKey(path)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	return uuid.NewSHA1(uuid.NameSpaceOID, der).String(), nil
}

// devSecret makes (once) the channel's secret file and returns the secret.
func devSecret(dir, name string) (string, error) {
	path := filepath.Join(dir, "secrets", name)
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		return "", fmt.Errorf("write dev secret: %w", err)
	}
	return secret, nil
}
