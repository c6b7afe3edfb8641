package socket

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/rotator"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestClientToken(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	c := NewClient(s.path)
	ctx := context.Background()
	for _, ch := range []string{"shop-bot", "1657000000"} {
		tok, err := c.Token(ctx, ch)
		if err != nil || tok != secretToken {
			t.Fatalf("Token(%s) = %v", ch, err) // never print the token
		}
	}
	tests := []struct{ channel, want string }{
		{"nope", `unknown channel "nope"`},
		{"pending", `channel "pending" has no valid token yet`},
		{"..", `unknown channel ".."`},
		{".", `unknown channel "."`},
		{"a/b", `unknown channel "a/b"`},
		{"a b?c#d", `unknown channel "a b?c#d"`},
		{"\x00", `unknown channel "\x00"`},
		{"", "channel name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			tok, err := c.Token(ctx, tt.channel)
			if err == nil || err.Error() != tt.want || tok != "" {
				t.Fatalf("err = %v\nwant  %s", err, tt.want)
			}
		})
	}
}

func TestClientStatus(t *testing.T) {
	src := newFakeSource()
	s := startServer(t, NewHandler(src, HandlerOptions{}))
	st, err := NewClient(s.path).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := src.Status()
	if len(st) != len(want) {
		t.Fatalf("%d channels", len(st))
	}
	for i := range st {
		w := want[i]
		if st[i].ID != w.ID || st[i].Name != w.Name || st[i].Kind != w.Kind || st[i].KeyID != w.KeyID ||
			!st[i].ExpiresAt.Equal(w.ExpiresAt) || !st[i].NextRotation.Equal(w.NextRotation) ||
			st[i].Valid != w.Valid || st[i].LastError != w.LastError || !st[i].LastErrorAt.Equal(w.LastErrorAt) {
			t.Errorf("channel %d: %+v\nwant %+v", i, st[i], w)
		}
	}
}

func TestClientRefused(t *testing.T) {
	uid := os.Getuid()
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{AllowedUIDs: []int{uid + 1}}))
	c := NewClient(s.path)
	want := fmt.Sprintf("tokend at %s refused this user (uid %d): uid %d is not allowed (socket.allowed_uids)", s.path, uid, uid)
	if _, err := c.Token(context.Background(), "shop-bot"); err == nil || err.Error() != want {
		t.Errorf("Token: %v\nwant   %s", err, want)
	}
	if _, err := c.Status(context.Background()); err == nil || err.Error() != want {
		t.Errorf("Status: %v\nwant    %s", err, want)
	}
}

