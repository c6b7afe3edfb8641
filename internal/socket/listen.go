package socket

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a Unix socket can be bound to
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = time.Second

// Listen creates the Unix socket at path with permission bits mode and
// listens on it. The directory must exist. An existing socket that accepts
// connections belongs to another running tokend and is an error; one that
// refuses them is left over from a crash and is replaced; anything else at
// path is refused.
//
// The socket is bound under a temporary name in the same directory,
// chmodded, then linked to path, so it never appears at path with looser
// permissions than mode. Closing the listener removes path (if it is still
// this socket).
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if err := checkMode(path, mode); err != nil {
		return nil, err
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket: %s: path is %d bytes long; a Unix socket path is at most %d", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("socket: directory %s does not exist; create it (systemd: RuntimeDirectory=)", dir)
	case err != nil:
		return nil, fmt.Errorf("socket: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("socket: %s is not a directory", dir)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}

	tmp, err := tempName(dir)
	if err != nil {
		return nil, fmt.Errorf("socket: %s: %w", path, err)
	}
	if len(tmp) > maxSocketPath {
		// No room for a temporary name: bind in place and chmod at once.
		tmp = path
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	ln.SetUnlinkOnClose(true) // removes tmp on the error paths below
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket: %w", err)
	}
	if tmp != path {
		if err := publish(tmp, path); err != nil {
			ln.Close()
			return nil, err
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket: %w", err)
	}
	// The socket lives at path, not at the name it was bound to: the
	// UnixListener would unlink that name, so listener.Close removes path.
	ln.SetUnlinkOnClose(false)
	return &listener{UnixListener: ln, path: path, fi: fi}, nil
}

// SetMode changes the permission bits of the socket file that ln (from
// Listen) serves, if it is still that socket: a reload of socket.mode.
// The mode is checked when a client connects; connections already open
// stay open.
func SetMode(ln net.Listener, mode os.FileMode) error {
	l, ok := ln.(*listener)
	if !ok {
		return errors.New("socket: not a listener from socket.Listen")
	}
	if err := checkMode(l.path, mode); err != nil {
		return err
	}
	// The file is opened (O_PATH, not following a symlink) and checked,
	// and the mode set on what was opened: a path checked and then
	// chmodded could be swapped for a symlink in between by anyone who can
	// write the socket's directory, and chmod would follow it.
	fd, err := unix.Open(l.path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("socket: %s is no longer the socket tokend listens on", l.path)
		}
		return fmt.Errorf("socket: %w", &fs.PathError{Op: "open", Path: l.path, Err: err})
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("socket: %w", &fs.PathError{Op: "stat", Path: l.path, Err: err})
	}
	if want, ok := l.fi.Sys().(*syscall.Stat_t); !ok || uint64(st.Dev) != uint64(want.Dev) || st.Ino != want.Ino {
		return fmt.Errorf("socket: %s is no longer the socket tokend listens on", l.path)
	}
	if err := chmodFD(fd, mode); err != nil {
		return fmt.Errorf("socket: %w", &fs.PathError{Op: "chmod", Path: l.path, Err: err})
	}
	return nil
}

// chmodFD sets the mode of the file an O_PATH descriptor refers to, through
// /proc/self/fd (fchmod refuses O_PATH descriptors); a test wraps it.
var chmodFD = func(fd int, mode os.FileMode) error {
	err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), uint32(mode.Perm()))
	if errors.Is(err, unix.ENOENT) {
		return errors.New("/proc is not mounted: tokend sets the socket's mode through /proc/self/fd")
	}
	return err
}

// CheckPath is what Listen refuses at path before it binds: anything but
// a socket. Nothing there passes, and so does a socket, stale or live
// (Listen then replaces a stale one and refuses a live one; tokend check
// runs while the daemon serves, so it does not probe).
func CheckPath(path string) error {
	_, err := socketAt(path)
	return err
}

// socketAt is CheckPath, also saying whether a socket is there.
func socketAt(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return false, fmt.Errorf("socket: %s exists and is not a socket; refusing to replace it", path)
	}
	return true, nil
}

// checkMode refuses a socket.mode with bits other than permissions.
func checkMode(path string, mode os.FileMode) error {
	if mode&^fs.ModePerm != 0 {
		return fmt.Errorf("socket: %s: mode %v has bits other than permissions", path, mode)
	}
	return nil
}

// clearStale checks what is at path: nothing is fine, a stale socket is
// removed, anything else is an error.
func clearStale(path string) error {
	if there, err := socketAt(path); err != nil || !there {
		return err
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s is served by another running tokend", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("socket: %s exists and cannot be probed: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("socket: remove stale socket: %w", err)
	}
	return nil
}

// publish makes the socket bound at tmp appear at path, without replacing
// anything another process created there since clearStale looked.
func publish(tmp, path string) error {
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		_ = os.Remove(tmp)
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("socket %s was created by another process while tokend was starting", path)
	}
	// A file system without hard links: rename, which would replace a
	// socket that appeared meanwhile (a race tokend does not expect).
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	return nil
}

// tempName returns a fresh name in dir for binding the socket.
func tempName(dir string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(dir, ".tk"+hex.EncodeToString(b[:])), nil
}

// listener is a Unix listener whose socket file is at path.
type listener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo // the socket, to remove only our own at Close
	once sync.Once
}

// Addr is the socket's path.
func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops listening and removes the socket file, unless something
// else has replaced it.
func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, lerr := os.Lstat(l.path); lerr == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path)
		}
	})
	return err
}
