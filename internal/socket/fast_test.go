package socket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fastPair serves h twice: as Serve gets it, with the fast path, and
// hidden behind an http.HandlerFunc, which Serve gives to net/http alone.
func fastPair(t testing.TB, h *Handler) (fast, plain *server) {
	t.Helper()
	return startServer(t, h), startServer(t, http.HandlerFunc(h.ServeHTTP))
}

var dateValue = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// exchange writes raw on a new connection to path, half-closes it, and
// returns the transcript of everything the server sends until it hangs up.
func exchange(t testing.TB, path, raw string) string {
	t.Helper()
	return paced(t, path, 0, raw)
}

// transcript reads c until the server hangs up and returns what it sent,
// with Date's value blanked and the fake token replaced (tests print it),
// and "[reset]" at the end when the server reset the connection (net/http
// does when it closes with bytes unread).
func transcript(t testing.TB, c net.Conn) string {
	t.Helper()
	got, err := io.ReadAll(c)
	if errors.Is(err, syscall.ECONNRESET) {
		got, err = append(got, "[reset]"...), nil
	}
	if err != nil {
		t.Fatalf("%v after %q", err, got)
	}
	got = dateValue.ReplaceAll(got, []byte("Date: -\r"))
	return strings.ReplaceAll(string(got), secretToken, "[token]")
}

// counts returns the fast path's counts: requests answered, connections
// handed to net/http.
func counts(h *Handler) (answered, handed int64) { return h.h.answered.Load(), h.h.handed.Load() }

