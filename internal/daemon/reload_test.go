package daemon

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
)

// TestReloadSettings: a reload applies log.level at once, and for the
// settings that change only on restart (README, Reload) it says so, one
// warning each, and keeps the running ones. systemd hears RELOADING=1 with
// MONOTONIC_USEC, then READY=1.
func TestReloadSettings(t *testing.T) {
	dir := t.TempDir()
	keyPath := writeKeys(t, dir, 1)[0]
	key, err := oauth.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	sim := linefake.New(linefake.Options{})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	sim.AddChannel("1657000001", "s1")
	sim.RegisterKey("1657000001", "kid-1", &key.PublicKey)

	cfgPath := filepath.Join(dir, "config.yaml")
	write := func(level, state, sock, metrics, base string) {
		t.Helper()
		y := fmt.Sprintf(`state_dir: %s
log: {level: %s}
line: {base_url: %q}
socket: {path: %s}
metrics_listen: %q
channels:
  - {id: "1657000001", name: bot-1, key_id: kid-1, private_key_file: %s, channel_secret: s1, outputs: [{path: %s, format: raw}]}
`, state, level, base, sock, metrics, keyPath, filepath.Join(dir, "bot-1.token"))
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "s.sock")
	write("info", filepath.Join(dir, "state"), sock, "", srv.URL)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(level)
	notes := make(chan string, 16)
	reload := make(chan struct{})
	d, err := New(cfg, Options{
		Logger: zap.New(core), Level: &level, Reload: reload, ConfigPath: cfgPath,
		Notify: func(s string) { notes <- s },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case n := <-notes:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("no notification within 10s")
			return ""
		}
	}
	if n := next(); n != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", n)
	}

	write("debug", filepath.Join(dir, "state2"), filepath.Join(dir, "s2.sock"), "127.0.0.1:0", "http://127.0.0.1:1")
	reload <- struct{}{}
	if n := next(); !strings.HasPrefix(n, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("notification %q, want RELOADING=1 with MONOTONIC_USEC", n)
	}
	if n := next(); n != "READY=1" {
		t.Fatalf("notification %q after the reload, want READY=1", n)
	}
	if l := level.Level(); l != zapcore.DebugLevel {
		t.Errorf("log level %s after reloading log.level: debug", l)
	}
	var warned []string
	for _, e := range logs.FilterMessage("setting changes only on restart").All() {
		warned = append(warned, e.ContextMap()["key"].(string))
	}
	slices.Sort(warned)
	if want := []string{"line.base_url", "metrics_listen", "socket.path", "state_dir"}; !slices.Equal(warned, want) {
		t.Errorf("restart-only settings warned about: %v, want %v", warned, want)
	}
	if logs.FilterMessage("configuration reloaded").Len() != 1 {
		t.Error("the reload was not logged")
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the running socket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s2.sock")); err == nil {
		t.Error("a socket.path change took effect before a restart")
	}
}
