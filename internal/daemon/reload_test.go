package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
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

// reloadSim writes one key file to dir and starts a simulator that knows
// channel 1657000001 (secret s1) with that key as kid-1, closed at the
// test's end.
func reloadSim(t *testing.T, dir string) (keyPath string, srv *httptest.Server) {
	t.Helper()
	keyPath, _, srv = simFor(t, dir, "1657000001")
	return keyPath, srv
}

// simFor serves a simulator that knows each of ids, with secret s1 and
// the key in keyPath (written into dir) under kid-1.
func simFor(t *testing.T, dir string, ids ...string) (keyPath string, sim *linefake.Server, srv *httptest.Server) {
	t.Helper()
	keyPath = writeKeys(t, dir, 1)[0]
	key, err := oauth.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	sim = linefake.New(linefake.Options{})
	srv = httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	for _, id := range ids {
		sim.AddChannel(id, "s1")
		sim.RegisterKey(id, "kid-1", &key.PublicKey)
	}
	return keyPath, sim, srv
}

// runDaemon runs d until the returned stop is called, which then checks
// that Run ended without error.
func runDaemon(t *testing.T, d *Daemon) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestReloadSettings: a reload applies log.level, socket.allowed_uids and
// socket.mode at once, and for the settings that change only on restart
// (README, Reload) it says so, one warning each, and keeps the running
// ones: a later reload compares with what runs, so changing one back is no
// change and one still waiting is warned about again. systemd hears
// RELOADING=1 with MONOTONIC_USEC, then READY=1.
func TestReloadSettings(t *testing.T) {
	dir := t.TempDir()
	keyPath, srv := reloadSim(t, dir)

	type settings struct {
		level, state, sock, metrics, base, timeout, format, mode string
		inFlight                                                 int
		uids                                                     []int
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	write := func(c settings) {
		t.Helper()
		y := fmt.Sprintf(`state_dir: %s
log: {level: %s, format: %s}
line: {base_url: %q, timeout: %s, max_in_flight: %d}
socket: {path: %s, mode: "%s", allowed_uids: %s}
metrics_listen: %q
channels:
  - {id: "1657000001", name: bot-1, key_id: kid-1, private_key_file: %s, channel_secret: s1, outputs: [{path: %s, format: raw}]}
`, c.state, c.level, c.format, c.base, c.timeout, c.inFlight, c.sock, c.mode, strings.ReplaceAll(fmt.Sprint(c.uids), " ", ","),
			c.metrics, keyPath, filepath.Join(dir, "bot-1.token"))
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	uid := os.Getuid()
	sock := filepath.Join(dir, "s.sock")
	first := settings{
		level: "info", state: filepath.Join(dir, "state"), sock: sock, base: srv.URL,
		timeout: "10s", inFlight: 4, format: "json", mode: "0660", uids: []int{uid + 1},
	}
	write(first)
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
		// The test's requests come from the daemon's own uid, which
		// allowed_uids otherwise always lets in (TestAllowedUIDsLetInTokendsOwn).
		selfUID: func() int { return -1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer runDaemon(t, d)()
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
	reloadWith := func(c settings) {
		t.Helper()
		write(c)
		reload <- struct{}{}
		if n := next(); !strings.HasPrefix(n, "RELOADING=1\nMONOTONIC_USEC=") {
			t.Fatalf("notification %q, want RELOADING=1 with MONOTONIC_USEC", n)
		}
		if n := next(); n != "READY=1" {
			t.Fatalf("notification %q after the reload, want READY=1", n)
		}
	}
	warned := func() []string {
		var keys []string
		for _, e := range logs.FilterMessage("setting changes only on restart").All() {
			keys = append(keys, e.ContextMap()["key"].(string))
		}
		slices.Sort(keys)
		return keys
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	status := func() int {
		t.Helper()
		resp, err := client.Get("http://tokend/v1/channels/bot-1/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	mode := func() os.FileMode {
		t.Helper()
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatalf("the running socket: %v", err)
		}
		return fi.Mode().Perm()
	}
	if s := status(); s != http.StatusForbidden {
		t.Fatalf("uid %d not in allowed_uids: status %d, want 403", uid, s)
	}

	// Every setting changed.
	second := settings{
		level: "debug", state: filepath.Join(dir, "state2"), sock: filepath.Join(dir, "s2.sock"), metrics: "127.0.0.1:0",
		base: "http://127.0.0.1:1", timeout: "20s", inFlight: 8, format: "console", mode: "0600", uids: []int{uid},
	}
	reloadWith(second)
	if l := level.Level(); l != zapcore.DebugLevel {
		t.Errorf("log level %s after reloading log.level: debug", l)
	}
	restartOnly := []string{"line.base_url", "line.max_in_flight", "line.timeout", "log.format", "metrics_listen", "socket.path", "state_dir"}
	if got := warned(); !slices.Equal(got, restartOnly) {
		t.Errorf("restart-only settings warned about: %v, want %v", got, restartOnly)
	}
	if logs.FilterMessage("configuration reloaded").Len() != 1 {
		t.Error("the reload was not logged")
	}
	if _, err := os.Stat(second.sock); err == nil {
		t.Error("a socket.path change took effect before a restart")
	}
	if s := status(); s != http.StatusOK {
		t.Errorf("uid %d added to allowed_uids by a reload: status %d, want 200", uid, s)
	}
	if m := mode(); m != 0o600 {
		t.Errorf("socket mode %v after reloading socket.mode 0600", m)
	}

	// The restart-only settings back as they run: no change, no warning;
	// allowed_uids emptied: anyone who can open the socket.
	third := first
	third.mode, third.uids = "0600", nil
	reloadWith(third)
	if got := warned(); !slices.Equal(got, restartOnly) {
		t.Errorf("a restart-only setting changed back to its running value was warned about: %v", got)
	}
	if s := status(); s != http.StatusOK {
		t.Errorf("allowed_uids emptied by a reload: status %d, want 200", s)
	}

	// allowed_uids without this uid again, and state_dir changed again.
	fourth := third
	fourth.state, fourth.uids, fourth.mode = second.state, []int{uid + 1}, "0660"
	reloadWith(fourth)
	if s := status(); s != http.StatusForbidden {
		t.Errorf("uid %d removed from allowed_uids by a reload: status %d, want 403", uid, s)
	}
	if m := mode(); m != 0o660 {
		t.Errorf("socket mode %v after reloading socket.mode 0660", m)
	}
	if got := warned(); !slices.Equal(got, slices.Sorted(slices.Values(append(slices.Clone(restartOnly), "state_dir")))) {
		t.Errorf("restart-only settings warned about after the fourth reload: %v, want one more state_dir", got)
	}
}

// TestReloadOutputOnRunningFiles: state_dir and socket.path change only on
// restart, so a reload that moves them and names the running store or
// socket as an output is rejected: config.Load, which checks against the
// new file's values, would let the output overwrite the running store
// (every record lost) or replace the socket.
func TestReloadOutputOnRunningFiles(t *testing.T) {
	dir := t.TempDir()
	keyPath, srv := reloadSim(t, dir)

	cfgPath := filepath.Join(dir, "config.yaml")
	write := func(state, sock string, outputs ...string) {
		t.Helper()
		outs := ""
		for _, o := range outputs {
			outs += fmt.Sprintf("{path: %s, format: json}, ", o)
		}
		y := fmt.Sprintf(`state_dir: %s
line: {base_url: %q}
socket: {path: %s}
channels:
  - {id: "1657000001", name: bot-1, key_id: kid-1, private_key_file: %s, channel_secret: s1, outputs: [%s]}
`, state, srv.URL, sock, keyPath, strings.TrimSuffix(outs, ", "))
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state, sock, out := filepath.Join(dir, "state"), filepath.Join(dir, "s.sock"), filepath.Join(dir, "bot-1.json")
	write(state, sock, out)
	logs, notes, reload := startReloadable(t, cfgPath)
	waitFor := func(want string) { t.Helper(); waitNote(t, notes, want) }
	waitFor("READY=1")
	storeFile := filepath.Join(state, "tokend.db")
	before, err := os.Stat(storeFile)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name        string
		state, sock string
		output      string // the added output
		want        string
	}{
		{"the running store", filepath.Join(dir, "state2"), sock, storeFile, "is tokend's running store"},
		{"the running socket", state, filepath.Join(dir, "s2.sock"), sock, "is tokend's running socket"},
	} {
		write(tc.state, tc.sock, out, tc.output)
		reload <- struct{}{}
		waitFor("READY=1")
		rejected := logs.FilterMessage("reload rejected; the running configuration stays in force").All()
		if len(rejected) == 0 {
			t.Fatalf("%s as an output: reload not rejected", tc.name)
		}
		msg, _ := rejected[len(rejected)-1].ContextMap()["error"].(string)
		if cfg, _ := rejected[len(rejected)-1].ContextMap()["config"].(string); cfg == "" {
			t.Errorf("%s as an output: the rejection does not name the config file", tc.name)
		}
		if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "channels[0].outputs[1].path") {
			t.Errorf("%s as an output: error %q, want it to name channels[0].outputs[1].path and say %q", tc.name, msg, tc.want)
		}
		logs.TakeAll()
	}
	// Give the rotator time to publish, had the reload gone through.
	time.Sleep(100 * time.Millisecond)
	after, err := os.Stat(storeFile)
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("the running store was replaced (%v)", err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("the running socket was replaced (%v)", err)
	}
	if logs.FilterMessage("configuration reloaded").Len() != 0 {
		t.Error("a reload was applied")
	}
}

// TestReloadBeforeReady: a reload while the start is still waiting for
// tokens (here LINE never answers) is applied but tells systemd nothing:
// its READY=1 would have ended the start (units ordered after tokend
// starting without their token).
func TestReloadBeforeReady(t *testing.T) {
	dir := t.TempDir()
	keyPath, _ := reloadSim(t, dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	write := func(base string) {
		y := fmt.Sprintf(`state_dir: %s
line: {base_url: %q, timeout: 1m}
socket: {path: ""}
channels:
  - {id: "1657000001", key_id: kid-1, private_key_file: %s, channel_secret: s1, outputs: [{path: %s}]}
`, filepath.Join(dir, "state"), base, keyPath, filepath.Join(dir, "bot.token"))
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("http://127.0.0.1:1") // refused: the start never gets its token
	logs, notes, reload := startReloadable(t, cfgPath)
	reloaded := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for logs.FilterMessage("configuration reloaded").Len() < n {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not applied within 10s", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	reload <- struct{}{}
	reloaded(1)
	select {
	case n := <-notes:
		t.Fatalf("systemd told %q by a reload before the start was ready", n)
	default:
	}
	// TestReloadSettings checks RELOADING=1, then READY=1, after the start.
}

// TestAllowedUIDsLetInTokendsOwn: a socket.allowed_uids list lets in
// tokend's own uid as well, so that its health checks (`tokend status` in a
// container's HEALTHCHECK or a pod's probes, run as tokend's user) work
// whatever the list holds; an empty list still lets in anyone.
func TestAllowedUIDsLetInTokendsOwn(t *testing.T) {
	d := &Daemon{}
	self := os.Getuid()
	for _, tt := range []struct {
		list, want []int
	}{
		{nil, nil},
		{[]int{}, []int{}},
		{[]int{self + 1}, []int{self + 1, self}},
		{[]int{self, self + 1}, []int{self, self + 1}},
	} {
		cfg := &config.Config{Socket: config.Socket{AllowedUIDs: tt.list}}
		if got := d.allowedUIDs(cfg); !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("allowed_uids %v: socket lets in %v; want %v", tt.list, got, tt.want)
		}
		if len(tt.list) > 0 && &tt.list[0] == &d.allowedUIDs(cfg)[0] && len(tt.want) != len(tt.list) {
			t.Error("the config's list was appended to in place")
		}
	}
}

// TestAllowedUIDsOwnOverTheSocket: a daemon whose allowed_uids names only
// another uid still answers its own uid's status request over the socket.
func TestAllowedUIDsOwnOverTheSocket(t *testing.T) {
	dir := t.TempDir()
	keyPath, srv := reloadSim(t, dir)
	sock := filepath.Join(dir, "s.sock")
	cfgPath := filepath.Join(dir, "config.yaml")
	write := func(other int) {
		t.Helper()
		y := fmt.Sprintf(`state_dir: %s
line: {base_url: %q}
socket: {path: %s, allowed_uids: [%d]}
channels:
  - {id: "1657000001", name: bot-1, key_id: kid-1, private_key_file: %s, channel_secret: s1}
`, filepath.Join(dir, "state"), srv.URL, sock, other, keyPath)
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(os.Getuid() + 1)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan string, 16)
	reload := make(chan struct{})
	d, err := New(cfg, Options{Logger: zap.NewNop(), Notify: func(s string) { notes <- s }, Reload: reload, ConfigPath: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer runDaemon(t, d)()
	select {
	case <-notes:
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	get := func(when string) {
		t.Helper()
		resp, err := client.Get("http://tokend/v1/channels")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: tokend's own uid, allowed_uids naming another: status %d; want 200", when, resp.StatusCode)
		}
	}
	get("at start")
	// A reload to another list keeps it.
	write(os.Getuid() + 2)
	reload <- struct{}{}
	for range 2 { // RELOADING=1, READY=1: the reload is done
		select {
		case <-notes:
		case <-time.After(10 * time.Second):
			t.Fatal("reload not done within 10s")
		}
	}
	get("after a reload")
}

// startReloadable loads cfgPath and runs a daemon on it, logging to the
// returned observer at info, with systemd's notifications and reload
// requests through the returned channels; it stops at the test's end.
// waitNote reads systemd notifications until want, for up to 10 s.
func waitNote(t *testing.T, notes <-chan string, want string) {
	t.Helper()
	for {
		select {
		case n := <-notes:
			if n == want {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q within 10s", want)
		}
	}
}

func startReloadable(t *testing.T, cfgPath string) (*observer.ObservedLogs, chan string, chan struct{}) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	notes := make(chan string, 16)
	reload := make(chan struct{})
	d, err := New(cfg, Options{Logger: zap.New(core), Reload: reload, ConfigPath: cfgPath, Notify: func(s string) { notes <- s }})
	if err != nil {
		t.Fatal(err)
	}
	stop := runDaemon(t, d)
	t.Cleanup(func() { stop(); d.Close() })
	return logs, notes, reload
}

// TestReloadRemovesStaleBesideNewOutputs: a reload that adds an output
// removes the temporary files a crash left beside it (from an earlier
// config that named it), as a start does, and leaves those beside the
// outputs the running config writes.
func TestReloadRemovesStaleBesideNewOutputs(t *testing.T) {
	dir := t.TempDir()
	keyPath, _, srv := simFor(t, dir, "1657000001", "1657000002")
	outA, outB := filepath.Join(dir, "a.token"), filepath.Join(dir, "b.token")
	cfgPath, _ := writeChannelsConfig(t, dir, srv.URL, keyPath, []string{"1657000001"}, []string{outA})
	logs, notes, reload := startReloadable(t, cfgPath)
	waitNote(t, notes, "READY=1")
	staleA, staleB := filepath.Join(dir, ".a.token.tmp-1"), filepath.Join(dir, ".b.token.tmp-1")
	for _, f := range []string{staleA, staleB} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeChannelsConfig(t, dir, srv.URL, keyPath, []string{"1657000001", "1657000002"}, []string{outA, outB})
	reload <- struct{}{}
	waitNote(t, notes, "READY=1")
	if logs.FilterMessage("configuration reloaded").Len() != 1 {
		t.Fatalf("reload not applied: %v", logs.All())
	}
	if _, err := os.Stat(staleB); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale file beside the new output: %v; want it removed", err)
	}
	if _, err := os.Stat(staleA); err != nil {
		t.Errorf("the file beside the running output: %v; want it left (a write may own it)", err)
	}
	if n := logs.FilterMessage("removed temporary files a crash left beside an output").FilterField(zap.String("path", outB)).Len(); n != 1 {
		t.Errorf("%d log lines for %s; want 1", n, outB)
	}
}
