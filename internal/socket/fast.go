package socket

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/rotator"
)

// The token route's fast path.
//
// net/http allocates about 1 KB for each request it serves (the request,
// its header map and URL, the response, a context); at tens of thousands
// of token reads a second that garbage starts a collection every few
// seconds, and each collection's mark phase over 10,000 channels' state
// stalls the reads it overlaps for tens of milliseconds: most of what made
// the socket's p99 latency (README, Performance). So Serve reads each
// connection on the Unix socket itself while its requests are plain token
// reads, and answers them from a buffer the connection keeps, allocating
// nothing. "Plain" is narrow on purpose:
//
//	GET or HEAD /v1/channels/{name}/token[?format=json|raw] HTTP/1.1
//	headers: Host (once), and any of Accept (once: */*, application/json
//	or text/plain), Connection: keep-alive, User-Agent, Accept-Encoding
//	{name} made of letters, digits, '-', '.', '_' and '~'
//	the whole head in the connection's first buffer (fastHeadMax)
//	a channel that holds a token, from a peer socket.allowed_uids allows
//	the debug log off
//
// At the first request that is anything else, the connection, with every
// byte read and not yet answered, goes to net/http for good, which answers
// it as it answers every request: so each refusal, error, log line and
// route stays net/http's and the handler's, and the fast path's answers
// are net/http's byte for byte (TestFastAnswersAsNetHTTP,
// FuzzFastAgreesWithNetHTTP), with net/http's deadlines
// (TestFastDeadlinesAsNetHTTP). One limit moves a little: net/http alone
// lets a connection's later request have up to 4 KiB more header bytes
// than its first (what it read ahead with the request before does not
// count against the next one's limit); a request handed on after a fast
// answer is the first net/http reads, so it gets the first request's
// limit (431 from about 20 KiB).

// fastHeadMax is the connection's read buffer: a request head that does not
// fit goes to net/http.
const fastHeadMax = 4096

// fastBodyMax is the largest body the fast path writes. net/http sends
// a body of up to 2048 bytes, written by a handler that has returned, with
// a Content-Length, and a larger one chunked.
const fastBodyMax = 2048

// fastServer accepts the socket's connections, serves their plain token
// reads, and is the net.Listener through which net/http accepts the
// connections handed to it.
type fastServer struct {
	h  *handler
	ln net.Listener
	t  timeouts

	handoff chan net.Conn // connections for net/http
	errc    chan error    // the accept loop's end
	done    chan struct{} // closed by Close
	once    sync.Once
	closing atomic.Bool

	mu    sync.Mutex
	conns map[*fastConn]struct{}
	wg    sync.WaitGroup // the accept loop and the serveConn goroutines
}

func newFastServer(h *handler, ln net.Listener, t timeouts) *fastServer {
	fs := &fastServer{
		h: h, ln: ln, t: t,
		handoff: make(chan net.Conn),
		errc:    make(chan error, 1),
		done:    make(chan struct{}),
		conns:   map[*fastConn]struct{}{},
	}
	fs.wg.Add(1) // wait waits for the accept loop too: it adds connections
	go fs.acceptLoop()
	return fs
}

// acceptLoop accepts until the listener fails for good, backing off from
// temporary failures (too many open files) as net/http does.
func (fs *fastServer) acceptLoop() {
	defer fs.wg.Done()
	var delay time.Duration
	for {
		c, err := fs.ln.Accept()
		if err != nil {
			if isTemporary(err) && !fs.closing.Load() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				fs.h.log.Warn("socket: accept failed; retrying", zap.Error(err), zap.Duration("in", delay))
				select {
				case <-time.After(delay):
					continue
				case <-fs.done:
				}
			}
			fs.errc <- err
			return
		}
		delay = 0
		fs.wg.Add(1)
		go fs.serveConn(c)
	}
}

