package daemon

import (
	"crypto/rsa"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/oauth"
)

// writeKeys writes n new private JWKs (mode 0600) into dir and returns
// their paths.
func writeKeys(tb testing.TB, dir string, n int) []string {
	tb.Helper()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("k%d.jwk", i))
		if _, err := oauth.WriteNewKey(paths[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return paths
}

// TestChannelsLoadsEachKeyFileOnce: each key file is loaded once, with its
// CRT values kept only if several channels use it; channels naming one
// file share its key, distinct files give distinct keys, and with keys loaded in
// parallel every bad file is still reported, once per channel naming it,
// in config order.
func TestChannelsLoadsEachKeyFileOnce(t *testing.T) {
	dir := t.TempDir()
	good := writeKeys(t, dir, 3)
	loose := filepath.Join(dir, "loose.jwk")
	if _, err := oauth.WriteNewKey(loose); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.jwk")
	files := []string{good[0], missing, good[1], good[0], loose, good[2], missing, ""}
	cfg := &config.Config{}
	for i, f := range files {
		cfg.Channels = append(cfg.Channels, config.Channel{ID: fmt.Sprint(1000 + i), PrivateKeyFile: f})
	}

	var mu sync.Mutex
	loads := map[string]string{}
	count := func(how string, load func(string) (*rsa.PrivateKey, error)) func(string) (*rsa.PrivateKey, error) {
		return func(path string) (*rsa.PrivateKey, error) {
			mu.Lock()
			loads[filepath.Base(path)] += how
			mu.Unlock()
			return load(path)
		}
	}
	loadPrivateKey = count("load", oauth.LoadPrivateKey)
	readPrivateKey = count("read", oauth.ReadPrivateKey)
	t.Cleanup(func() { loadPrivateKey, readPrivateKey = oauth.LoadPrivateKey, oauth.ReadPrivateKey })

	chs, err := Channels(cfg)
	// Once each; the files two channels name with their CRT values kept.
	if want := map[string]string{"k0.jwk": "load", "k1.jwk": "read", "k2.jwk": "read", "loose.jwk": "read", "missing.jwk": "load"}; !maps.Equal(loads, want) {
		t.Errorf("key files loaded %v; want %v", loads, want)
	}
	if err == nil {
		t.Fatal("Channels accepted a missing key file and one readable by others")
	}
	var lines []string
	for l := range strings.SplitSeq(err.Error(), "\n") {
		lines = append(lines, l[:strings.Index(l, ":")])
	}
	want := []string{"channels[1].private_key_file", "channels[4].private_key_file", "channels[6].private_key_file"}
	if strings.Join(lines, " ") != strings.Join(want, " ") {
		t.Errorf("errors name %q; want %q (in config order). Errors:\n%v", lines, want, err)
	}
	if !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("error does not say the key is readable by others: %v", err)
	}

	if len(chs) != len(files) {
		t.Fatalf("%d channels; want %d", len(chs), len(files))
	}
	if chs[0].Key == nil || chs[0].Key != chs[3].Key {
		t.Error("channels 0 and 3 name the same file but do not share its key")
	}
	if chs[2].Key == nil || chs[5].Key == nil || chs[2].Key == chs[0].Key || chs[5].Key == chs[2].Key {
		t.Error("channels with distinct key files do not have distinct keys")
	}
	for _, i := range []int{1, 4, 6, 7} {
		if chs[i].Key != nil {
			t.Errorf("channel %d has a key; its file is bad or absent", i)
		}
	}
	for i, ch := range chs {
		if ch.ID != cfg.Channels[i].ID {
			t.Errorf("channel %d is %s; want %s (config order)", i, ch.ID, cfg.Channels[i].ID)
		}
	}
}

// BenchmarkChannelsDistinctKeys turns 64 channels with a key file each
// into the rotator's: what a start pays per distinct key (ns/op / 64).
func BenchmarkChannelsDistinctKeys(b *testing.B) {
	cfg := &config.Config{}
	for i, p := range writeKeys(b, b.TempDir(), 64) {
		cfg.Channels = append(cfg.Channels, config.Channel{ID: fmt.Sprint(1000 + i), PrivateKeyFile: p})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Channels(cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/64, "ns/key")
}

// BenchmarkChannels10k turns a 10,000-channel config sharing one key file
// into the rotator's, as a start does before its first issue.
func BenchmarkChannels10k(b *testing.B) {
	key := writeKeys(b, b.TempDir(), 1)[0]
	cfg := &config.Config{}
	for i := range 10_000 {
		cfg.Channels = append(cfg.Channels, config.Channel{
			ID: fmt.Sprint(1_000_000_000 + i), Name: fmt.Sprintf("b%05d", i), Kind: config.KindV21,
			PrivateKeyFile: key, Outputs: []config.Output{{Path: fmt.Sprintf("/run/t/b%05d.token", i), Format: "raw", Mode: 0o600}},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Channels(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
