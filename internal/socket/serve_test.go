package socket

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSlowHeaders: a client that never finishes its request line is cut
// off at ReadHeaderTimeout.
func TestSlowHeaders(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	conn, err := net.Dial("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /v1/chan"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The server may answer 400 or 408 before it hangs up; it must hang up.
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %q, err %v; want the server to hang up", got, err)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 4") {
		t.Fatalf("server sent %q", got)
	}
	if elapsed < 150*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("disconnected after %v; want about 200ms", elapsed)
	}
}

func TestOversizedHeaders(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	status, _, _ := s.do(t, "GET", "/healthz", map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d; want 431", status)
	}
	// Just under the limit is fine.
	if status, _, _ := s.do(t, "GET", "/healthz", map[string]string{"X-Big": strings.Repeat("a", 15<<10)}); status != 200 {
		t.Fatalf("15 KiB of headers: status %d", status)
	}
}

func TestServeStops(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	if status, _, _ := s.do(t, "GET", "/healthz", nil); status != 200 {
		t.Fatal(status)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("Serve after cancellation: %v; want nil", err)
	}
	if _, err := os.Lstat(s.path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file still there after Serve returned: %v", err)
	}
}

// TestServeShutdownBound: a request still running at shutdown is cut off
// after the bound, and Serve still returns nil.
func TestServeShutdownBound(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started, cut := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-release:
		case <-r.Context().Done():
			close(cut)
		}
	})
	path, ln := listenT(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	tm := testTimeouts
	tm.shutdown = 100 * time.Millisecond
	go func() { done <- serve(ctx, ln, h, tm) }()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v; want nil", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("shutdown took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	// The request still running at the bound is cut off, not left open.
	select {
	case <-cut:
	case <-time.After(5 * time.Second):
		t.Fatal("the request still running at the shutdown bound was not cut off")
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client's connection is still open after the bound (read %d bytes, %v)", n, err)
	}
}

// TestServeListenerFailure: a listener that dies is an error, not a
// clean stop.
func TestServeListenerFailure(t *testing.T) {
	path, ln := listenT(t)
	done := make(chan error, 1)
	go func() { done <- serve(context.Background(), ln, http.NotFoundHandler(), testTimeouts) }()
	time.Sleep(20 * time.Millisecond) // let Serve start accepting (either order ends in an error)
	ln.(*listener).UnixListener.Close()
	select {
	case err := <-done:
		if err == nil || !strings.HasPrefix(err.Error(), "socket: serve "+path+": ") {
			t.Fatalf("Serve = %v; want an error naming the socket", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file left behind: %v", err)
	}
}

func TestServeAlreadyCanceled(t *testing.T) {
	path, ln := listenT(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Serve(ctx, ln, http.NotFoundHandler()); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file left behind: %v", err)
	}
}

func TestListenMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			old := syscall.Umask(0o077) // the mode must not depend on it
			defer syscall.Umask(old)
			dir := shortDir(t)
			path := filepath.Join(dir, "tokend.sock")
			ln, err := Listen(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != mode {
				t.Fatalf("mode %v; want socket %v", fi.Mode(), mode)
			}
			if ln.Addr().String() != path {
				t.Fatalf("Addr = %s", ln.Addr())
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries (temporary name left?)", len(entries))
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("dial through the linked name: %v", err)
			}
			c.Close()
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("socket file still there after Close: %v", err)
			}
			if err := ln.Close(); err == nil {
				t.Error("second Close: no error")
			}
		})
	}
}

