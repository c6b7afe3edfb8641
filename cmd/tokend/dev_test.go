package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/store"
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

// TestDevFlagErrorsNameTheFlag: a lifetime the config would refuse is
// reported against the dev flag and the value typed (not the config key dev
// generates), with exit 2, before dev creates or writes anything.
func TestDevFlagErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string // stderr
	}{
		{[]string{"-token-ttl", "10s"}, "tokend dev: -token-ttl 10s: must be between 1m and 30d (LINE's limit for v2.1 tokens)\n"},
		{[]string{"-token-ttl", "31d"}, "tokend dev: -token-ttl 31d: must be between 1m and 30d (LINE's limit for v2.1 tokens)\n"},
		{[]string{"-token-ttl", "90.5s"}, "tokend dev: -token-ttl 90.5s: must be a whole number of seconds\n"},
		{[]string{"-rotate-before", "5m"}, "tokend dev: -rotate-before 5m: must be shorter than -token-ttl (2m)\n"},
		{[]string{"-rotate-before", "0s"}, "tokend dev: -rotate-before 0s: must be greater than 0\n"},
		{[]string{"-revoke-after", "2m"}, "tokend dev: -revoke-after 2m: must be shorter than -token-ttl (2m)\n"},
		{[]string{"-token-ttl", "3m", "-revoke-after", "1h"}, "tokend dev: -revoke-after 1h: must be shorter than -token-ttl (3m)\n"},
		{[]string{"-token-ttl", "10s", "-rotate-before", "0"},
			"tokend dev: -token-ttl 10s: must be between 1m and 30d (LINE's limit for v2.1 tokens)\n  -rotate-before 0: must be greater than 0\n"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		code, _, stderr := argsRun(t, dir, append([]string{"dev", "-dir", "d"}, tt.args...)...)
		if code != 2 || stderr != tt.want {
			t.Errorf("dev %q: exit %d, stderr:\n%s\nwant exit 2, stderr:\n%s", tt.args, code, stderr, tt.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("dev %q created %v", tt.args, ents)
		}
	}
	// A file where -dir names a directory.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := argsRun(t, dir, "dev", "-dir", "f"); code != 2 || stderr != "tokend dev: -dir f: not a directory\n" {
		t.Errorf("dev -dir FILE: exit %d, stderr %q; want exit 2 naming -dir", code, stderr)
	}
	// A negative value is refused by the flag parser, with the usage.
	code, _, stderr := argsRun(t, t.TempDir(), "dev", "-dir", "d", "-revoke-after", "-1s")
	if code != 2 || !strings.Contains(stderr, `invalid value "-1s" for flag -revoke-after: must not be negative`) {
		t.Errorf("dev -revoke-after -1s: exit %d\n%s", code, stderr)
	}
}

// devLockSnapshot reads the files of a dev directory that a second dev
// must not change: the config, the keys and the secrets.
func devLockSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pattern := range []string{"config.yaml", "keys/*", "secrets/*"} {
		names, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(n)
			if err != nil {
				t.Fatal(err)
			}
			out[n] = fi.ModTime().String() + "\n" + string(b)
		}
	}
	return out
}

// TestDevSecondOnSameDirChangesNothing starts `tokend dev`, then a second
// one on the same directory. The second must exit 2 saying the directory
// is in use, without touching the first one's config (which used to be
// rewritten to name the second one's simulator, dead once it exited), keys
// or secrets; the first keeps serving its token.
func TestDevSecondOnSameDirChangesNothing(t *testing.T) {
	t.Parallel()
	tmp, err := os.MkdirTemp("", "tkdev") // short: the socket lives in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(tmp, "d")
	first := exec.Command(binary, "dev", "-dir", dir)
	stderr := &syncBuffer{}
	first.Stderr = stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	t.Cleanup(func() { first.Process.Kill() })
	sock := filepath.Join(dir, "tokend.sock")
	var tok string
	waitFor(t, "the first dev to serve shop-bot's token", 30*time.Second, func() bool {
		code, out, _ := argsRun(t, "", "token", "-socket", sock, "shop-bot")
		tok = out
		return code == 0 && out != ""
	})
	before := devLockSnapshot(t, dir)
	if len(before) != 5 {
		t.Fatalf("dev directory holds %d of config, keys and secrets, want 5", len(before))
	}

	code, _, stderr2 := argsRun(t, tmp, "dev", "-dir", "d")
	if code != 2 || !strings.Contains(stderr2, dir+" is in use by another tokend dev") {
		t.Errorf("second dev: exit %d\n%s", code, stderr2)
	}
	after := devLockSnapshot(t, dir)
	for n, b := range before {
		if after[n] != b {
			t.Errorf("second dev changed %s:\n%s\nwas:\n%s", n, after[n], b)
		}
	}
	if len(after) != len(before) {
		t.Errorf("second dev added files: %d, was %d", len(after), len(before))
	}

	// The config still names the first one's simulator, which answers.
	cfg, _ := os.ReadFile(filepath.Join(dir, "config.yaml"))
	var base string
	for _, line := range strings.Split(string(cfg), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "base_url: http://"); ok {
			base = v
		}
	}
	if c, err := net.DialTimeout("tcp", base, 2*time.Second); err != nil {
		t.Errorf("config's line.base_url %q does not answer: %v", base, err)
	} else {
		c.Close()
	}
	if code, out, errOut := argsRun(t, "", "token", "-socket", sock, "shop-bot"); code != 0 || out != tok {
		t.Errorf("first dev after the second: token exit %d, same token %v\n%s", code, out == tok, errOut)
	}

	first.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first dev exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first dev did not stop on SIGINT")
	}
}

// TestDevStateDirHeldElsewhere: a state directory held by another tokend
// (here this test, holding the store) is reported as the daemon reports
// it, before dev writes its config, keys or secrets.
func TestDevStateDirHeldElsewhere(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "d")
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const sentinel = "# someone else's config\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(sentinel), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := argsRun(t, tmp, "dev", "-dir", "d")
	want := "tokend dev: state_dir: state directory " + filepath.Join(dir, "state") + " is in use by another tokend"
	if code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("dev on a held state directory: exit %d\n%s\nwant exit 2 and %q", code, stderr, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "config.yaml")); string(b) != sentinel {
		t.Errorf("config.yaml rewritten:\n%s", b)
	}
	for _, sub := range []string{"keys", "secrets", "tokens"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			t.Errorf("dev created %s", sub)
		}
	}
}

// TestDevSocketPerDirectory: each dev directory has its own socket, also
// when the directory is too deep for one inside it (sun_path's 108 bytes):
// two devs on two deep directories do not contend for one path.
func TestDevSocketPerDirectory(t *testing.T) {
	short := devSocket("/tmp/d")
	if short != "/tmp/d/tokend.sock" {
		t.Errorf("devSocket(/tmp/d) = %s", short)
	}
	deep := "/" + strings.Repeat("d", 120)
	a, b := devSocket(deep+"/a"), devSocket(deep+"/b")
	if a == b {
		t.Errorf("two deep directories share the socket %s", a)
	}
	for _, p := range []string{a, b} {
		if len(p) >= 100 || !strings.HasPrefix(p, os.TempDir()) {
			t.Errorf("deep directory's socket %s: want a short path in %s", p, os.TempDir())
		}
	}
	if devSocket(deep+"/a") != a {
		t.Error("the same directory got another socket")
	}
}
