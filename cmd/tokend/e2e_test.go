package main

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
)

// The end-to-end tests build tokend and run it as a user does: a real
// process with a real config file against the LINE simulator on loopback,
// real output files, a real Unix socket, real signals.

var (
	binary   string
	keyOnce  sync.Once
	e2eKey   *rsa.PrivateKey
	e2eKeyJW []byte
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokend-e2e-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tokend")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tokend: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func key(t *testing.T) (*rsa.PrivateKey, []byte) {
	keyOnce.Do(func() {
		k, err := oauth.GenerateKey()
		if err != nil {
			panic(err)
		}
		jwk, err := oauth.MarshalPrivateJWK(k)
		if err != nil {
			panic(err)
		}
		e2eKey, e2eKeyJW = k, jwk
	})
	return e2eKey, e2eKeyJW
}

const kid = "5f1d7a52-1111-4c2e-9a0b-6a7d8e9f0a1b"

// env is one test's world: a simulator, a directory, a config.
type env struct {
	t     *testing.T
	dir   string
	sim   *linefake.Server
	srv   *httptest.Server
	cfg   string
	sock  string
	names []string
}

// channelYAML is one channel of the test config.
func channelYAML(id, name, outDir string) string {
	return fmt.Sprintf(`
  - id: "%s"
    name: %s
    key_id: %s
    private_key_file: key.jwk
    channel_secret_file: secret-%s
    outputs:
      - {path: "%s/%s.token", format: raw, mode: "0640"}
      - {path: "%s/%s.json", format: json}
`, id, name, kid, name, outDir, name, outDir, name)
}

func newEnv(t *testing.T, n int, extra string) *env {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	e := &env{t: t, dir: t.TempDir(), sim: linefake.New(linefake.Options{}), sock: filepath.Join(sockDir, "tokend.sock")}
	e.srv = httptest.NewServer(e.sim)
	t.Cleanup(e.srv.Close)
	k, jwk := key(t)
	if err := os.WriteFile(filepath.Join(e.dir, "key.jwk"), jwk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	var chans strings.Builder
	for i := range n {
		id, name := fmt.Sprintf("17%08d", i+1), fmt.Sprintf("bot-%d", i+1)
		secret := fmt.Sprintf("s3cr3t-%d-%d", i, time.Now().UnixNano())
		if err := os.WriteFile(filepath.Join(e.dir, "secret-"+name), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		e.sim.AddChannel(id, secret)
		e.sim.RegisterKey(id, kid, &k.PublicKey)
		e.names = append(e.names, name)
		chans.WriteString(channelYAML(id, name, filepath.Join(e.dir, "out")))
	}
	e.writeConfig(chans.String(), extra)
	return e
}

func (e *env) writeConfig(channels, extra string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`state_dir: %s/state
log: {level: debug, format: json}
line: {base_url: %s, timeout: 2s, max_in_flight: 4}
socket: {path: %s, mode: "0600"}
%s
channels:%s`, e.dir, e.srv.URL, e.sock, extra, channels)
	e.cfg = filepath.Join(e.dir, "config.yaml")
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) out(name string) string { return filepath.Join(e.dir, "out", name) }

// proc is a running tokend; its stderr goes to a syncBuffer (start) or a
// relLog (relStart).
type proc struct {
	cmd    *exec.Cmd
	stderr interface {
		io.Writer
		String() string
	}
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *env) command(extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "TOKEND_CONFIG="+e.cfg)
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd
}

func (e *env) start(extraEnv []string, args ...string) *proc {
	e.t.Helper()
	return e.startTo(&syncBuffer{}, extraEnv, args...)
}

