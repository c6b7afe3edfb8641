package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevShowsFullCycle runs `tokend dev` from an empty directory, as a
// newcomer does, and waits for every channel to be issued, rotated and to
// have its superseded token revoked. Lifetimes are the shortest the config
// allows, so the cycle takes about 15 s instead of the default 3 minutes.
func TestDevShowsFullCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real 15 s token cycle")
	}
	t.Parallel()
	dir, err := os.MkdirTemp("", "tkdev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cmd := exec.Command(binary, "dev", "-dir", "tokend-dev", "-token-ttl", "1m", "-rotate-before", "50s", "-revoke-after", "2s")
	cmd.Dir = dir
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, "issue, rotation and revocation for both dev channels", 40*time.Second, func() bool {
		log := stderr.String()
		return strings.Count(log, `"rotation": false`) >= 2 &&
			strings.Count(log, `"rotation": true`) >= 2 &&
			strings.Count(log, "superseded token revoked") >= 2
	})
	for _, f := range []string{"config.yaml", "tokens/shop-bot.token", "tokens/news-bot.json", "keys/shop-bot.jwk", "state/tokend.db"} {
		if _, err := os.Stat(filepath.Join(dir, "tokend-dev", f)); err != nil {
			t.Errorf("dev did not create %s: %v", f, err)
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev did not stop on SIGINT")
	}
}
