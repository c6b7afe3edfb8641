package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"text/template"
	"time"

	"github.com/google/uuid"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/store"
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
  jitter: {{.Jitter}}
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

// devConfigData fills devConfig.
type devConfigData struct {
	Dir, BaseURL, Socket           string
	TTL, RotateBefore, RevokeAfter config.Duration
	Jitter                         float64 // devJitter
	Channels                       []devChannel
}

// devJitter is the jitter of dev's config.
const devJitter = 0.1

type devChannel struct{ ID, Name, KeyID string }

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup, stop := catchHUP()
	defer stop()
	fs := newFlags("dev", stderr)
	dir := fs.String("dir", "tokend-dev", "where dev keeps keys, secrets, state, tokens and its config")
	lifetimes := defaultDevFlags()
	lifetimes.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q; usage: tokend dev [-dir D] [-token-ttl 2m] [-rotate-before 1m] [-revoke-after 20s]", fs.Arg(0))
	}
	if err := lifetimes.check(); err != nil {
		return usage("%w", err)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		// A file in the way, or a directory that cannot be made: the
		// flag's value is what to change.
		return usage("-dir %s: %w", *dir, errors.Unwrap(err))
	}
	// Nothing under abs is written before both locks are known to be free:
	// a second dev on the same directory must not point the first one's
	// config at its own (short-lived) simulator.
	unlock, err := lockDevDir(abs)
	if err != nil {
		return err
	}
	defer unlock()
	stateDir := filepath.Join(abs, "state")
	if err := probeStore(stateDir); err != nil {
		return err
	}
	for _, sub := range []string{"keys", "secrets", "tokens"} {
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

	data := devConfigData{Dir: abs, BaseURL: "http://" + ln.Addr().String(), Socket: devSocket(abs), Jitter: devJitter,
		TTL: config.Duration(lifetimes.ttl.d), RotateBefore: config.Duration(lifetimes.rotateBefore.d),
		RevokeAfter: config.Duration(lifetimes.revokeAfter.d)}
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
		data.Channels = append(data.Channels, devChannel{ch.ID, ch.Name, kid})
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
	return runDaemon(ctx, cfg, cfgPath, false, hup, defaultDevOptions())
}

// lockDevDir takes an exclusive lock on the dev directory itself (flock on
// the directory: no file is added to it) and returns its release. A second
// dev on the same directory fails here, before it has written anything.
// The lock is released when the process ends, however it ends.
func lockDevDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, usage("%s is in use by another tokend dev; stop that one first, or give this one another -dir", dir)
		}
		return nil, fmt.Errorf("lock dev directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// probeStore opens and closes the store in stateDir, so that one held by
// another tokend (a `tokend run` on the dev config, an older dev) is
// reported, as the daemon reports it, before dev writes its config.
func probeStore(stateDir string) error {
	st, err := store.Open(stateDir)
	if err != nil {
		return usage("state_dir: %w", err)
	}
	return st.Close()
}

// devSocket keeps the socket path under the 108-byte limit of sun_path:
// for a directory too deep, one in the temporary directory named after the
// user and the directory, so that each dev directory keeps its own.
func devSocket(dir string) string {
	p := filepath.Join(dir, "tokend.sock")
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), fmt.Sprintf("tokend-dev-%d-%x.sock", os.Getuid(), sum[:4]))
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