// startTo starts tokend with args, its stderr to stderr.
func (e *env) startTo(stderr interface {
	io.Writer
	String() string
}, extraEnv []string, args ...string) *proc {
	e.t.Helper()
	p := &proc{cmd: e.command(extraEnv, args...), stderr: stderr, done: make(chan struct{})}
	p.cmd.Stderr = stderr
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exitCode waits up to within for p to exit and returns its exit code, or
// -1 for a signal, or fails the test.
func (p *proc) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("tokend did not exit within %s; stderr:\n%s", within, relTail(p.stderr.String(), 4000))
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(p.err)
	return -1
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// runCmd runs tokend to completion and returns exit code, stdout, stderr.
func (e *env) runCmd(args ...string) (int, string, string) {
	e.t.Helper()
	return exitOf(e.t, e.command(nil, args...))
}

// exitOf runs cmd to completion and returns its exit code (-1 if a signal
// ended it), stdout and stderr.
func exitOf(t *testing.T, cmd *exec.Cmd) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestDaemonPublishesAndStopsCleanly(t *testing.T) {
	e := newEnv(t, 2, "")
	p := e.start(nil, "run")
	waitFor(t, "outputs", 10*time.Second, func() bool {
		return fileExists(e.out("bot-2.json")) && fileExists(e.out("bot-1.json"))
	})
	for _, name := range e.names {
		raw, err := os.ReadFile(e.out(name + ".token"))
		if err != nil {
			t.Fatal(err)
		}
		if !e.sim.IsValid(string(raw)) || bytes.HasSuffix(raw, []byte("\n")) {
			t.Fatalf("%s.token does not hold a valid bare token", name)
		}
		var js struct {
			AccessToken string `json:"access_token"`
			Name        string `json:"name"`
		}
		b, _ := os.ReadFile(e.out(name + ".json"))
		if err := json.Unmarshal(b, &js); err != nil || js.AccessToken != string(raw) || js.Name != name {
			t.Fatalf("%s.json wrong: %v", name, err)
		}
		for file, mode := range map[string]os.FileMode{name + ".token": 0o640, name + ".json": 0o600} {
			fi, _ := os.Stat(e.out(file))
			if fi.Mode().Perm() != mode {
				t.Errorf("%s mode %v, want %v", file, fi.Mode().Perm(), mode)
			}
		}
		// The socket serves the same token, by name.
		code, out, stderr := e.runCmd("token", "-socket", e.sock, name)
		if code != 0 || out != string(raw) {
			t.Fatalf("tokend token %s: exit %d, stderr %s", name, code, stderr)
		}
	}
	code, out, _ := e.runCmd("status", "-socket", e.sock)
	if code != 0 || !strings.Contains(out, "bot-1") || !strings.Contains(out, "bot-2") {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	code, _, stderr := e.runCmd("token", "-socket", e.sock, "nope")
	if code != 1 || !strings.Contains(stderr, `unknown channel "nope"`) {
		t.Errorf("token for unknown channel: exit %d, %s", code, stderr)
	}

	// A second instance on the same state_dir exits 2 naming the directory.
	code, _, stderr = e.runCmd("run")
	if code != 2 || !strings.Contains(stderr, filepath.Join(e.dir, "state")) || !strings.Contains(stderr, "in use") {
		t.Errorf("second instance: exit %d, stderr:\n%s", code, stderr)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d; stderr:\n%s", code, p.stderr.String())
	}
	if fileExists(e.sock) {
		t.Error("socket file left behind after a clean stop")
	}

	// Restart: zero issue calls, outputs untouched.
	before := e.sim.Count(linefake.EndpointIssueV21)
	st, _ := os.Stat(e.out("bot-1.token"))
	p = e.start(nil, "run")
	waitFor(t, "socket", 10*time.Second, func() bool { return fileExists(e.sock) })
	code, _, _ = e.runCmd("token", "-socket", e.sock, "bot-1")
	if code != 0 {
		t.Fatal("restarted daemon serves no token")
	}
	if got := e.sim.Count(linefake.EndpointIssueV21); got != before {
		t.Errorf("restart made %d issue calls", got-before)
	}
	st2, _ := os.Stat(e.out("bot-1.token"))
	if !os.SameFile(st, st2) || !st.ModTime().Equal(st2.ModTime()) {
		t.Error("restart rewrote an unchanged output")
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("SIGINT: exit %d", code)
	}
}

func TestRunOnceExitCodes(t *testing.T) {
	e := newEnv(t, 2, "")
	code, _, stderr := e.runCmd("run", "-once")
	if code != 0 {
		t.Fatalf("run -once: exit %d\n%s", code, stderr)
	}
	if !fileExists(e.out("bot-1.token")) || !fileExists(e.out("bot-2.token")) {
		t.Fatal("run -once wrote no outputs")
	}
	// LINE refuses: a fresh state cannot get tokens, exit 1 naming the channels.
	e2 := newEnv(t, 1, "")
	e2.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Status: 500})
	code, _, stderr = e2.runCmd("run", "-once")
	if code != 1 || !strings.Contains(stderr, "bot-1") {
		t.Fatalf("run -once against a failing LINE: exit %d\n%s", code, stderr)
	}
}

