package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sys/unix"
)

// timeouts bound the server's work per connection and at shutdown.
type timeouts struct {
	readHeader, read, write, idle, shutdown time.Duration
}

// defaultTimeouts are Serve's. net/http (Go 1.26) sets four deadlines a
// request with these (idle, headers, whole request, write), whatever their
// (non-zero) values, each a clock read and a timer update: part of what a token read
// costs over a bare server without timeouts but ReadHeaderTimeout, which
// sets one and clears two.
var defaultTimeouts = timeouts{
	readHeader: 5 * time.Second,
	read:       10 * time.Second,
	write:      10 * time.Second,
	idle:       60 * time.Second,
	shutdown:   5 * time.Second,
}

// maxHeaderBytes bounds a request's headers; bigger ones get 431. net/http
// reads 4 KiB more than this before it refuses (its bufio slack), so 431
// comes from about 20 KiB (TestSocketUnderLoad's 431_from).
const maxHeaderBytes = 16 << 10

// Serve serves h on ln until ctx is done, then shuts down gracefully
// (requests in flight get up to 5s) and returns nil: cancellation is the
// normal way to stop. Closing ln removes the socket file Listen created.
// Serve records each Unix connection's peer credentials for NewHandler.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return serve(ctx, ln, h, defaultTimeouts)
}

func serve(ctx context.Context, ln net.Listener, h http.Handler, t timeouts) error {
	// The socket API's token reads take the fast path (fast.go); net/http
	// accepts through it what it hands on.
	var fs *fastServer
	if sh, ok := h.(*Handler); ok {
		fs = newFastServer(sh.h, ln, t)
		ln = fs
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       connContext,
		// "OPTIONS *" goes to the handler too, and its peer check, rather
		// than answered 200 by net/http for anyone.
		DisableGeneralOptionsHandler: true,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc: // Serve closed ln on its way out
		return fmt.Errorf("socket: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), t.shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the bound are cut off: stopping
		// was asked for, so that is not an error.
		_ = srv.Close()
	}
	if fs != nil {
		fs.wait(sctx.Done())
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("socket: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// peerKey keys a connection's peer in its context.
type peerKey struct{}

// peer is who is on the other end of a connection.
type peer struct {
	unix          bool  // a Unix socket connection
	uid, gid, pid int   // from SO_PEERCRED, when unix and err == nil
	err           error // reading the credentials failed
}

// connContext records the connection's peer credentials in its context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	var p peer
	if hc, ok := c.(*handedConn); ok {
		p = hc.peer
	} else {
		p = connPeer(c)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// connPeer reads c's peer credentials when it is a Unix connection.
func connPeer(c net.Conn) peer {
	p := peer{uid: -1, gid: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		p.unix = true
		p.uid, p.gid, p.pid, p.err = peerCred(uc)
	}
	return p
}

// peerCred reads SO_PEERCRED: the peer's credentials when it connected.
func peerCred(c *net.UnixConn) (uid, gid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, -1, 0, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, -1, 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return -1, -1, 0, fmt.Errorf("peer credentials: %w", cerr)
	}
	return int(cred.Uid), int(cred.Gid), int(cred.Pid), nil
}

// peerFrom returns the request's peer; known is false when the handler is
// not served by Serve.
func peerFrom(ctx context.Context) (p peer, known bool) {
	p, known = ctx.Value(peerKey{}).(peer)
	if !known {
		p = peer{uid: -1, gid: -1}
	}
	return p, known
}
