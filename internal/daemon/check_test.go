package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/socket"
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