func TestCheckAndConfigErrors(t *testing.T) {
	e := newEnv(t, 1, "")
	code, out, stderr := e.runCmd("check")
	if code != 0 || !strings.Contains(out, "ok (1 channel)") {
		t.Fatalf("check: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = e.runCmd("check", "-online")
	if code != 0 || !strings.Contains(out, "ok (1 channel; online: LINE listed the valid key IDs of 1 keyed channel") ||
		!strings.Contains(out, "channel secrets are not checked online") {
		t.Fatalf("check -online: exit %d\n%s%s", code, out, stderr)
	}
	// -online with an unregistered key ID.
	e.sim.RegisterKey("1700000001", "other", &e2eKey.PublicKey)
	cfg, _ := os.ReadFile(e.cfg)
	os.WriteFile(e.cfg, bytes.ReplaceAll(cfg, []byte(kid), []byte("unknown-kid")), 0o600)
	code, _, stderr = e.runCmd("check", "-online")
	if code != 2 || !strings.Contains(stderr, "Cannot find channel key") {
		t.Fatalf("check -online with unknown kid: exit %d\n%s", code, stderr)
	}

	// Several problems are all listed, each with its key path.
	os.WriteFile(e.cfg, []byte(fmt.Sprintf(`state_dir: %s/state
channels:
  - id: "12x"
    key_id: k
    private_key_file: key.jwk
    channel_secret: s
    outputs: [{path: %s/o, mode: "0999"}]
`, e.dir, e.dir)), 0o600)
	for _, args := range [][]string{{"check"}, {"run"}, {"run", "-once"}} {
		code, _, stderr = e.runCmd(args...)
		if code != 2 || !strings.Contains(stderr, "channels[0].id") || !strings.Contains(stderr, "channels[0].outputs[0].mode") {
			t.Errorf("%v with a bad config: exit %d\n%s", args, code, stderr)
		}
	}

	// A key readable by others is refused.
	e = newEnv(t, 1, "")
	os.Chmod(filepath.Join(e.dir, "key.jwk"), 0o644)
	code, _, stderr = e.runCmd("check")
	if code != 2 || !strings.Contains(stderr, "readable by group or others") {
		t.Errorf("check with a 0644 key: exit %d\n%s", code, stderr)
	}
	code, _, stderr = e.runCmd("run")
	if code != 2 || !strings.Contains(stderr, "readable by group or others") {
		t.Errorf("run with a 0644 key: exit %d\n%s", code, stderr)
	}

	// Usage errors.
	if code, _, _ := e.runCmd("frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code, _, _ := e.runCmd("run", "-bogus"); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code, out, _ := e.runCmd("version"); code != 0 || !strings.HasPrefix(out, "tokend ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.jwk")
	cmd := exec.Command(binary, "keygen", "-out", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, stderr.String())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", fi, err)
	}
	if _, err := oauth.LoadPrivateKey(path); err != nil {
		t.Fatal(err)
	}
	var pub map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &pub); err != nil {
		t.Fatalf("public JWK: %v\n%s", err, stdout.String())
	}
	if _, has := pub["kid"]; has || pub["alg"] != "RS256" || pub["use"] != "sig" || pub["kty"] != "RSA" || pub["d"] != nil {
		t.Errorf("public JWK = %v", pub)
	}
	cmd = exec.Command(binary, "keygen", "-out", path)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already exists") {
		t.Errorf("keygen over an existing file: %v %s", err, out)
	}
	// Into a directory that is not there: the message says to create it.
	missing := filepath.Join(dir, "keys")
	cmd = exec.Command(binary, "keygen", "-out", filepath.Join(missing, "k.jwk"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "(directory "+missing+" does not exist: create it first, mode 0700)") {
		t.Errorf("keygen into a missing directory: %v %s", err, out)
	}
}

// notifySocket is a datagram socket standing in for systemd's.
func notifySocket(t *testing.T) (string, <-chan string) {
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

func expectNotify(t *testing.T, msgs <-chan string, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %s", prefix)
			}
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s notification within %s", prefix, within)
		}
	}
}