// TestFastAnswersAsNetHTTP: every request gets the same bytes with the fast
// path as from net/http alone, and the fast path answers exactly the plain
// token reads, handing the connection on at the first other request.
func TestFastAnswersAsNetHTTP(t *testing.T) {
	const tok = "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: tokend\r\n\r\n"
	for _, tc := range []struct {
		name     string
		raw      string
		answered int64 // by the fast path
		handed   bool
	}{
		{"json by name", tok, 1, false},
		{"json by ID", "GET /v1/channels/1657000000/token HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"HEAD", "HEAD /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"format=raw", "GET /v1/channels/shop-bot/token?format=raw HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"HEAD raw", "HEAD /v1/channels/shop-bot/token?format=raw HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"format=json over Accept", "GET /v1/channels/shop-bot/token?format=json HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n", 1, false},
		{"Accept text/plain", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n", 1, false},
		{"Accept */*", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nAccept:  */* \r\n\r\n", 1, false},
		{"Accept json", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n", 1, false},
		{"curl", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", 1, false},
		{"Go client", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: tokend\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n", 1, false},
		{"names in any case", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nhOST: [::1]:80\r\nCONNECTION: Keep-Alive\r\naccept: text/plain\r\n\r\n", 1, false},
		{"pipelined", tok + tok + "HEAD /v1/channels/shop-bot/token?format=raw HTTP/1.1\r\nHost: x\r\n\r\n", 3, false},
		{"then unknown channel", tok + "GET /v1/channels/nope/token HTTP/1.1\r\nHost: x\r\n\r\n" + tok, 1, true},
		{"then a route", tok + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + tok, 1, true},
		{"then a half request", tok + "GET /v1/channels/shop-bot/tok", 1, true},
		{"no valid token", "GET /v1/channels/pending/token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"unknown channel", "GET /v1/channels/nope/token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"Connection close", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + tok, 0, true},
		{"HTTP/1.0", "GET /v1/channels/shop-bot/token HTTP/1.0\r\n\r\n", 0, true},
		{"HTTP/1.0 with Host", "GET /v1/channels/shop-bot/token HTTP/1.0\r\nHost: x\r\n\r\n", 0, true},
		{"no Host", "GET /v1/channels/shop-bot/token HTTP/1.1\r\n\r\n", 0, true},
		{"two Hosts", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 0, true},
		{"empty Host", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: \r\n\r\n", 0, true},
		{"Host with a space", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: a b\r\n\r\n", 0, true},
		{"two Accepts", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nAccept: text/plain\r\n\r\n", 0, true},
		{"Accept with weights", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.1, */*\r\n\r\n", 0, true},
		{"Accept text/*", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nAccept: text/*\r\n\r\n", 0, true},
		{"another header", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nX-Trace: 1\r\n\r\n", 0, true},
		{"a body", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 0, true},
		{"chunked", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, true},
		{"Expect", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", 0, true},
		{"unknown format", "GET /v1/channels/shop-bot/token?format=yaml HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"two formats", "GET /v1/channels/shop-bot/token?format=raw&format=json HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"empty query", "GET /v1/channels/shop-bot/token? HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"bad query", "GET /v1/channels/shop-bot/token?format=%zz HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"escaped name", "GET /v1/channels/%73hop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"dot", "GET /v1/channels/./token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"dot dot", "GET /v1/channels/../token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"deeper", "GET /v1/channels/a/b/token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"no name", "GET /v1/channels//token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"absolute form", "GET http://x/v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"lower-case method", "get /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n", 0, true},
		{"POST", "POST /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0, true},
		{"folded header", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\n b\r\n\r\n", 0, true},
		{"no colon", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nUser-Agent\r\n\r\n", 0, true},
		{"space before colon", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost : x\r\n\r\n", 0, true},
		{"control character", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x01b\r\n\r\n", 0, true},
		{"obs-text", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\xc3\xa9\r\n\r\n", 0, true},
		{"bare LF", "GET /v1/channels/shop-bot/token HTTP/1.1\nHost: x\n\n", 0, true},
		{"blank line first", "\r\n" + tok, 0, true},
		{"head too big", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nUser-Agent: " + strings.Repeat("a", fastHeadMax) + "\r\n\r\n", 0, true},
		{"half a head", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(newFakeSource(), HandlerOptions{})
			fast, plain := fastPair(t, h)
			want := exchange(t, plain.path, tc.raw)
			if a, hd := counts(h); a != 0 || hd != 0 {
				t.Fatalf("net/http alone: the fast path answered %d and handed %d", a, hd)
			}
			got := exchange(t, fast.path, tc.raw)
			if got != want {
				t.Fatalf("with the fast path:\n%q\nnet/http alone:\n%q", got, want)
			}
			if !strings.HasPrefix(want, "HTTP/1.") {
				t.Fatalf("no answer: %q", want)
			}
			a, hd := counts(h)
			if a != tc.answered || (hd == 1) != tc.handed || hd > 1 {
				t.Fatalf("fast path answered %d, handed %d connections; want %d, handed %v", a, hd, tc.answered, tc.handed)
			}
		})
	}
}

// TestFastRespectsHandlerSettings: a peer outside socket.allowed_uids, and
// a debug log, send token reads to net/http, which refuses the one and
// logs the other.
func TestFastRespectsHandlerSettings(t *testing.T) {
	const tok = "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n"
	t.Run("allowed_uids", func(t *testing.T) {
		h := NewHandler(newFakeSource(), HandlerOptions{AllowedUIDs: []int{os.Getuid() + 1}})
		fast, _ := fastPair(t, h)
		if got := exchange(t, fast.path, tok); !strings.HasPrefix(got, "HTTP/1.1 403 ") {
			t.Fatalf("not allowed: %q", got)
		}
		h.SetAllowedUIDs([]int{os.Getuid()})
		if got := exchange(t, fast.path, tok); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("allowed: %q", got)
		}
		if a, hd := counts(h); a != 1 || hd != 1 {
			t.Fatalf("fast path answered %d, handed %d; want 1 and 1", a, hd)
		}
	})
	t.Run("debug log", func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		h := NewHandler(newFakeSource(), HandlerOptions{Logger: zap.New(core)})
		fast, _ := fastPair(t, h)
		if got := exchange(t, fast.path, tok); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("%q", got)
		}
		if n := logs.FilterMessage("token served").Len(); n != 1 {
			t.Fatalf("%d \"token served\" lines; want 1", n)
		}
		if a, _ := counts(h); a != 0 {
			t.Fatalf("fast path answered %d with the debug log on", a)
		}
	})
}

// bytesSource is benchSource looked up by a name in bytes, as the rotator
// is.
type bytesSource struct{ *benchSource }

func (s bytesSource) TokenBodyBytes(name []byte, format string) ([]byte, bool, error) {
	b, ok := s.m[string(name)]
	return b, ok, nil
}

// TestFastAllocatesNothing: a keep-alive connection's token reads allocate
// nothing in the server, so that load alone never starts a collection.
func TestFastAllocatesNothing(t *testing.T) {
	h := NewHandler(bytesSource{newBenchSource()}, HandlerOptions{})
	s := startServer(t, h)
	c, err := net.Dial("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /v1/channels/b00042/token HTTP/1.1\r\nHost: tokend\r\nUser-Agent: t\r\n\r\n")
	buf := make([]byte, 4096)
	read := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(buf[:n], []byte("}\n")) {
			t.Fatalf("%q, %v", buf[:n], err)
		}
	}
	read() // the connection's buffers
	const n = 2000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		read()
	}
	runtime.ReadMemStats(&after)
	if allocs := after.Mallocs - before.Mallocs; allocs > n/20 {
		t.Fatalf("%d allocations in %d token reads", allocs, n)
	}
	if a, hd := counts(h); a != n+1 || hd != 0 {
		t.Fatalf("fast path answered %d, handed %d; want %d, 0", a, hd, n+1)
	}
}

// TestFastStops: stopping closes a keep-alive connection idle on the fast
// path at once, and Serve returns.
func TestFastStops(t *testing.T) {
	h := NewHandler(newFakeSource(), HandlerOptions{})
	s := startServer(t, h)
	c, err := net.Dial("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 ")) {
		t.Fatalf("%v", err)
	}
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testTimeouts.shutdown/2 {
		t.Fatalf("Serve returned %v after the stop; want at once", d)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(buf); err != io.EOF {
		t.Fatalf("after the stop read %d bytes, %v; want EOF", n, err)
	}
	if _, err := os.Stat(s.path); !os.IsNotExist(err) {
		t.Fatalf("socket file after the stop: %v", err)
	}
}

// TestFastIdleTimeout: a connection that sends nothing is closed after the
// header timeout, and one idle after an answer after the idle timeout.
func TestFastIdleTimeout(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	for _, tc := range []struct {
		name  string
		first string
		want  time.Duration
	}{
		{"first request", "", testTimeouts.readHeader},
		{"after an answer", "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n", testTimeouts.idle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", s.path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			c.SetReadDeadline(start.Add(3 * tc.want))
			buf := make([]byte, 4096)
			if tc.first != "" {
				io.WriteString(c, tc.first)
				if _, err := c.Read(buf); err != nil {
					t.Fatal(err)
				}
				start = time.Now()
			}
			if n, err := c.Read(buf); err != io.EOF {
				t.Fatalf("read %d bytes, %v; want EOF", n, err)
			}
			// Under the other timeout, with a second of room for a loaded
			// machine: 0.2 s against 2 s tells the two apart.
			if d := time.Since(start); d < tc.want*3/4 || d > tc.want+time.Second {
				t.Fatalf("closed after %v; want about %v", d, tc.want)
			}
		})
	}
}

// badAtEOF is net/http's answer to a request cut short by the client's
// half-close.
const badAtEOF = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// FuzzFastAgreesWithNetHTTP: whatever a client sends, the fast path's
// server sends what net/http alone does, but for one thing: net/http
// answers a request cut short by the client's half-close with 400 when it
// is the first it reads on the connection, and not when it follows one it
// answered (the read it runs in the background during a request has taken
// the end of the stream). After the fast path, that request is the first
// net/http reads, so the fast path's server may add the 400 where net/http
// alone sends nothing more.
func FuzzFastAgreesWithNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /v1/channels/1657000000/token?format=raw HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
		"GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/channels/pending/token HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
		"GET /v1/channels/shop-bot/token HTTP/1.1\r\nhost: x\r\nuser-agent: y\r\naccept-encoding: z\r\n\r\n",
	} {
		f.Add(s)
	}
	h := NewHandler(newFakeSource(), HandlerOptions{})
	fast, plain := fastPair(f, h)
	f.Fuzz(func(t *testing.T, raw string) {
		want := exchange(t, plain.path, raw)
		got := exchange(t, fast.path, raw)
		if got != want && strings.TrimSuffix(got, badAtEOF) == want && strings.HasPrefix(want, "HTTP/1.1 200 ") {
			got = want
		}
		if got != want {
			t.Fatalf("%q\nwith the fast path:\n%q\nnet/http alone:\n%q", raw, got, want)
		}
	})
}

// bigSource serves one channel whose JSON is longer than net/http sends
// with a Content-Length (it chunks it).
type bigSource struct{ fakeSource }

func (s *bigSource) TokenBody(string, string) ([]byte, bool, error) {
	return []byte(`{"access_token":"` + strings.Repeat("x", fastBodyMax) + `"}`), true, nil
}

// TestFastLongBody: a body net/http would chunk goes to net/http.
func TestFastLongBody(t *testing.T) {
	h := NewHandler(&bigSource{}, HandlerOptions{})
	fast, plain := fastPair(t, h)
	const raw = "GET /v1/channels/big/token HTTP/1.1\r\nHost: x\r\n\r\n"
	want := exchange(t, plain.path, raw)
	if got := exchange(t, fast.path, raw); got != want || !strings.Contains(want, "Transfer-Encoding: chunked") {
		t.Fatalf("with the fast path:\n%.300q\nnet/http alone:\n%.300q", got, want)
	}
	if a, hd := counts(h); a != 0 || hd != 1 {
		t.Fatalf("fast path answered %d, handed %d; want 0, 1", a, hd)
	}
}

// mapSource serves fixed bodies by the exact name looked up.
type mapSource struct {
	fakeSource
	m map[string]string
}

func (s *mapSource) TokenBody(name, _ string) ([]byte, bool, error) {
	b, ok := s.m[name]
	if !ok {
		return nil, false, nil
	}
	return []byte(b), true, nil
}

// TestFastNamesAsNetHTTPReadsThem: the fast path looks up a name only when
// net/http would read the same name from the path: a name with an escape
// ("a%62" is "ab" to net/http) goes to net/http even when a channel has
// that literal name.
func TestFastNamesAsNetHTTPReadsThem(t *testing.T) {
	h := NewHandler(&mapSource{m: map[string]string{"ab": `{"n":"ab"}`, "a%62": `{"n":"a%62"}`, "a+b": `{"n":"a+b"}`}}, HandlerOptions{})
	fast, plain := fastPair(t, h)
	for _, name := range []string{"a%62", "a+b", "ab"} {
		raw := "GET /v1/channels/" + name + "/token HTTP/1.1\r\nHost: x\r\n\r\n"
		want := exchange(t, plain.path, raw)
		if got := exchange(t, fast.path, raw); got != want {
			t.Fatalf("%s: with the fast path:\n%q\nnet/http alone:\n%q", name, got, want)
		}
	}
	if a, hd := counts(h); a != 1 || hd != 2 {
		t.Fatalf("fast path answered %d, handed %d; want 1 (ab), 2", a, hd)
	}
}

// paced writes parts on a new connection to path, sleeping gap before each
// but the first (a write the server refused, having hung up, ends them),
// half-closes, and returns the transcript.
func paced(t testing.TB, path string, gap time.Duration, parts ...string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		if i > 0 {
			time.Sleep(gap)
		}
		if _, err := io.WriteString(c, p); err != nil {
			break
		}
	}
	_ = c.(*net.UnixConn).CloseWrite()
	return transcript(t, c)
}

// TestFastDeadlinesAsNetHTTP: a head that comes in pieces meets net/http's
// deadlines with the fast path as without it: a connection's first head
// is due ReadHeaderTimeout after the connection, however it is split (the
// fast path hands on, and net/http keeps to that deadline); after an
// answer, the next request's first 4 bytes may take up to IdleTimeout.
func TestFastDeadlinesAsNetHTTP(t *testing.T) {
	const tok = "GET /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n"
	h := NewHandler(newFakeSource(), HandlerOptions{})
	fast, plain := fastPair(t, h)
	short := testTimeouts.readHeader * 3 / 4 // two of them: over the header timeout
	long := testTimeouts.readHeader * 3 / 2  // over the header timeout, under the idle one
	for _, tc := range []struct {
		name  string
		gap   time.Duration
		parts []string
	}{
		{"first head in three pieces, too slow", short, []string{"", "G", tok[1:]}},
		{"first head in two pieces, in time", testTimeouts.readHeader / 10, []string{"GET /v1/channels/", tok[len("GET /v1/channels/"):]}},
		{"after an answer, 2 bytes, then the rest", long, []string{tok + "GE", tok[2:]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := paced(t, plain.path, tc.gap, tc.parts...)
			if got := paced(t, fast.path, tc.gap, tc.parts...); got != want {
				t.Fatalf("with the fast path:\n%q\nnet/http alone:\n%q", got, want)
			}
		})
	}
}

// emptySource serves an empty body: the fast path leaves it to net/http,
// which answers HEAD without a Content-Length.
type emptySource struct{ fakeSource }

func (s *emptySource) TokenBody(string, string) ([]byte, bool, error) { return []byte{}, true, nil }

func TestFastEmptyBody(t *testing.T) {
	h := NewHandler(&emptySource{}, HandlerOptions{})
	fast, plain := fastPair(t, h)
	for _, raw := range []string{
		"HEAD /v1/channels/e/token HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/channels/e/token HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		want := exchange(t, plain.path, raw)
		if got := exchange(t, fast.path, raw); got != want {
			t.Fatalf("with the fast path:\n%q\nnet/http alone:\n%q", got, want)
		}
	}
}

// slowAccept is a listener whose Accept dawdles after each connection, as
// an accept goroutine the scheduler left waiting.
type slowAccept struct{ net.Listener }

func (l slowAccept) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		time.Sleep(300 * time.Millisecond)
	}
	return c, err
}

// TestFastStopWaitsForAccept: Serve returns only once the fast path's
// accept loop has ended, and with it every connection it accepted.
func TestFastStopWaitsForAccept(t *testing.T) {
	path, ln := listenT(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, slowAccept{ln}, NewHandler(newFakeSource(), HandlerOptions{}), testTimeouts)
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // accepted, not yet served
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("when Serve returned the connection read %d bytes, %v; want EOF (closed)", n, err)
	}
}
