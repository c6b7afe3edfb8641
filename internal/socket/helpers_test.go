package socket

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/rotator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// secretToken is the fake access token; no test output may show it.
const secretToken = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln-_+/="

var (
	issued  = time.Date(2025, 3, 4, 5, 5, 6, 0, time.UTC)
	expires = time.Date(2025, 4, 3, 5, 5, 6, 0, time.UTC)
)

// fakeSource is a Source with two channels: shop-bot (ID 1657000000) holds
// a token, pending (ID 1657000001) holds none yet.
type fakeSource struct {
	mu     sync.Mutex
	ready  bool
	tokens map[string]output.Token
	status []rotator.ChannelStatus
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		ready: true,
		tokens: map[string]output.Token{
			"1657000000": {ChannelID: "1657000000", Name: "shop-bot", AccessToken: secretToken, TokenType: "Bearer",
				KeyID: "536e453c-aa93-4449-8e90-add2608783c6", IssuedAt: issued, ExpiresAt: expires},
		},
		status: []rotator.ChannelStatus{
			{ID: "1657000000", Name: "shop-bot", Kind: "v2.1", KeyID: "536e453c-aa93-4449-8e90-add2608783c6",
				IssuedAt: issued, ExpiresAt: expires, NextRotation: expires.Add(-10 * 24 * time.Hour), Valid: true},
			{ID: "1657000001", Name: "pending", Kind: "v2.1", LastError: "issue token: POST /oauth2/v2.1/token: 429",
				LastErrorAt: issued},
		},
	}
}

func (f *fakeSource) TokenBody(idOrName, format string) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range f.status {
		if st.ID == idOrName || (st.Name != "" && st.Name == idOrName) {
			tok := f.tokens[st.ID]
			if tok.AccessToken == "" || !st.Valid {
				return nil, true, nil
			}
			b, err := output.Render(format, tok)
			return b, true, err
		}
	}
	return nil, false, nil
}

func (f *fakeSource) Status() []rotator.ChannelStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rotator.ChannelStatus(nil), f.status...)
}

func (f *fakeSource) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeSource) setReady(r bool) {
	f.mu.Lock()
	f.ready = r
	f.mu.Unlock()
}

// shortDir is a temporary directory with a path short enough for sockets
// (t.TempDir() names can pass sun_path's 108 bytes).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testTimeouts keep the slow-client tests fast.
var testTimeouts = timeouts{
	readHeader: 200 * time.Millisecond,
	read:       2 * time.Second,
	write:      2 * time.Second,
	idle:       2 * time.Second,
	shutdown:   time.Second,
}

// server is a handler served on a real Unix socket.
type server struct {
	path   string
	client *http.Client
	stop   func() error // stops the server, returns what Serve returned
}

// listenT listens (Listen, mode 0600) on a fresh socket path.
func listenT(t testing.TB) (string, net.Listener) {
	t.Helper()
	path := filepath.Join(shortDir(t), "tokend.sock")
	ln, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path, ln
}

// startServer serves h on a fresh socket until the test ends.
func startServer(t testing.TB, h http.Handler) *server {
	t.Helper()
	path, ln := listenT(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, h, testTimeouts) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	s := &server{path: path, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
	var once sync.Once
	var serr error
	s.stop = func() error {
		once.Do(func() {
			tr.CloseIdleConnections()
			cancel()
			select {
			case serr = <-done:
			case <-time.After(5 * time.Second):
				serr = errors.New("Serve did not return within 5s of cancellation")
			}
		})
		return serr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// do sends one request and returns status, headers and body.
func (s *server) do(t *testing.T, method, target string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://tokend"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}