func TestClientUnreachable(t *testing.T) {
	dir := shortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	notSock := filepath.Join(dir, "file")
	os.WriteFile(notSock, nil, 0o600)
	tests := []struct{ path, want string }{
		{missing, "cannot reach tokend at " + missing + ": no such file or directory; is it running?"},
		{stale, "cannot reach tokend at " + stale + ": connection refused; is it running?"},
		{notSock, "cannot reach tokend at " + notSock + ": connection refused; is it running?"},
	}
	for _, tt := range tests {
		c := NewClient(tt.path)
		if _, err := c.Token(context.Background(), "shop-bot"); err == nil || err.Error() != tt.want {
			t.Errorf("Token: %v\nwant   %s", err, tt.want)
		}
		if _, err := c.Status(context.Background()); err == nil || err.Error() != tt.want {
			t.Errorf("Status: %v\nwant    %s", err, tt.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewClient(missing).Token(ctx, "x"); err == nil || err.Error() != "ask tokend at "+missing+": context canceled" {
		t.Errorf("canceled: %v", err)
	}
}

// fixed serves one canned response, for the client's odd cases.
func fixed(status int, ct, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		w.Write([]byte(body))
	})
}

func TestClientOddResponses(t *testing.T) {
	tests := []struct {
		name     string
		h        http.Handler
		token    string // Token's error
		status   string // Status's error
		tokenGot bool
	}{
		{"server error", fixed(500, "application/json", `{"error":"boom"}`),
			"tokend at %s: 500 Internal Server Error: boom", "tokend at %s: 500 Internal Server Error: boom", false},
		{"not json", fixed(502, "text/html", "<h1>bad\ngateway</h1>"),
			"tokend at %s: 502 Bad Gateway: <h1>bad gateway</h1>", "tokend at %s: 502 Bad Gateway: <h1>bad gateway</h1>", false},
		{"empty error", fixed(500, "text/plain", ""),
			"tokend at %s: 500 Internal Server Error", "tokend at %s: 500 Internal Server Error", false},
		{"empty 200", fixed(200, "text/plain", ""),
			"tokend at %s sent an empty token", "read status from tokend at %s: EOF", false},
		{"huge 200", fixed(200, "text/plain", strings.Repeat("a", maxTokenBody+1)),
			"tokend at %s sent more than 65536 bytes for a token", "read status from tokend at %s: invalid character 'a' looking for beginning of value", false},
		{"redirect", http.RedirectHandler("/elsewhere", http.StatusMovedPermanently),
			`unknown channel "shop-bot"`, "tokend at %s: 301 Moved Permanently: <a href=\"/elsewhere\">Moved Permanently</a>.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.h)
			c := NewClient(s.path)
			wantTok, wantSt := tt.token, tt.status
			if strings.Contains(wantTok, "%s") {
				wantTok = fmt.Sprintf(wantTok, s.path)
			}
			if strings.Contains(wantSt, "%s") {
				wantSt = fmt.Sprintf(wantSt, s.path)
			}
			if _, err := c.Token(context.Background(), "shop-bot"); err == nil || err.Error() != wantTok {
				t.Errorf("Token: %v\nwant   %s", err, wantTok)
			}
			if _, err := c.Status(context.Background()); err == nil || err.Error() != wantSt {
				t.Errorf("Status: %v\nwant    %s", err, wantSt)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 5s client timeout")
	}
	release := make(chan struct{})
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	start := time.Now()
	_, err := NewClient(s.path).Status(context.Background())
	want := "tokend at " + s.path + " did not answer within 5s"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if d := time.Since(start); d < 4*time.Second || d > 8*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}

func TestWriteStatusTable(t *testing.T) {
	now := time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)
	st := []rotator.ChannelStatus{
		{ID: "1657000000", Name: "shop-bot", Kind: "v2.1", KeyID: "536e453c-aa93-4449-8e90-add2608783c6",
			IssuedAt: now.Add(-55 * time.Minute), ExpiresAt: now.Add(30*24*time.Hour - 55*time.Minute),
			NextRotation: now.Add(20*24*time.Hour - 55*time.Minute), Valid: true, Orphans: 2},
		{ID: "1657000001", Kind: "stateless", ExpiresAt: now.Add(14*time.Minute + 5*time.Second),
			NextRotation: now.Add(4 * time.Minute), Valid: true},
		{ID: "1657000002", Name: "pending", Kind: "v2.1",
			LastError:   "issue token for channel 1657000002: POST /oauth2/v2.1/token: 400 invalid_client:\n\tiss and clientId of key do not match, and this message is very long indeed",
			LastErrorAt: now.Add(-3*time.Minute - 20*time.Second), NextRotation: now.Add(90 * time.Second)},
		{ID: "1657000003", Name: "old-bot", Kind: "short-lived", KeyID: "short",
			ExpiresAt: now.Add(-2 * time.Hour), NextRotation: now, LastError: "revoke: timeout"},
		{ID: "1657000004", Name: "evil\x1b[2J\u202ebot", Kind: "v2.1\t"},
	}
	var buf bytes.Buffer
	if err := WriteStatusTable(&buf, st, now); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "status.golden")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Fatalf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	// Empty: just the header.
	buf.Reset()
	WriteStatusTable(&buf, nil, now)
	if buf.String() != "CHANNEL  KIND  KEY ID  EXPIRES  NEXT ROTATION  STATE  ORPHANS  LAST ERROR\n" {
		t.Fatalf("empty table: %q", buf.String())
	}
}

func TestSpan(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{45 * time.Second, "45s"},
		{time.Minute, "1m"},
		{12*time.Minute + 5*time.Second, "12m5s"},
		{5*time.Hour + 3*time.Minute + 59*time.Second, "5h3m"},
		{24 * time.Hour, "1d"},
		{29*24*time.Hour + 23*time.Hour + 59*time.Minute, "29d23h"},
	}
	for _, tt := range tests {
		if got := span(tt.d); got != tt.want {
			t.Errorf("span(%v) = %s; want %s", tt.d, got, tt.want)
		}
	}
}

func TestClientPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores the socket's permission bits (TestTransportError covers the message)")
	}
	path := filepath.Join(shortDir(t), "tokend.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := "cannot reach tokend at " + path + ": permission denied; is this user allowed to open the socket (socket.mode, its group)?"
	if _, err := NewClient(path).Token(context.Background(), "shop-bot"); err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestTransportError(t *testing.T) {
	const path = "/run/tokend/tokend.sock"
	dial := func(err error) error {
		return &url.Error{Op: "Get", URL: "http://tokend/v1/channels", Err: &net.OpError{Op: "dial", Net: "unix", Err: err}}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"missing", dial(&os.SyscallError{Syscall: "connect", Err: syscall.ENOENT}),
			"cannot reach tokend at /run/tokend/tokend.sock: no such file or directory; is it running?"},
		{"refused", dial(&os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}),
			"cannot reach tokend at /run/tokend/tokend.sock: connection refused; is it running?"},
		{"permission", dial(&os.SyscallError{Syscall: "connect", Err: syscall.EACCES}),
			"cannot reach tokend at /run/tokend/tokend.sock: permission denied; is this user allowed to open the socket (socket.mode, its group)?"},
		{"dial other", dial(errors.New("something odd")),
			"cannot reach tokend at /run/tokend/tokend.sock: something odd; is it running?"},
		{"timeout", &url.Error{Op: "Get", URL: "http://tokend/v1/channels", Err: timeoutErr{}},
			"tokend at /run/tokend/tokend.sock did not answer within 5s"},
		{"reset", &url.Error{Op: "Get", URL: "http://tokend/v1/channels", Err: &net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNRESET}},
			"ask tokend at /run/tokend/tokend.sock: read unix: connection reset by peer"},
	}
	c := NewClient(path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.transportError(context.Background(), tt.err); got.Error() != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
