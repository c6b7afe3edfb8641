package socket

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokend/tokend/internal/metrics"
	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/rotator"
)

func TestRoutes(t *testing.T) {
	src := newFakeSource()
	m := metrics.New()
	m.SetReady(true)
	core, logs := observer.New(zapcore.DebugLevel)
	s := startServer(t, NewHandler(src, HandlerOptions{Metrics: m.Handler(), Logger: zap.New(core)}))
	wantJSON, err := output.Render("json", src.tokens["1657000000"])
	if err != nil {
		t.Fatal(err)
	}

	const (
		jsonCT = "application/json"
		textCT = "text/plain; charset=utf-8"
	)
	tests := []struct {
		name, method, target string
		hdr                  map[string]string
		status               int
		ct                   string
		body                 string // exact, unless contains is set
		contains             bool
	}{
		{"json by name", "GET", "/v1/channels/shop-bot/token", nil, 200, jsonCT, string(wantJSON), false},
		{"json by id", "GET", "/v1/channels/1657000000/token", nil, 200, jsonCT, string(wantJSON), false},
		{"format=json", "GET", "/v1/channels/shop-bot/token?format=json", map[string]string{"Accept": "text/plain"}, 200, jsonCT, string(wantJSON), false},
		{"raw by query", "GET", "/v1/channels/shop-bot/token?format=raw", nil, 200, textCT, secretToken, false},
		{"raw by accept", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain"}, 200, textCT, secretToken, false},
		{"raw by accept with params", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=0.9, application/json;q=0.1"}, 200, textCT, secretToken, false},
		{"json first in accept", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "application/json, text/plain"}, 200, jsonCT, string(wantJSON), false},
		{"malformed accept", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": ";;;, text/plain"}, 200, textCT, secretToken, false},
		{"text/plain refused by q=0", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=0, application/json"}, 200, jsonCT, string(wantJSON), false},
		{"only text/plain, refused", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=0.0"}, 200, jsonCT, string(wantJSON), false},
		{"higher q wins over order", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "application/json;q=0.5, text/plain"}, 200, textCT, secretToken, false},
		{"bad q skipped", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=x, application/json"}, 200, jsonCT, string(wantJSON), false},
		{"any accept", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "*/*"}, 200, jsonCT, string(wantJSON), false},
		{"json refused, text not named", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "application/json;q=0"}, 200, textCT, secretToken, false},
		{"both refused", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "application/json;q=0, text/plain;q=0"}, 200, jsonCT, string(wantJSON), false},
		{"wildcard outweighs", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "*/*;q=0.9, text/plain;q=0.1"}, 200, jsonCT, string(wantJSON), false},
		{"text wildcard", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/*"}, 200, textCT, secretToken, false},
		{"specific over wildcard", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=0, */*"}, 200, jsonCT, string(wantJSON), false},
		{"wildcard refuses json", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "application/*;q=0, text/plain;q=0.1"}, 200, textCT, secretToken, false},
		{"q over 1 ignored", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=2, application/json;q=0.5"}, 200, jsonCT, string(wantJSON), false},
		{"q=inf ignored", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=inf, application/json;q=0.5"}, 200, jsonCT, string(wantJSON), false},
		{"q=NaN ignored", "GET", "/v1/channels/shop-bot/token", map[string]string{"Accept": "text/plain;q=NaN, application/json;q=0.5"}, 200, jsonCT, string(wantJSON), false},
		{"malformed query", "GET", "/v1/channels/shop-bot/token?format=%zz", nil, 400, jsonCT, `{"error":"malformed query string"}` + "\n", false},
		{"bad format", "GET", "/v1/channels/shop-bot/token?format=env", nil, 400, jsonCT, `{"error":"unknown format \"env\" (want json or raw)"}` + "\n", false},
		{"unknown channel", "GET", "/v1/channels/nope/token", nil, 404, jsonCT, `{"error":"unknown channel \"nope\""}` + "\n", false},
		{"no token yet", "GET", "/v1/channels/pending/token", nil, 503, jsonCT, `{"error":"channel \"pending\" has no valid token yet"}` + "\n", false},
		{"no token yet raw", "GET", "/v1/channels/1657000001/token?format=raw", nil, 503, jsonCT, `{"error":"channel \"1657000001\" has no valid token yet"}` + "\n", false},
		{"post token", "POST", "/v1/channels/shop-bot/token", nil, 405, jsonCT, `{"error":"method \"POST\" not allowed"}` + "\n", false},
		{"delete channels", "DELETE", "/v1/channels", nil, 405, jsonCT, `{"error":"method \"DELETE\" not allowed"}` + "\n", false},
		{"put healthz", "PUT", "/healthz", nil, 405, jsonCT, `{"error":"method \"PUT\" not allowed"}` + "\n", false},
		{"channels", "GET", "/v1/channels", nil, 200, jsonCT, `"channel_id":"1657000000"`, true},
		{"healthz", "GET", "/healthz", nil, 200, textCT, "ok", false},
		{"head healthz", "HEAD", "/healthz", nil, 200, textCT, "", false},
		{"readyz", "GET", "/readyz", nil, 200, textCT, "ok", false},
		{"metrics", "GET", "/metrics", nil, 200, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", "\ntokend_ready 1\n", true},
		{"unknown path", "GET", "/v2/token", nil, 404, jsonCT, `{"error":"not found"}` + "\n", false},
		{"trailing slash", "GET", "/v1/channels/shop-bot/token/", nil, 404, jsonCT, `{"error":"not found"}` + "\n", false},
		{"root", "GET", "/", nil, 404, jsonCT, `{"error":"not found"}` + "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := s.do(t, tt.method, tt.target, tt.hdr)
			if status != tt.status {
				t.Errorf("status %d; want %d (body %q)", status, tt.status, body)
			}
			if ct := hdr.Get("Content-Type"); ct != tt.ct {
				t.Errorf("Content-Type %q; want %q", ct, tt.ct)
			}
			if tt.contains && !strings.Contains(body, tt.body) || !tt.contains && body != tt.body {
				t.Errorf("body %q; want %q", body, tt.body)
			}
			if strings.Contains(tt.target, "/token") && hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q; want no-store", hdr.Get("Cache-Control"))
			}
			if tt.status == 405 && hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", hdr.Get("Allow"))
			}
			if strings.Contains(body, secretToken) && tt.status != 200 {
				t.Errorf("error response holds the token")
			}
		})
	}

	src.setReady(false)
	if status, _, body := s.do(t, "GET", "/readyz", nil); status != 503 || body != "not ready" {
		t.Errorf("readyz when not ready: %d %q", status, body)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), secretToken) {
			t.Errorf("log line holds the token: %s", e.Message)
		}
	}
	if logs.FilterMessage("token served").Len() == 0 {
		t.Error("no debug line for served tokens")
	}
}

