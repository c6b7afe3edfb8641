package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/store"
)

// writeChannelsConfig writes dir/config.yaml: the store in dir/state
// (returned), LINE at base, no socket, and a v2.1 channel for each of ids
// (key kid-1 in keyPath, secret s1) writing to the output of the same index.
func writeChannelsConfig(t *testing.T, dir, base, keyPath string, ids, outputs []string) (cfgPath, state string) {
	t.Helper()
	state = filepath.Join(dir, "state")
	y := fmt.Sprintf("state_dir: %s\nline: {base_url: %q}\nsocket: {path: \"\"}\nchannels:\n", state, base)
	for i, id := range ids {
		y += fmt.Sprintf("  - {id: %q, key_id: kid-1, private_key_file: %s, channel_secret: s1, outputs: [{path: %s}]}\n", id, keyPath, outputs[i])
	}
	cfgPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, state
}

// newObserved makes a Daemon from the config file at cfgPath, logging at
// info level to the returned observer.
func newObserved(t *testing.T, cfgPath string) (*Daemon, *observer.ObservedLogs) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	d, err := New(cfg, Options{Logger: zap.New(core), Notify: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

// TestEmptyStoreFileWarned: a start that finds tokend.db empty (0 bytes)
// says so, with the file's path, before it issues every channel a new
// token; a start with no store file yet, or a healthy one, does not.
func TestEmptyStoreFileWarned(t *testing.T) {
	dir := t.TempDir()
	keyPath, srv := reloadSim(t, dir)
	cfgPath, state := writeChannelsConfig(t, dir, srv.URL, keyPath, []string{"1657000001"}, []string{filepath.Join(dir, "bot.token")})
	const msg = "the store file was empty (0 bytes) and is now a new store: every channel gets a new token, and tokens issued before are not tracked (the first reconcile reports them as orphans); if an earlier tokend stopped during its first start, nothing was lost"
	start := func() int {
		t.Helper()
		d, logs := newObserved(t, cfgPath)
		runDaemon(t, d)()
		d.Close()
		warned := logs.FilterMessage(msg).All()
		for _, w := range warned {
			if p := w.ContextMap()["path"]; p != filepath.Join(state, store.FileName) {
				t.Errorf("warning names path %v", p)
			}
		}
		return len(warned)
	}
	if n := start(); n != 0 {
		t.Errorf("first start, no store file: %d warnings", n)
	}
	if err := os.Truncate(filepath.Join(state, store.FileName), 0); err != nil {
		t.Fatal(err)
	}
	if n := start(); n != 1 {
		t.Errorf("start on a 0-byte store file: %d warnings; want 1", n)
	}
	if n := start(); n != 0 {
		t.Errorf("start on a healthy store: %d warnings", n)
	}
}
