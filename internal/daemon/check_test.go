package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/socket"
	"github.com/tokend/tokend/internal/store"
)

// TestCheckSocketPath: check refuses what run's socket.Listen refuses at
// socket.path, with run's words (anything but a socket), and passes what
// run accepts: nothing there yet, a stale socket, and a live one (the
// running tokend's, when `systemctl reload` runs check).
func TestCheckSocketPath(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular.txt")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(dir, "sub")
	if err := os.Mkdir(subdir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	live := filepath.Join(dir, "live.sock")
	lln, err := socket.Listen(live, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lln.Close()
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(live, link); err != nil {
		t.Fatal(err)
	}

	check := func(path string) []error {
		cfg := &config.Config{StateDir: filepath.Join(dir, "state"), Socket: config.Socket{Path: path}}
		return Check(context.Background(), cfg, false, "test")
	}
	for _, path := range []string{regular, subdir, link} {
		// What run says: Daemon.Run wraps socket.Listen's error so.
		l, lerr := socket.Listen(path, 0o600)
		if lerr == nil {
			l.Close()
			t.Fatalf("%s: socket.Listen accepted it", path)
		}
		want := "socket.path: " + lerr.Error()
		errs := check(path)
		if len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("%s: check gave %v, want [%s]", path, errs, want)
		}
	}
	for _, path := range []string{filepath.Join(dir, "new.sock"), stale, live} {
		if errs := check(path); len(errs) > 0 {
			t.Errorf("%s: %v", path, errors.Join(errs...))
		}
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Errorf("check touched the stale socket: %v", err)
	}
}

// TestCheckStore: check reports a store run would refuse (here damaged),
// with run's words, and passes a healthy one, a missing one and the one a
// running tokend holds.
func TestCheckStore(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	check := func() []error {
		return Check(context.Background(), &config.Config{StateDir: state}, false, "test")
	}
	if errs := check(); len(errs) > 0 {
		t.Fatalf("no store yet: %v", errs)
	}
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	if errs := check(); len(errs) > 0 {
		t.Errorf("a store a running tokend holds: %v", errs)
	}
	st.Close()
	if errs := check(); len(errs) > 0 {
		t.Errorf("a healthy store: %v", errs)
	}
	if err := os.WriteFile(filepath.Join(state, store.FileName), []byte("not a database at all, but long enough to read a page header from"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, runErr := store.Open(state)
	errs := check()
	if runErr == nil || len(errs) != 1 || errs[0].Error() != "state_dir: "+runErr.Error() {
		t.Errorf("a damaged store: check gave %v; want [state_dir: %v], what run says", errs, runErr)
	}
}

// TestCheckHookPrograms: check reports an exec hook whose program run
// would not find (a missing file, one not executable, a name not in PATH);
// a program that is there passes.
func TestCheckHookPrograms(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "reload.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{StateDir: filepath.Join(dir, "state"), Channels: []config.Channel{{
		ID: "1", Name: "bot", OnRotate: []config.Hook{
			{Exec: []string{"/bin/sh", "-c", "true"}},
			{Exec: []string{"sh"}},
			{Exec: []string{filepath.Join(dir, "missing.sh")}},
			{Exec: []string{notExec}},
			{Exec: []string{"no-such-program-tokend-test"}},
			{Signal: "HUP", PIDFile: filepath.Join(dir, "bot.pid")},
		},
	}}}
	var hookErrs []string
	for _, err := range Check(context.Background(), cfg, false, "test") {
		if strings.Contains(err.Error(), "on_rotate") {
			hookErrs = append(hookErrs, err.Error())
		}
	}
	want := []string{"on_rotate[2].exec[0]", "on_rotate[3].exec[0]", "on_rotate[4].exec[0]"}
	if len(hookErrs) != len(want) {
		t.Fatalf("hook errors %q; want one each for %q", hookErrs, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(hookErrs[i], "channels[0]."+w+": ") {
			t.Errorf("error %d: %q, want it about %s", i, hookErrs[i], w)
		}
	}
}

// TestCheckOnlineInParallel: check -online asks LINE for every keyed
// channel's key IDs line.max_in_flight at a time, not one after another
// (an unreachable LINE took line.timeout per channel), and still lists the
// channels' problems in config order.
func TestCheckOnlineInParallel(t *testing.T) {
	dir := t.TempDir()
	keyPath := writeKeys(t, dir, 1)[0]
	var mu sync.Mutex
	inFlight, most := 0, 0
	all4 := make(chan struct{}) // closed once four have been in flight at once
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == 4 {
			once.Do(func() { close(all4) })
		}
		mu.Unlock()
		select { // held until four are in flight at once, or 2 s
		case <-all4:
			// and a little longer: without the limit, the other four
			// would arrive meanwhile (with it, they cannot start yet)
			time.Sleep(50 * time.Millisecond)
		case <-time.After(2 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"Cannot find channel key that satisfies the conditions"}`))
	}))
	defer srv.Close()
	var chans strings.Builder
	for i := range 8 {
		fmt.Fprintf(&chans, "  - {id: \"16570000%02d\", name: bot-%d, key_id: kid-1, private_key_file: %s, channel_secret: s}\n", i, i, keyPath)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	y := fmt.Sprintf("state_dir: %s\nline: {base_url: %q, max_in_flight: 4}\nsocket: {path: \"\"}\nchannels:\n%s", filepath.Join(dir, "state"), srv.URL, chans.String())
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	errs := Check(context.Background(), cfg, true, "test")
	if most != 4 {
		t.Errorf("at most %d calls at once; want line.max_in_flight, 4", most)
	}
	if len(errs) != 8 {
		t.Fatalf("%d errors; want one per channel: %v", len(errs), errs)
	}
	for i, err := range errs {
		if want := fmt.Sprintf("channels[%d] (bot-%d): LINE:", i, i); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %d: %v; want it to begin %q", i, err, want)
		}
	}
}

// TestCheckStateDirAsRunMakesIt: check accepts a state_dir whose missing
// path run creates (store.Open makes every missing directory), and refuses
// one under a file or a directory it cannot write, as run would fail.
func TestCheckStateDirAsRunMakesIt(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		state string
		ok    bool
	}{
		{filepath.Join(dir, "state"), true},
		{filepath.Join(dir, "new", "deeper", "state"), true},
		{filepath.Join(file, "state"), false},
		{filepath.Join(file, "new", "state"), false},
	} {
		cfg := &config.Config{StateDir: tt.state}
		errs := Check(context.Background(), cfg, false, "test")
		if (len(errs) == 0) != tt.ok {
			t.Errorf("state_dir %s: check says %v, want ok %v", tt.state, errs, tt.ok)
		}
		st, err := store.Open(tt.state)
		if err == nil {
			st.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("state_dir %s: store.Open says %v, want ok %v: check and run disagree", tt.state, err, tt.ok)
		}
	}
}
