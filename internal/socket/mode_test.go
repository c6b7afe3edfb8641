package socket

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetMode: a reload's socket.mode changes the socket's file, and only
// while it is still the socket tokend listens on.
func TestSetMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ln, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := SetMode(ln, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after SetMode 0600: %v, %v", fi.Mode(), err)
	}
	if err := SetMode(ln, 0o4600); err == nil {
		t.Error("SetMode with a setuid bit: no error")
	}

	// Something else at the path now: left alone.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SetMode(ln, 0o666); err == nil || !strings.Contains(err.Error(), "no longer the socket") {
		t.Errorf("SetMode on a replaced socket: %v, want an error saying so", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("the file that replaced the socket got mode %v", fi.Mode().Perm())
	}

	other, err := net.Listen("unix", filepath.Join(dir, "o.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := SetMode(other, 0o600); err == nil {
		t.Error("SetMode on a listener not from Listen: no error")
	}
}

// TestSetModeSwappedForSymlink: a socket swapped for a symlink between
// SetMode's check and its chmod (someone who can write the socket's
// directory) does not get the symlink's target chmodded. Not parallel: it
// wraps chmodFD.
func TestSetModeSwappedForSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	orig := chmodFD
	t.Cleanup(func() { chmodFD = orig })
	chmodFD = func(fd int, mode os.FileMode) error {
		if err := os.Remove(path); err != nil {
			return err
		}
		if err := os.Symlink(victim, path); err != nil {
			return err
		}
		return orig(fd, mode)
	}
	if err := SetMode(ln, 0o666); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the symlink's target: mode %v, %v; want 0600, untouched", fi.Mode().Perm(), err)
	}
	chmodFD = orig
	if err := SetMode(ln, 0o600); err == nil || !strings.Contains(err.Error(), "no longer the socket") {
		t.Fatalf("SetMode with a symlink at the path: %v; want an error saying so", err)
	}
}