func TestListenStaleSocket(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "tokend.sock")
	// A socket nobody listens on, as a crash leaves it.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(path, 0o600)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestListenRefuses(t *testing.T) {
	dir := shortDir(t)
	live := filepath.Join(dir, "live.sock")
	other, err := Listen(live, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("precious"), 0o600)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	link := filepath.Join(dir, "link")
	os.Symlink(live, link)
	long := filepath.Join(dir, strings.Repeat("x", 120))
	tests := []struct {
		name, path string
		mode       os.FileMode
		want       string
	}{
		{"live socket", live, 0o600, "socket " + live + " is served by another running tokend"},
		{"regular file", regular, 0o600, "socket: " + regular + " exists and is not a socket; refusing to replace it"},
		{"directory", sub, 0o600, "socket: " + sub + " exists and is not a socket; refusing to replace it"},
		{"symlink to a socket", link, 0o600, "socket: " + link + " exists and is not a socket; refusing to replace it"},
		{"missing directory", filepath.Join(dir, "missing", "tokend.sock"), 0o600, "socket: directory " + dir + "/missing does not exist; create it (systemd: RuntimeDirectory=)"},
		{"parent is a file", filepath.Join(regular, "tokend.sock"), 0o600, "socket: " + regular + " is not a directory"},
		{"too long", long, 0o600, "socket: " + long + ": path is " + strconv.Itoa(len(long)) + " bytes long; a Unix socket path is at most 107"},
		{"setuid mode", filepath.Join(dir, "x.sock"), 0o600 | os.ModeSetuid, "socket: " + dir + "/x.sock: mode urw------- has bits other than permissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := Listen(tt.path, tt.mode)
			if err == nil {
				ln.Close()
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Fatalf("err = %q\nwant  %q", err, tt.want)
			}
		})
	}
	if data, _ := os.ReadFile(regular); string(data) != "precious" {
		t.Fatal("regular file touched")
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Fatalf("live socket harmed: %v", err)
	} else {
		c.Close()
	}
}

// TestListenKeepsASocketItCannotProbe: a socket that answers the probe
// with neither a connection nor a refusal (here a full backlog: its owner
// is alive but not accepting) may belong to a running process; Listen
// refuses rather than remove it.
func TestListenKeepsASocketItCannotProbe(t *testing.T) {
	path := filepath.Join(shortDir(t), "busy.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the backlog: connects succeed until it is full, then fail
	// with EAGAIN, the answer the probe will get.
	for full := false; !full; {
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			defer c.Close()
		case errors.Is(err, syscall.EAGAIN):
			full = true
		default:
			t.Fatalf("filling the backlog: %v", err)
		}
	}
	ln, err := Listen(path, 0o600)
	if err == nil {
		ln.Close()
		t.Fatal("Listen replaced a socket whose owner may be running")
	}
	if want := "socket: " + path + " exists and cannot be probed: "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %q\nwant  %q...", err, want)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("the busy socket is gone: %v", err)
	}
}

// TestListenCloseKeepsReplacement: Close removes the socket only if it is
// still ours.
func TestListenCloseKeepsReplacement(t *testing.T) {
	path, ln := listenT(t)
	os.Remove(path)
	os.WriteFile(path, []byte("someone else's"), 0o600)
	ln.Close()
	if data, err := os.ReadFile(path); err != nil || string(data) != "someone else's" {
		t.Fatalf("Close removed a file that was not its socket: %v", err)
	}
}

// TestListenLongDir: when the temporary name would not fit in sun_path
// but the path does, the socket is bound in place.
func TestListenLongDir(t *testing.T) {
	base := shortDir(t)
	dir := filepath.Join(base, strings.Repeat("d", 107-len(base)-len("/a.sock")-1))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.sock")
	if len(path) > maxSocketPath || len(path)+len(".tk00000000")-len("a.sock") <= maxSocketPath {
		t.Fatalf("test setup: path is %d bytes", len(path))
	}
	ln, err := Listen(path, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("%v %v", fi, err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file left behind: %v", err)
	}
}

// TestPublishRace: a file that appears at path between the stale check and
// the link is never replaced.
func TestPublishRace(t *testing.T) {
	dir := shortDir(t)
	tmp, path := filepath.Join(dir, ".tkx"), filepath.Join(dir, "tokend.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.WriteFile(path, []byte("theirs"), 0o600)
	err = publish(tmp, path)
	if want := "socket " + path + " was created by another process while tokend was starting"; err == nil || err.Error() != want {
		t.Fatalf("err = %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "theirs" {
		t.Fatal("replaced")
	}
}

// TestOptionsStar: "OPTIONS *" goes through the handler like any request:
// 403 for a peer socket.allowed_uids refuses (net/http alone answers it 200
// for anyone), the JSON 404 otherwise.
func TestOptionsStar(t *testing.T) {
	const raw = "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		uids []int
		want string
	}{
		{nil, "HTTP/1.1 404 "},
		{[]int{os.Getuid() + 1}, "HTTP/1.1 403 "},
	} {
		s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{AllowedUIDs: tc.uids}))
		got := exchange(t, s.path, raw)
		if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, `{"error":`) {
			t.Errorf("allowed_uids %v: %q; want %q with a JSON error", tc.uids, got, tc.want)
		}
	}
}