// TestTokenJSONKeys checks the exact key set and order of the JSON body.
func TestTokenJSONKeys(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	_, _, body := s.do(t, "GET", "/v1/channels/shop-bot/token", nil)
	dec := json.NewDecoder(strings.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %q", body)
	}
	var keys []string
	vals := map[string]string{}
	for dec.More() {
		k, _ := dec.Token()
		var v string
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		vals[k.(string)] = v
	}
	if got := strings.Join(keys, " "); got != "channel_id name access_token token_type key_id issued_at expires_at" {
		t.Fatalf("keys: %s", got)
	}
	want := map[string]string{"channel_id": "1657000000", "name": "shop-bot", "access_token": secretToken, "token_type": "Bearer",
		"key_id": "536e453c-aa93-4449-8e90-add2608783c6", "issued_at": "2025-03-04T05:05:06Z", "expires_at": "2025-04-03T05:05:06Z"}
	for k, v := range want {
		if vals[k] != v {
			t.Errorf("%s = %q; want %q", k, vals[k], v)
		}
	}
}

func TestChannelsNeverHoldTokens(t *testing.T) {
	src := newFakeSource()
	s := startServer(t, NewHandler(src, HandlerOptions{}))
	status, hdr, body := s.do(t, "GET", "/v1/channels", nil)
	if status != 200 || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", status, hdr)
	}
	for _, part := range strings.Split(secretToken, ".") {
		if strings.Contains(body, part) {
			t.Fatalf("/v1/channels holds (part of) the token: %s", body)
		}
	}
	var got struct {
		Channels []rotator.ChannelStatus `json:"channels"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Channels) != 2 || got.Channels[0].Name != "shop-bot" || !got.Channels[0].Valid ||
		got.Channels[1].LastError == "" || !got.Channels[0].ExpiresAt.Equal(expires) {
		t.Fatalf("channels: %+v", got.Channels)
	}
	// No channels: an empty list, not null.
	empty := startServer(t, NewHandler(&fakeSource{}, HandlerOptions{}))
	if _, _, body := empty.do(t, "GET", "/v1/channels", nil); body != `{"channels":[]}`+"\n" {
		t.Fatalf("empty: %q", body)
	}
}

func TestMetricsDisabled(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	if status, _, body := s.do(t, "GET", "/metrics", nil); status != 404 || body != `{"error":"metrics are not enabled"}`+"\n" {
		t.Fatalf("%d %q", status, body)
	}
}

// TestHostileChannelNames sends names meant to confuse routing, quoting or
// memory: each must give 404 or 400 (after any redirect to a clean path),
// never a panic, a token, or an echo longer than the clip.
func TestHostileChannelNames(t *testing.T) {
	s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{}))
	long := strings.Repeat("ñ", 5000) // 10 KB
	tests := []struct{ name, segment string }{
		{"dot dot", ".."},
		{"dot", "."},
		{"encoded dot dot", "%2e%2e"},
		{"encoded dot dot upper", "%2E%2E"},
		{"slash inside", "a%2Fb"},
		{"encoded slash", "%2F"},
		{"shop-bot behind encoded slash", "x%2F..%2Fshop-bot"},
		{"nul", "%00"},
		{"nul then name", "shop-bot%00"},
		{"newline", "shop-bot%0D%0AX-Evil:%201"},
		{"quote", "%22%5C"},
		{"invalid utf-8", "%FF%FE"},
		{"unicode", "%E3%82%B7%E3%83%A7%E3%83%83%E3%83%97"},
		{"bidi override", "%E2%80%AEtob-pohs"},
		{"10 KB", long},
		{"bad escape", "%zz"},
		{"percent", "%"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("unix", s.path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A raw request line: no client-side normalisation.
			fmt.Fprintf(conn, "GET /v1/channels/%s/token HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n", tt.segment)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body strings.Builder
			bufio.NewReader(resp.Body).WriteTo(&body)
			status := resp.StatusCode
			if status/100 == 3 { // ServeMux redirects to the cleaned path
				loc := resp.Header.Get("Location")
				st, _, b := s.do(t, "GET", loc, nil)
				status, body = st, strings.Builder{}
				body.WriteString(b)
			}
			if status != 404 && status != 400 {
				t.Fatalf("status %d; want 404 or 400 (body %q)", status, body.String())
			}
			if strings.Contains(body.String(), secretToken) {
				t.Fatal("body holds the token")
			}
			if body.Len() > 300 {
				t.Fatalf("body is %d bytes: the name was not clipped", body.Len())
			}
		})
	}
}

func FuzzTokenRoute(f *testing.F) {
	h := NewHandler(newFakeSource(), HandlerOptions{})
	for _, s := range []string{"shop-bot", "..", "%2F", "%00", "a/b", "ñ", "shop-bot?format=raw", "%zz", "shop-bot%2F..", ""} {
		f.Add(s, "text/plain")
	}
	f.Fuzz(func(t *testing.T, segment, accept string) {
		raw := "GET /v1/channels/" + segment + "/token HTTP/1.1\r\nHost: tokend\r\nAccept: " + accept + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if got := req.PathValue("channel"); got != "shop-bot" && got != "1657000000" {
				// The mux may have matched a cleaned path; only the
				// real channel may ever get its token.
				if !strings.Contains(req.URL.Path, "shop-bot") && !strings.Contains(req.URL.Path, "1657000000") {
					t.Fatalf("200 for %q", segment)
				}
			}
		case 301, 307, 400, 404, 503:
			if strings.Contains(rec.Body.String(), secretToken) {
				t.Fatalf("%d body holds the token", rec.Code)
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, segment)
		}
		// The hot path's own match must agree with the mux it bypasses.
		if name, ok := tokenPath(req.URL); ok {
			if got, routed := muxChannel(req); !routed || got != name {
				t.Fatalf("tokenPath(%q) = %q; the mux routes it to the token route %v with %q", req.URL.Path, name, routed, got)
			}
		}
	})
}

// muxChannel routes r through a ServeMux holding the token pattern and
// returns the {channel} it matched, if it routed r there.
func muxChannel(r *http.Request) (channel string, routed bool) {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/channels/{channel}/token", func(_ http.ResponseWriter, r *http.Request) {
		channel, routed = r.PathValue("channel"), true
	})
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	mux.ServeHTTP(httptest.NewRecorder(), r.Clone(r.Context()))
	return channel, routed
}

func TestTokenPathAgreesWithMux(t *testing.T) {
	for _, target := range []string{
		"/v1/channels/shop-bot/token", "/v1/channels/1657000000/token", "/v1/channels/token",
		"/v1/channels//token", "/v1/channels/./token", "/v1/channels/../token", "/v1/channels/a/b/token",
		"/v1/channels/a%2Fb/token", "/v1/channels/%2e%2e/token", "/v1/channels/x/tokens", "/v2/channels/x/token",
		"/v1/channels/ñ/token", "/v1/channels/a%20b/token",
	} {
		req := httptest.NewRequest("GET", target, nil)
		name, ok := tokenPath(req.URL)
		got, routed := muxChannel(req)
		if ok && (!routed || got != name) {
			t.Errorf("%s: tokenPath %q; mux %v %q", target, name, routed, got)
		}
	}
	// The paths the bots use take the hot path.
	for _, target := range []string{"/v1/channels/shop-bot/token", "/v1/channels/1657000000/token?format=raw"} {
		if _, ok := tokenPath(httptest.NewRequest("GET", target, nil).URL); !ok {
			t.Errorf("%s: not on the hot path", target)
		}
	}
}

func TestPeerCredentials(t *testing.T) {
	uid := os.Getuid()
	tests := []struct {
		name    string
		allowed []int
		status  int
		body    string
	}{
		{"no list", nil, 200, secretToken},
		{"own uid listed", []int{uid + 1, uid}, 200, secretToken},
		{"own uid not listed", []int{uid + 1, uid + 2}, 403, fmt.Sprintf(`{"error":"uid %d is not allowed (socket.allowed_uids)"}`+"\n", uid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			s := startServer(t, NewHandler(newFakeSource(), HandlerOptions{AllowedUIDs: tt.allowed, Logger: zap.New(core)}))
			for _, target := range []string{"/v1/channels/shop-bot/token?format=raw", "/v1/channels", "/healthz", "/metrics", "/nope"} {
				status, _, body := s.do(t, "GET", target, nil)
				if tt.status == 403 && (status != 403 || body != tt.body) {
					t.Errorf("%s: %d %q; want 403 %q", target, status, body, tt.body)
				}
				if tt.status == 200 && status == 403 {
					t.Errorf("%s: 403 for an allowed peer", target)
				}
				if target == "/v1/channels/shop-bot/token?format=raw" && tt.status == 200 && body != tt.body {
					t.Errorf("token: %d %q", status, body)
				}
			}
			if tt.status == 403 {
				// The refused peer's connection is closed after the answer.
				resp, err := s.client.Get("http://tokend/v1/channels")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 403 || !resp.Close {
					t.Errorf("refused: %d, connection closed after it: %v; want 403, true", resp.StatusCode, resp.Close)
				}
				refused := logs.FilterMessage("peer not in socket.allowed_uids; request refused").All()
				if len(refused) != 6 || refused[0].ContextMap()["uid"] != int64(uid) || refused[0].ContextMap()["pid"] != int64(os.Getpid()) {
					t.Errorf("refusals logged: %v", refused)
				}
			}
		})
	}
}

// TestNotUnix serves both handlers on TCP: the metrics handler has no token
// or channel routes; the socket handler, if ever served there, refuses them.
func TestNotUnix(t *testing.T) {
	src := newFakeSource()
	m := metrics.New()
	for _, tc := range []struct {
		name    string
		h       http.Handler
		private int
	}{
		{"metrics handler", NewMetricsHandler(src, m.Handler()), 404},
		{"socket handler with allow-list", NewHandler(src, HandlerOptions{Metrics: m.Handler(), AllowedUIDs: []int{os.Getuid()}}), 403},
		{"socket handler without allow-list", NewHandler(src, HandlerOptions{Metrics: m.Handler()}), 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- serve(ctx, ln, tc.h, testTimeouts) }()
			client := &http.Client{Transport: &http.Transport{}}
			defer func() {
				client.CloseIdleConnections()
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			get := func(path string) (int, string) {
				resp, err := client.Get("http://" + ln.Addr().String() + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var b strings.Builder
				bufio.NewReader(resp.Body).WriteTo(&b)
				return resp.StatusCode, b.String()
			}
			for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
				if status, _ := get(p); status != 200 {
					t.Errorf("%s: %d", p, status)
				}
			}
			for _, p := range []string{"/v1/channels/shop-bot/token", "/v1/channels/shop-bot/token?format=raw", "/v1/channels"} {
				status, body := get(p)
				if status != tc.private || strings.Contains(body, secretToken) || strings.Contains(body, "1657000000") {
					t.Errorf("%s: %d %q; want %d", p, status, body, tc.private)
				}
			}
		})
	}
}

// TestHandlerOutsideServe: without Serve's peer record, an allow-list
// cannot be checked, so everything is refused; without one, it serves.
func TestHandlerOutsideServe(t *testing.T) {
	req := httptest.NewRequest("GET", "/v1/channels/shop-bot/token?format=raw", nil)
	rec := httptest.NewRecorder()
	NewHandler(newFakeSource(), HandlerOptions{AllowedUIDs: []int{0}}).ServeHTTP(rec, req)
	if rec.Code != 403 || rec.Body.String() != `{"error":"peer credentials unknown"}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	NewHandler(newFakeSource(), HandlerOptions{}).ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != secretToken {
		t.Fatalf("%d", rec.Code)
	}
}

