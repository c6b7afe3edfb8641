//go:build linux

package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
)

// diskReadOnly makes dir read-only for everyone, root included, with a
// read-only bind mount of dir onto itself, undone when the test ends.
// Without the right to mount, a non-root user gets chmod 0500 instead;
// root, which ignores permission bits, is skipped.
func diskReadOnly(t *testing.T, dir string) {
	t.Helper()
	err := syscall.Mount(dir, dir, "", syscall.MS_BIND, "")
	if err == nil {
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
		if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount %s read-only: %v", dir, err)
		}
		return
	}
	if os.Geteuid() == 0 {
		t.Skipf("cannot bind-mount %s read-only (%v), and root ignores permission bits", dir, err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
}

// setStateDir points e's config at another state_dir.
func (e *env) setStateDir(dir string) {
	e.t.Helper()
	cfg, err := os.ReadFile(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	old := []byte("state_dir: " + filepath.Join(e.dir, "state") + "\n")
	if !bytes.Contains(cfg, old) {
		e.t.Fatalf("config has no %q", old)
	}
	cfg = bytes.Replace(cfg, old, []byte("state_dir: "+dir+"\n"), 1)
	if err := os.WriteFile(e.cfg, cfg, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestStateDirUnwritable: a state_dir tokend cannot use stops `run` and
// `run -once` at start with exit 2 and a message naming the path.
func TestStateDirUnwritable(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env) (stateDir string)
		check bool // `tokend check` finds it too
	}{
		{
			name:  "under a regular file",
			check: true,
			setup: func(t *testing.T, e *env) string {
				file := filepath.Join(e.dir, "volume")
				if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(file, "state")
			},
		},
		{
			name:  "a regular file",
			check: true,
			setup: func(t *testing.T, e *env) string {
				file := filepath.Join(e.dir, "statefile")
				if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				return file
			},
		},
		{
			name:  "to be created on a read-only mount",
			check: true,
			setup: func(t *testing.T, e *env) string {
				ro := filepath.Join(e.dir, "ro")
				if err := os.Mkdir(ro, 0o755); err != nil {
					t.Fatal(err)
				}
				diskReadOnly(t, ro)
				return filepath.Join(ro, "state")
			},
		},
		{
			name:  "holding a store then remounted read-only",
			check: true,
			setup: func(t *testing.T, e *env) string {
				dir := filepath.Join(e.dir, "state")
				if code, _, stderr := e.runCmd("run", "-once"); code != 0 {
					t.Fatalf("run -once on a writable state_dir: exit %d\n%s", code, stderr)
				}
				diskReadOnly(t, dir)
				return dir
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1, "")
			dir := tt.setup(t, e)
			e.setStateDir(dir)
			before := e.sim.Count(linefake.EndpointIssueV21)
			for _, args := range [][]string{{"run"}, {"run", "-once"}} {
				code, _, stderr := e.runCmd(args...)
				if code != 2 || !strings.Contains(stderr, dir) || !strings.Contains(stderr, "state_dir") {
					t.Errorf("tokend %s: exit %d, want 2 and a message naming state_dir %s; stderr:\n%s", strings.Join(args, " "), code, dir, stderr)
				}
				t.Logf("tokend %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(stderr))
			}
			if got := e.sim.Count(linefake.EndpointIssueV21) - before; got != 0 {
				t.Errorf("%d tokens issued although they could not be recorded", got)
			}
			if tt.check {
				if code, _, stderr := e.runCmd("check"); code != 2 || !strings.Contains(stderr, dir) {
					t.Errorf("tokend check: exit %d, want 2 naming %s; stderr:\n%s", code, dir, stderr)
				}
			}
		})
	}
}

// TestOutputDirMissingProcess: the daemon with one channel whose output
// directory is missing publishes the other channel, logs the failure with
// the path, counts it, and writes the output once the directory appears,
// reusing the token it already holds.
func TestOutputDirMissingProcess(t *testing.T) {
	e := newEnv(t, 2, "")
	late := filepath.Join(e.dir, "late")
	e.writeConfig(channelYAML("1700000001", "bot-1", late)+channelYAML("1700000002", "bot-2", filepath.Join(e.dir, "out")), "")

	// One pass: bot-2 is published, bot-1 holds a token it cannot write.
	code, _, stderr := e.runCmd("run", "-once")
	if want := "1 of 2 channels hold a valid token not yet written to every output (see the output write errors): bot-1"; code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "no valid token") {
		t.Fatalf("run -once with bot-1's directory missing: exit %d, want 1 and %q\n%s", code, want, stderr)
	}
	if !strings.Contains(stderr, "output write failed") || !strings.Contains(stderr, filepath.Join(late, "bot-1.token")) {
		t.Errorf("the failed write is not logged with its path:\n%s", stderr)
	}
	if !fileExists(e.out("bot-2.token")) {
		t.Fatal("bot-2 not published")
	}
	issued := e.sim.Count(linefake.EndpointIssueV21)

	p := e.start(nil, "run")
	waitFor(t, "socket", 10*time.Second, func() bool { return fileExists(e.sock) })
	waitFor(t, "a failed write", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "output write failed")
	})
	if n := outputErrors(t, e.sock, "bot-1"); n < 1 {
		t.Errorf("tokend_output_errors_total{channel=\"bot-1\"} = %v, want ≥ 1", n)
	}
	if n := outputErrors(t, e.sock, "bot-2"); n != 0 {
		t.Errorf("tokend_output_errors_total{channel=\"bot-2\"} = %v, want 0", n)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := os.Mkdir(late, 0o755); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	waitFor(t, "bot-1's output", 15*time.Second, func() bool { return fileExists(filepath.Join(late, "bot-1.json")) })
	t.Logf("bot-1 written %s after its directory appeared", time.Since(created).Round(10*time.Millisecond))
	raw, err := os.ReadFile(filepath.Join(late, "bot-1.token"))
	if err != nil {
		t.Fatal(err)
	}
	code, tok, _ := e.runCmd("token", "-socket", e.sock, "bot-1")
	if code != 0 || tok != string(raw) || !e.sim.IsValid(tok) {
		t.Fatalf("bot-1's file does not hold the token the daemon serves (exit %d)", code)
	}
	if got := e.sim.Count(linefake.EndpointIssueV21); got != issued {
		t.Errorf("%d tokens issued; the one already recorded should have been reused", got-issued)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
}

// outputErrors reads tokend_output_errors_total for channel from the
// daemon's /metrics on its socket.
func outputErrors(t *testing.T, sock, channel string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://tokend/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^tokend_output_errors_total\{channel="` + regexp.QuoteMeta(channel) + `"\} (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no tokend_output_errors_total for %s in /metrics", channel)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
