package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
)

// Helpers of the reliability tests (crash_test.go, socketload_test.go,
// hygiene_test.go). They extend env from e2e_test.go; every name starts
// with "rel" so it cannot collide with other test files of the package.

// relShortDefaults makes a v2.1 token live a minute: tokend rotates it at
// half its life (RotateAt never rotates in a token's first half), so every
// 30 s, and revokes the superseded one a second later.
const relShortDefaults = "defaults: {token_ttl: 1m, rotate_before: 55s, revoke_after: 1s, jitter: 0, reconcile_every: 1m}"

// newRelEnv is newEnv without channels, with the simulator's handler
// wrapped by wrap (nil: none). Channels are added with relChannel.
func newRelEnv(t *testing.T, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	e := &env{t: t, dir: t.TempDir(), sim: linefake.New(linefake.Options{}), sock: filepath.Join(sockDir, "tokend.sock")}
	var h http.Handler = e.sim
	if wrap != nil {
		h = wrap(e.sim)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	_, jwk := key(t)
	if err := os.WriteFile(filepath.Join(e.dir, "key.jwk"), jwk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

// relChanOpts describes one test channel.
type relChanOpts struct {
	keyFile string   // private_key_file (default key.jwk)
	extra   string   // more YAML keys of the channel, each line indented 4 spaces
	formats []string // one output per format, at out/<name>.<format>; default raw, json, env
	modes   []string // mode of each output ("" = tokend's default)
}

// relChannel registers a channel at the simulator (with the shared key and
// a fresh secret, written to secret-<name>) and returns its config YAML and
// its secret.
func (e *env) relChannel(id, name string, o relChanOpts) (string, string) {
	e.t.Helper()
	k, _ := key(e.t)
	secret := fmt.Sprintf("chsec-%s-%x", name, time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(e.dir, "secret-"+name), []byte(secret+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.sim.AddChannel(id, secret)
	e.sim.RegisterKey(id, kid, &k.PublicKey)
	e.names = append(e.names, name)
	if o.keyFile == "" {
		o.keyFile = "key.jwk"
	}
	if o.formats == nil {
		o.formats = []string{"raw", "json", "env"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  - id: %q\n    name: %s\n    key_id: %s\n    private_key_file: %s\n    channel_secret_file: secret-%s\n",
		id, name, kid, o.keyFile, name)
	b.WriteString(o.extra)
	b.WriteString("    outputs:\n")
	for i, f := range o.formats {
		mode := ""
		if i < len(o.modes) && o.modes[i] != "" {
			mode = fmt.Sprintf(", mode: %q", o.modes[i])
		}
		fmt.Fprintf(&b, "      - {path: %s, format: %s%s}\n", e.out(name+"."+f), f, mode)
	}
	return b.String(), secret
}

// relLog collects a process's stderr, calling onLine with every complete
// line (and its JSON fields, nil if it is not a JSON object) as it arrives.
type relLog struct {
	mu     sync.Mutex
	all    bytes.Buffer
	part   []byte
	lines  int
	onLine func(line []byte, fields map[string]any)
}

func (l *relLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.all.Write(p)
	l.part = append(l.part, p...)
	var done [][]byte
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		done = append(done, append([]byte(nil), l.part[:i]...))
		l.part = l.part[i+1:]
	}
	l.lines += len(done)
	on := l.onLine
	l.mu.Unlock()
	for _, line := range done {
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			m = nil
		}
		if on != nil {
			on(line, m)
		}
	}
	return len(p), nil
}

func (l *relLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

func (l *relLog) Lines() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines
}

// relStart starts tokend with args, stderr to log.
func (e *env) relStart(log *relLog, extraEnv []string, args ...string) *proc {
	e.t.Helper()
	return e.startTo(log, extraEnv, args...)
}

// relTail is the last n bytes of s.
func relTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// relClient is an HTTP client of the daemon's Unix socket.
func relClient(sock string, timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 4,
			DisableCompression:  true,
		},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// relGet fetches path on the socket: status and body, or an error.
func relGet(c *http.Client, path string) (int, []byte, error) {
	resp, err := c.Get("http://tokend" + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// relRaw sends data on a fresh connection to the socket and returns what
// the server answers until it closes the connection or within passes. It
// reads while it writes, so an answer sent before the server stops reading
// (431 to a huge header) is not lost to a reset.
func relRaw(sock string, data []byte, within time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", sock, within)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(within))
	werr := make(chan error, 1)
	go func() { _, err := c.Write(data); werr <- err }()
	got, err := io.ReadAll(c)
	if err == nil || len(got) > 0 {
		return string(got), nil
	}
	if w := <-werr; w != nil {
		return "", w
	}
	return "", err
}

// relRaiseNofile raises this process's open-file limit (the daemon
// inherits it) to at least want, up to the hard limit.
func relRaiseNofile(t *testing.T, want uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return lim.Cur
	}
	old := lim
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise RLIMIT_NOFILE to %d: %v", lim.Cur, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	return lim.Cur
}

// relFDs counts the open file descriptors of process pid.
func relFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// relSummary logs the one-line summary of a test and, if the environment
// variable envVar names a file, appends it there.
func relSummary(t *testing.T, envVar, line string) {
	t.Helper()
	t.Log(line)
	if path := os.Getenv(envVar); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("write summary: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}