// unrenderable holds a token output.Render refuses.
type unrenderable struct{ fakeSource }

func (u *unrenderable) TokenBody(_, format string) ([]byte, bool, error) {
	b, err := output.Render(format, output.Token{ChannelID: "1", AccessToken: "bad token\n"})
	return b, true, err
}

func TestTokenUnrenderable(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	rec := httptest.NewRecorder()
	NewHandler(&unrenderable{}, HandlerOptions{Logger: zap.New(core)}).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/channels/1/token", nil))
	if rec.Code != 500 || rec.Body.String() != `{"error":"channel \"1\": token cannot be rendered"}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
	if logs.FilterMessage("cannot render token").Len() != 1 || strings.Contains(fmt.Sprint(logs.All()), "bad token") {
		t.Fatalf("logs: %v", logs.All())
	}
}

func TestClip(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"shop-bot", "shop-bot"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), strings.Repeat("a", 64) + "..."},
		{strings.Repeat("a", 63) + "ñ", strings.Repeat("a", 63) + "..."}, // never half a rune
		{strings.Repeat("ñ", 40), strings.Repeat("ñ", 32) + "..."},
	}
	for _, tt := range tests {
		if got := clip(tt.in); got != tt.want {
			t.Errorf("clip(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzRequest serves any request the HTTP server would parse: any method,
// path, query and headers. No request may panic the handler or get a 5xx
// other than 503, and only a GET (or HEAD) of the real channel's token
// route may ever see the token.
func FuzzRequest(f *testing.F) {
	h := NewHandler(newFakeSource(), HandlerOptions{})
	for _, s := range []string{
		"GET /v1/channels/shop-bot/token?format=raw HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/channels/1657000000/token HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
		"POST /v1/channels/shop-bot/token HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET /v1/channels HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/channels/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /readyz HTTP/1.0\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\r\n",
		"GET /v1/channels/../channels/shop-bot/token HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1//channels/shop-bot/token?format=json&format=raw HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /v1/channels/shop-bot HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://tokend/v1/channels/shop-bot/token HTTP/1.1\r\nHost: y\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the server answers 400 itself
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != 503 {
			t.Fatalf("status %d for %q", rec.Code, raw)
		}
		if strings.Contains(rec.Body.String(), secretToken) || strings.Contains(rec.Header().Get("Location"), secretToken) {
			p := path.Clean(req.URL.Path)
			okRoute := p == "/v1/channels/shop-bot/token" || p == "/v1/channels/1657000000/token"
			if !okRoute || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
				t.Fatalf("%s %s got the token (status %d)", req.Method, req.URL.Path, rec.Code)
			}
		}
	})
}
