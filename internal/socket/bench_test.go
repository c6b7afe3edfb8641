package socket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/rotator"
)

// benchChannels is how many channels the benchmark source holds.
const benchChannels = 10000

// benchSource is a read-only Source of benchChannels channels, looked up
// in a map without locking, each token's JSON rendered once, as the
// rotator's TokenBody does.
type benchSource struct{ m map[string][]byte }

func newBenchSource() *benchSource {
	s := &benchSource{m: make(map[string][]byte, 2*benchChannels)}
	for i := range benchChannels {
		tok := output.Token{
			ChannelID: fmt.Sprintf("1%09d", i), Name: fmt.Sprintf("b%05d", i),
			AccessToken: strings.Repeat("x", 170), TokenType: "Bearer",
			KeyID: "536e453c-aa93-4449-8e90-add2608783c6", IssuedAt: issued, ExpiresAt: expires,
		}
		b, err := output.Render(output.FormatJSON, tok)
		if err != nil {
			panic(err)
		}
		s.m[tok.ChannelID], s.m[tok.Name] = b, b
	}
	return s
}

func (s *benchSource) TokenBody(idOrName, format string) ([]byte, bool, error) {
	if format != output.FormatJSON {
		return nil, false, fmt.Errorf("benchSource serves json only, not %q", format)
	}
	b, ok := s.m[idOrName]
	return b, ok, nil
}

func (s *benchSource) Status() []rotator.ChannelStatus { return nil }
func (s *benchSource) Ready() bool                     { return true }

// bareHandler is the baseline: net/http answering a constant of about the
// size of a token's JSON.
func bareHandler() http.Handler {
	body := []byte(`{"channel_id":"1000000000","name":"b00000","access_token":"` + strings.Repeat("x", 170) +
		`","token_type":"Bearer","key_id":"536e453c-aa93-4449-8e90-add2608783c6","issued_at":"2025-03-04T05:05:06Z","expires_at":"2025-04-03T05:05:06Z"}`)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// nullWriter is a ResponseWriter that keeps nothing but the status.
type nullWriter struct {
	h    http.Header
	code int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkTokenHandler is the socket's token route in process (routing,
// the peer check, lookup, JSON rendering, headers), against a bare handler
// returning a constant: the ratio of the two ns/op is the handler's cost.
func BenchmarkTokenHandler(b *testing.B) {
	src := newBenchSource()
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"tokend", NewHandler(src, HandlerOptions{})},
		{"bare", bareHandler()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.WithValue(context.Background(), peerKey{}, peer{unix: true, uid: os.Getuid(), gid: os.Getgid(), pid: 1})
			reqs := make([]*http.Request, 1024)
			for i := range reqs {
				r, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://tokend/v1/channels/b%05d/token", i*7%benchChannels), nil)
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = r
			}
			w := &nullWriter{h: http.Header{}}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				clear(w.h)
				w.code = 0
				bc.h.ServeHTTP(w, reqs[i%len(reqs)])
				if w.code != 0 && w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// serveBench serves, until b ends, tokend's handler from src by Serve
// (name "tokend"), or else the bare handler on a plain http.Server, on a
// fresh Unix socket, and returns the socket's path.
func serveBench(b *testing.B, name string, src Source) string {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var path string
	if name == "tokend" {
		var ln net.Listener
		path, ln = listenT(b)
		go func() { done <- Serve(ctx, ln, NewHandler(src, HandlerOptions{})) }()
	} else {
		path = filepath.Join(shortDir(b), "b.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: bareHandler()}
		go func() { _ = srv.Serve(ln); done <- nil }()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return path
}

// BenchmarkTokenSocket is the token route end to end: 64 keep-alive
// clients (GOMAXPROCS x parallelism) over a Unix socket, tokend's handler
// served by Serve against the bare handler on a plain http.Server on the
// same kind of socket.
func BenchmarkTokenSocket(b *testing.B) {
	src := newBenchSource()
	for _, name := range []string{"tokend", "bare"} {
		b.Run(name, func(b *testing.B) {
			path := serveBench(b, name, src)
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				tr := &http.Transport{
					DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, "unix", path)
					},
					MaxIdleConnsPerHost: 1,
					DisableCompression:  true,
				}
				defer tr.CloseIdleConnections()
				cl := &http.Client{Transport: tr}
				for pb.Next() {
					i := n.Add(1)
					resp, err := cl.Get(fmt.Sprintf("http://tokend/v1/channels/b%05d/token", i*7%benchChannels))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkTokenSocketRaw is BenchmarkTokenSocket with clients that
// allocate nothing (a request written from a fixed buffer, the answer read
// into one), so that B/op and allocs/op are the servers' own: tokend's
// fast path against the bare handler on a plain http.Server.
func BenchmarkTokenSocketRaw(b *testing.B) {
	src := bytesSource{newBenchSource()}
	for _, name := range []string{"tokend", "bare"} {
		b.Run(name, func(b *testing.B) {
			path := serveBench(b, name, src)
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("unix", path)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				req := fmt.Appendf(nil, "GET /v1/channels/b%05d/token HTTP/1.1\r\nHost: tokend\r\n\r\n", n.Add(1)*7%benchChannels)
				buf := make([]byte, 4096)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					if err := readAnswer(c, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// readAnswer reads one 200 answer with a Content-Length into buf.
func readAnswer(c net.Conn, buf []byte) error {
	have := 0
	for {
		n, err := c.Read(buf[have:])
		if err != nil {
			return err
		}
		have += n
		head := bytes.Index(buf[:have], []byte("\r\n\r\n"))
		if head < 0 {
			continue
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("answer %.40q", buf[:have])
		}
		i := bytes.Index(buf[:head], []byte("Content-Length: "))
		if i < 0 {
			return fmt.Errorf("no Content-Length in %.200q", buf[:head])
		}
		length := 0
		for _, d := range buf[i+len("Content-Length: ") : head] {
			if d < '0' || d > '9' {
				break
			}
			length = 10*length + int(d-'0')
		}
		if have >= head+4+length {
			return nil
		}
	}
}