// isTemporary reports the accept errors worth retrying: a process or
// system out of file descriptors, or of memory for a socket.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Accept returns the next connection handed to net/http.
func (fs *fastServer) Accept() (net.Conn, error) {
	select {
	case c := <-fs.handoff:
		return c, nil
	case err := <-fs.errc:
		return nil, err
	case <-fs.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting (closing the listener, which removes the socket
// file) and has every connection the fast path serves close once its
// current answer is written: idle ones at once.
func (fs *fastServer) Close() error {
	var err error
	fs.once.Do(func() {
		fs.closing.Store(true)
		close(fs.done)
		err = fs.ln.Close()
		fs.mu.Lock()
		for fc := range fs.conns {
			_ = fc.c.SetReadDeadline(time.Now()) // wakes an idle read
		}
		fs.mu.Unlock()
	})
	return err
}

// Addr is the listener's.
func (fs *fastServer) Addr() net.Addr { return fs.ln.Addr() }

// wait waits for the fast path's connections to end, until done is
// closed; then it closes those left.
func (fs *fastServer) wait(done <-chan struct{}) {
	ended := make(chan struct{})
	go func() { fs.wg.Wait(); close(ended) }()
	select {
	case <-ended:
		return
	case <-done:
	}
	fs.mu.Lock()
	for fc := range fs.conns {
		_ = fc.c.Close()
	}
	fs.mu.Unlock()
	<-ended
}

// fastConn is one connection the fast path serves.
type fastConn struct {
	c    net.Conn
	br   *bufio.Reader
	peer peer
	out  []byte // the answer being written
}

// serveConn answers c's plain token reads until c ends or a request is
// anything else, then hands c to net/http.
func (fs *fastServer) serveConn(c net.Conn) {
	defer fs.wg.Done()
	uc, ok := c.(*net.UnixConn)
	if !ok { // the handler keeps tokens off any other kind of listener
		fs.handOn(&handedConn{Conn: c, peer: connPeer(c)})
		return
	}
	fc := &fastConn{c: uc, peer: connPeer(uc)}
	fs.mu.Lock()
	if fs.closing.Load() {
		fs.mu.Unlock()
		_ = c.Close()
		return
	}
	fs.conns[fc] = struct{}{}
	fs.mu.Unlock()
	hand := false
	var first time.Time // the first request's header deadline, until an answer
	defer func() {
		fs.mu.Lock()
		delete(fs.conns, fc)
		fs.mu.Unlock()
		if hand {
			fs.handOn(&handedConn{Conn: c, br: fc.br, peer: fc.peer, first: first})
			return
		}
		if v := recover(); v != nil {
			fs.h.log.Error("socket: panic serving a token read; connection closed", zap.Any("panic", v), zap.Stack("stack"))
		}
		_ = c.Close()
	}()
	fc.br = bufio.NewReaderSize(c, fastHeadMax)
	// net/http's deadlines: a connection's first request head within
	// ReadHeaderTimeout of its start (handed on, net/http keeps to that
	// deadline: handedConn); after an answer, the next request's first 4
	// bytes within IdleTimeout, then its head within ReadHeaderTimeout
	// (net/http's own, after a hand-on).
	hdrWait, idleWait := fs.t.readHeader, fs.t.idle
	if hdrWait <= 0 {
		hdrWait = fs.t.read
	}
	if idleWait <= 0 {
		idleWait = fs.t.read
	}
	if hdrWait > 0 {
		first = time.Now().Add(hdrWait)
		_ = c.SetReadDeadline(first)
	}
	answered := false
	for {
		need := 1
		if answered {
			need = 4 // net/http's Peek(4) between requests
		}
		if fc.br.Buffered() < need {
			if answered && idleWait > 0 {
				_ = c.SetReadDeadline(time.Now().Add(idleWait))
			}
			// After the deadline is set: Close's deadline, set after
			// closing, then stands.
			if fs.closing.Load() {
				return
			}
			if _, err := fc.br.Peek(need); err != nil {
				return // gone, idle too long, or closing: as net/http, no answer
			}
		}
		if fs.closing.Load() {
			return
		}
		buf, _ := fc.br.Peek(fc.br.Buffered())
		end := bytes.Index(buf, crlfcrlf)
		if end < 0 { // the head has not all come in one read, or is too big
			hand = true
			return
		}
		head := buf[:end+len(crlfcrlf)]
		ok, err := fs.answer(fc, head)
		if err != nil {
			return // the peer is gone, or too slow to read its answer
		}
		if !ok {
			hand = true
			return
		}
		answered, first = true, time.Time{}
		_, _ = fc.br.Discard(len(head))
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// handOn gives c to net/http, or closes it when Serve is stopping.
func (fs *fastServer) handOn(c *handedConn) {
	_ = c.SetDeadline(time.Time{}) // net/http sets its own
	fs.h.handed.Add(1)             // before: net/http may answer before this goroutine runs again
	select {
	case fs.handoff <- c:
	case <-fs.done:
		fs.h.handed.Add(-1)
		_ = c.Close()
	}
}

// answer writes the answer to head when it is a plain token read (the
// comment at the top) and reports whether it did, or the write's error.
func (fs *fastServer) answer(fc *fastConn, head []byte) (bool, error) {
	name, format, isHEAD, ok := parseFast(head)
	if !ok || !fs.h.lets(fc.peer) || fs.h.log.Core().Enabled(zapcore.DebugLevel) {
		return false, nil
	}
	var body []byte
	var found bool
	var err error
	if bs, ok := fs.h.src.(BytesSource); ok {
		body, found, err = bs.TokenBodyBytes(name, format)
	} else {
		body, found, err = fs.h.src.TokenBody(string(name), format)
	}
	if !found || err != nil || len(body) == 0 || len(body) > fastBodyMax {
		return false, nil // net/http answers 404, 500 or 503, and logs; and an empty body its way
	}
	ct := ctJSON[0]
	if format == output.FormatRaw {
		ct = ctText[0]
	}
	b := append(fc.out[:0], "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: "...)
	b = append(b, ct...)
	b = append(b, "\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if fs.closing.Load() {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	if !isHEAD {
		b = append(b, body...)
	}
	fc.out = b
	if fs.t.write > 0 {
		_ = fc.c.SetWriteDeadline(time.Now().Add(fs.t.write))
	}
	fs.h.answered.Add(1) // before: the client may count its answer before this goroutine runs again
	if _, err := fc.c.Write(b); err != nil {
		return false, err
	}
	return true, nil
}

var _ BytesSource = (*rotator.Rotator)(nil)

// BytesSource is a Source that can look a channel up by a name in bytes
// without copying it; the fast path uses it when its Source is one.
type BytesSource interface {
	TokenBodyBytes(idOrName []byte, format string) (body []byte, found bool, err error)
}

// parseFast parses a request head (through its blank line) and reports
// whether it is a plain token read, with the channel, the format and
// whether it is HEAD.
func parseFast(head []byte) (name []byte, format string, isHEAD, ok bool) {
	line, rest, _ := bytes.Cut(head, crlf)
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[len("GET "):]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		line, isHEAD = line[len("HEAD "):], true
	default:
		return nil, "", false, false
	}
	target, proto, _ := bytes.Cut(line, []byte(" "))
	if string(proto) != "HTTP/1.1" {
		return nil, "", false, false
	}
	path, query, hasQuery := bytes.Cut(target, []byte("?"))
	const prefix, suffix = "/v1/channels/", "/token"
	if !bytes.HasPrefix(path, []byte(prefix)) || !bytes.HasSuffix(path, []byte(suffix)) || len(path) <= len(prefix)+len(suffix) {
		return nil, "", false, false
	}
	name = path[len(prefix) : len(path)-len(suffix)]
	if string(name) == "." || string(name) == ".." {
		return nil, "", false, false
	}
	for _, c := range name {
		if !unreserved(c) {
			return nil, "", false, false
		}
	}
	switch {
	case !hasQuery:
	case string(query) == "format=json":
		format = output.FormatJSON
	case string(query) == "format=raw":
		format = output.FormatRaw
	default:
		return nil, "", false, false
	}
	hosts, accepts := 0, 0
	acceptFmt := output.FormatJSON
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, crlf)
		if len(h) == 0 {
			break // the blank line
		}
		key, value, found := bytes.Cut(h, []byte(":"))
		if !found {
			return nil, "", false, false // net/http answers 400
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c >= 0x7f {
				return nil, "", false, false
			}
		}
		switch {
		case asciiEqualFold(key, "host"):
			hosts++
			if len(value) == 0 || !isHost(value) {
				return nil, "", false, false
			}
		case asciiEqualFold(key, "accept"):
			accepts++
			switch string(value) {
			case "*/*", "application/json":
			case "text/plain":
				acceptFmt = output.FormatRaw
			default:
				return nil, "", false, false
			}
		case asciiEqualFold(key, "connection"):
			if !asciiEqualFold(value, "keep-alive") {
				return nil, "", false, false
			}
		case asciiEqualFold(key, "user-agent"), asciiEqualFold(key, "accept-encoding"):
		default:
			return nil, "", false, false
		}
	}
	if hosts != 1 || accepts > 1 {
		return nil, "", false, false
	}
	if format == "" {
		format = acceptFmt
	}
	return name, format, isHEAD, true
}

var crlf = []byte("\r\n")

// unreserved is RFC 3986's unreserved set: a name made of it has no escapes
// and nothing net/http or the mux would clean.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// isHost accepts the plain host names and addresses a client puts in Host.
func isHost(b []byte) bool {
	for _, c := range b {
		if !unreserved(c) && c != ':' && c != '[' && c != ']' {
			return false
		}
	}
	return true
}

// asciiEqualFold is strings.EqualFold for ASCII, without a conversion.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// handedConn is a connection net/http serves after the fast path: its
// reads start with the bytes the fast path read and did not answer.
type handedConn struct {
	net.Conn
	br    *bufio.Reader // nil: nothing read
	peer  peer
	first time.Time // when not zero: the connection's first request head is due by then
}

// SetReadDeadline keeps net/http's first deadline, for the head of the
// connection's first request, to the one the fast path set when the
// connection came: a head sent slowly gets ReadHeaderTimeout in all, as
// from net/http alone, not twice that.
func (c *handedConn) SetReadDeadline(t time.Time) error {
	if !c.first.IsZero() {
		if t.IsZero() || t.After(c.first) {
			t = c.first
		}
		c.first = time.Time{}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *handedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection after an error, as it
// does a plain Unix connection.
func (c *handedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