func TestSystemdNotify(t *testing.T) {
	e := newEnv(t, 2, "")
	path, msgs := notifySocket(t)
	p := e.start([]string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=200000"}, "run")
	expectNotify(t, msgs, "READY=1", 10*time.Second)
	for _, name := range e.names {
		if !fileExists(e.out(name+".token")) || !fileExists(e.out(name+".json")) {
			t.Fatalf("READY=1 sent before %s's outputs exist", name)
		}
	}
	expectNotify(t, msgs, "WATCHDOG=1", 2*time.Second)

	p.cmd.Process.Signal(syscall.SIGHUP)
	m := expectNotify(t, msgs, "RELOADING=1", 5*time.Second)
	if !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	expectNotify(t, msgs, "READY=1", 5*time.Second)

	p.cmd.Process.Signal(syscall.SIGTERM)
	expectNotify(t, msgs, "STOPPING=1", 10*time.Second)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestReloadAddRemoveInvalid(t *testing.T) {
	e := newEnv(t, 2, "")
	p := e.start(nil, "run")
	// Both: each channel publishes after its own commit, and overlapping
	// commits are shared within a window, so one may land a little later.
	waitFor(t, "outputs", 10*time.Second, func() bool {
		return fileExists(e.out("bot-1.token")) && fileExists(e.out("bot-2.token"))
	})
	tok1, err := os.ReadFile(e.out("bot-1.token"))
	if err != nil || len(tok1) == 0 {
		t.Fatalf("bot-1's output: %q, %v", tok1, err)
	}

	// Add bot-3, remove bot-2.
	k, _ := key(t)
	e.sim.AddChannel("1700000003", "s3")
	e.sim.RegisterKey("1700000003", kid, &k.PublicKey)
	os.WriteFile(filepath.Join(e.dir, "secret-bot-3"), []byte("s3"), 0o600)
	outDir := filepath.Join(e.dir, "out")
	e.writeConfig(channelYAML("1700000001", "bot-1", outDir)+channelYAML("1700000003", "bot-3", outDir), "")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "bot-3 output", 10*time.Second, func() bool { return fileExists(e.out("bot-3.token")) })
	if code, _, _ := e.runCmd("token", "-socket", e.sock, "bot-2"); code != 1 {
		t.Error("removed channel still served")
	}
	if tok, _ := os.ReadFile(e.out("bot-1.token")); !bytes.Equal(tok, tok1) {
		t.Error("reload replaced bot-1's token")
	}

	// An invalid config is rejected; the old one keeps running.
	os.WriteFile(e.cfg, []byte("channels: [{id: nope}]\nbogus: 1\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload rejection", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "reload rejected")
	})
	for _, name := range []string{"bot-1", "bot-3"} {
		if code, _, _ := e.runCmd("token", "-socket", e.sock, name); code != 0 {
			t.Errorf("%s not served after a rejected reload", name)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// cpuTicks is the CPU time (user and system, in clock ticks) process pid
// has used, from /proc/pid/stat.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// After "(comm)": state is field 3; utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// TestSIGHUPWhileLoadingTheConfig: a SIGHUP that arrives while tokend is
// still loading its config (here 24,000 channels, about 0.4 s of CPU on
// the 2-core CI machine) does not end the process, as SIGHUP's default action did (exit by
// signal, which systemd does not restart): it reloads once the daemon runs.
// The signal goes out once tokend has used 0.1 s of CPU: past the Go
// runtime's start (a few hundredths), well before the config is loaded.
func TestSIGHUPWhileLoadingTheConfig(t *testing.T) {
	e := newEnv(t, 0, "")
	var chans strings.Builder
	for i := range 24000 {
		fmt.Fprintf(&chans, "\n  - {id: \"%d\", kind: short-lived, channel_secret: s%d}", 1800000000+i, i)
	}
	e.writeConfig(chans.String(), "")
	cfg, _ := os.ReadFile(e.cfg)
	// LINE unreachable: the daemon just keeps trying.
	os.WriteFile(e.cfg, []byte(strings.Replace(string(cfg), e.srv.URL, "http://127.0.0.1:1", 1)), 0o600)
	p := e.start(nil, "run")
	pid := p.cmd.Process.Pid
	deadline := time.Now().Add(20 * time.Second)
	for cpuTicks(t, pid) < 10 {
		if !p.alive() || time.Now().After(deadline) {
			t.Fatalf("tokend gone or stuck before 0.1 s of CPU:\n%s", relTail(p.stderr.String(), 2000))
		}
		time.Sleep(time.Millisecond)
	}
	if fileExists(e.sock) {
		t.Fatal("the config was loaded (the socket is there) before 0.1 s of CPU: give the test a bigger config")
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload after the start", 30*time.Second, func() bool {
		return !p.alive() || strings.Contains(p.stderr.String(), `"msg":"configuration reloaded"`)
	})
	if !p.alive() {
		t.Fatalf("tokend ended on a SIGHUP during its start: %v\n%s", p.err, relTail(p.stderr.String(), 2000))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestSecondSignalStopsAtOnce: the first SIGINT asks for a clean stop,
// which waits for the LINE call under way (here one LINE holds for 10 s,
// up to line.timeout, 2 s); a second ends the process at once, exit 130,
// as an operator pressing Ctrl-C twice expects (by an exit of tokend's
// own: the signal's default action does nothing for pid 1).
func TestSecondSignalStopsAtOnce(t *testing.T) {
	e := newEnv(t, 1, "")
	e.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Delay: 10 * time.Second})
	p := e.start(nil, "run")
	waitFor(t, "an issue call under way", 10*time.Second, func() bool { return e.sim.InFlight() > 0 })
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for p.alive() && time.Since(start) < 1500*time.Millisecond {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		time.Sleep(50 * time.Millisecond)
	}
	if code := p.exitCode(t, 10*time.Second); code != 130 {
		t.Fatalf("exit status %d after a second SIGINT: want 130 at once (a clean stop waits for the call, and exits 0)", code)
	}
}
