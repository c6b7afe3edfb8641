package linefake_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
)

func TestFaultStatus(t *testing.T) {
	tests := []struct {
		name      string
		fault     linefake.Fault
		status    int
		ct        string
		body      string
		retryAftr string
	}{
		{"429 with Retry-After", linefake.Fault{Status: 429, RetryAfter: "7"}, 429, "application/json",
			`{"message":"The API rate limit has been exceeded. Try again later."}`, "7"},
		{"503 default body", linefake.Fault{Status: 503}, 503, "application/json", `{"message":"Service Unavailable"}`, ""},
		{"502 HTML from a proxy", linefake.Fault{Status: 502, Body: "<html>bad gateway</html>", ContentType: "text/html"},
			502, "text/html", "<html>bad gateway</html>", ""},
		{"400 custom JSON", linefake.Fault{Status: 400, Body: `{"error":"invalid_client","error_description":"x"}`},
			400, "application/json", `{"error":"invalid_client","error_description":"x"}`, ""},
		{"429 with an HTTP date", linefake.Fault{Status: 429, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"}, 429, "application/json",
			`{"message":"The API rate limit has been exceeded. Try again later."}`, "Wed, 21 Oct 2015 07:28:00 GMT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetFault(linefake.EndpointIssueV21, tt.fault)
			r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil)))
			if r.status != tt.status || r.body != tt.body || r.header.Get("Content-Type") != tt.ct ||
				r.header.Get("Retry-After") != tt.retryAftr {
				t.Errorf("got %d %q %q Retry-After %q", r.status, r.header.Get("Content-Type"), r.shown(), r.header.Get("Retry-After"))
			}
			if len(e.srv.Tokens(chanA)) != 0 {
				t.Error("a faulted request issued a token")
			}
			if reqs := e.srv.Requests(); len(reqs) != 1 || reqs[0].Status != tt.status {
				t.Errorf("log = %v", reqs)
			}
		})
	}
}

func TestFaultIsPerEndpoint(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFault(linefake.EndpointVerifyV21, linefake.Fault{Status: 500})
	e.srv.SetFault("no-such-endpoint", linefake.Fault{Status: 500})
	tok, _ := e.issueV21(3600)
	if r := e.get("/oauth2/v2.1/verify", url.Values{"access_token": {tok}}); r.status != 500 {
		t.Errorf("verify: %d", r.status)
	}
	e.srv.SetFault(linefake.EndpointVerifyV21, linefake.Fault{Status: 503}) // replaces
	if r := e.get("/oauth2/v2.1/verify", url.Values{"access_token": {tok}}); r.status != 503 {
		t.Errorf("verify after SetFault again: %d", r.status)
	}
}

func TestFaultMalformed(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFault(linefake.EndpointIssueShort, linefake.Fault{Malformed: true})
	r := e.post("/v2/oauth/accessToken", url.Values{"grant_type": {"client_credentials"}, "client_id": {chanA}, "client_secret": {secretA}})
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q", r.status, r.header.Get("Content-Type"))
	}
	var v any
	if err := json.Unmarshal([]byte(r.body), &v); err == nil {
		t.Errorf("malformed body decoded: %q", r.shown())
	}
	if len(e.srv.Tokens(chanA)) != 0 {
		t.Error("a faulted request issued a token")
	}
}

func TestFaultBodySize(t *testing.T) {
	tests := []struct {
		name   string
		fault  linefake.Fault
		status int
	}{
		{"200 padded", linefake.Fault{BodySize: 2 << 20}, 200},
		{"padded with a last partial chunk", linefake.Fault{BodySize: 100_001}, 200},
		{"503 padded", linefake.Fault{Status: 503, BodySize: 4096}, 503},
		{"normal body padded after a delay", linefake.Fault{Delay: time.Millisecond, BodySize: 10000}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetFault(linefake.EndpointIssueV21, tt.fault)
			r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil)))
			if r.status != tt.status || len(r.body) != tt.fault.BodySize {
				t.Fatalf("got %d with %d bytes, want %d with %d", r.status, len(r.body), tt.status, tt.fault.BodySize)
			}
			r.json(t) // still valid JSON: the padding is whitespace
		})
	}
}

func TestFaultDrop(t *testing.T) {
	e := newEnv(t)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	e.srv.SetFault(linefake.EndpointIssueV21, linefake.Fault{Drop: true, Times: 1})
	a := e.assertion(nil)
	resp, err := client.PostForm(e.ts.URL+"/oauth2/v2.1/token", issueForm(a))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request got a response: %d", resp.StatusCode)
	}
	if len(e.srv.Tokens(chanA)) != 0 {
		t.Error("a dropped request issued a token")
	}
	if reqs := e.srv.Requests(); len(reqs) != 1 || reqs[0].Status != 0 {
		t.Errorf("log = %v, want one entry with status 0", reqs)
	}

	// Times: 1 is used up; the next request is served.
	resp, err = client.PostForm(e.ts.URL+"/oauth2/v2.1/token", issueForm(a))
	if err != nil {
		t.Fatalf("after the drop: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || e.srv.Count(linefake.EndpointIssueV21) != 2 {
		t.Errorf("after the drop: %d, Count %d", resp.StatusCode, e.srv.Count(linefake.EndpointIssueV21))
	}
}

func TestFaultDropWithoutHijack(t *testing.T) {
	// A ResponseWriter that cannot hijack: the handler aborts, which
	// net/http turns into a broken response.
	srv := linefake.New(linefake.Options{})
	srv.SetFault(linefake.EndpointRevokeShort, linefake.Fault{Drop: true})
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", r)
		}
	}()
	req := httptest.NewRequest(http.MethodPost, "/v2/oauth/revoke", strings.NewReader("access_token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	srv.ServeHTTP(httptest.NewRecorder(), req)
}

func TestFaultDelayRespectsClientTimeout(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFault(linefake.EndpointIssueV21, linefake.Fault{Delay: time.Minute})
	client := &http.Client{Timeout: 100 * time.Millisecond}
	start := time.Now()
	resp, err := client.PostForm(e.ts.URL+"/oauth2/v2.1/token", issueForm(e.assertion(nil)))
	if err == nil {
		resp.Body.Close()
		t.Fatal("delayed request answered before the client timeout")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("client waited %v", d)
	}
	// The handler notices the client left and gives up without a change.
	waitFor(t, func() bool { return len(e.srv.Requests()) == 1 })
	if r := e.srv.Requests()[0]; r.Status != 0 {
		t.Errorf("logged status %d, want 0", r.Status)
	}
	if len(e.srv.Tokens(chanA)) != 0 {
		t.Error("an abandoned request issued a token")
	}
}

func TestFaultDelayAndRetryAfterOnly(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFault(linefake.EndpointIssueV21, linefake.Fault{Delay: 20 * time.Millisecond, RetryAfter: "3"})
	start := time.Now()
	r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil)))
	if r.status != 200 || r.header.Get("Retry-After") != "3" {
		t.Fatalf("got %d Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.shown())
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Error("no delay")
	}
	if len(e.srv.Tokens(chanA)) != 1 {
		t.Error("a delayed request was not processed")
	}
	// A delayed bad request still gets its normal error.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/oauth2/v2.1/token", strings.NewReader("x=1"))
	req.Header.Set("Content-Type", "application/json")
	wantError(t, e.do(req), 400, oauthErr("invalid_request", "Content-Type must be application/x-www-form-urlencoded"))
}

func TestFaultTimes(t *testing.T) {
	e := newEnv(t)
	tok := e.issueShort(chanA, secretA)
	verify := func() int { return e.post("/v2/oauth/verify", url.Values{"access_token": {tok}}).status }

	e.srv.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Status: 503, Times: 2})
	got := []int{verify(), verify(), verify()}
	if got[0] != 503 || got[1] != 503 || got[2] != 200 {
		t.Errorf("statuses = %v, want [503 503 200]", got)
	}

	e.srv.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Status: 500}) // Times 0: until cleared
	for range 5 {
		if s := verify(); s != 500 {
			t.Fatalf("status %d, want 500 until ClearFaults", s)
		}
	}
	e.srv.ClearFaults()
	if s := verify(); s != 200 {
		t.Errorf("after ClearFaults: %d", s)
	}
	if n := e.srv.Count(linefake.EndpointVerifyShort); n != 9 {
		t.Errorf("Count = %d, want 9", n)
	}
}

// TestFaultShare: a Share faults that share of the requests, spread
// evenly, and Times counts only the faulted ones.
func TestFaultShare(t *testing.T) {
	e := newEnv(t)
	tok := e.issueShort(chanA, secretA)
	verify := func() int { return e.post("/v2/oauth/verify", url.Values{"access_token": {tok}}).status }
	statuses := func(n int) []int {
		var got []int
		for range n {
			got = append(got, verify())
		}
		return got
	}

	e.srv.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Status: 503, Share: 0.5})
	if got, want := statuses(6), []int{200, 503, 200, 503, 200, 503}; !slices.Equal(got, want) {
		t.Errorf("Share 0.5: statuses %v, want %v", got, want)
	}
	e.srv.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Status: 503, Share: 0.75})
	if got, want := statuses(8), []int{200, 503, 503, 503, 200, 503, 503, 503}; !slices.Equal(got, want) {
		t.Errorf("Share 0.75: statuses %v, want %v", got, want)
	}
	e.srv.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Status: 503, Share: 0.5, Times: 2})
	if got, want := statuses(6), []int{200, 503, 200, 503, 200, 200}; !slices.Equal(got, want) {
		t.Errorf("Share 0.5, Times 2: statuses %v, want %v", got, want)
	}
	for _, share := range []float64{1, 0} {
		e.srv.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Status: 503, Share: share})
		if got, want := statuses(3), []int{503, 503, 503}; !slices.Equal(got, want) {
			t.Errorf("Share %v: statuses %v, want every one faulted", share, got)
		}
	}
}

// TestFaultOmit: the request is processed (the token is issued and valid)
// and only the answer lacks the field; an error answer is left whole.
func TestFaultOmit(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFault(linefake.EndpointIssueShort, linefake.Fault{Omit: "expires_in", Times: 1})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {chanA}, "client_secret": {secretA}}
	r := e.post("/v2/oauth/accessToken", form)
	body := r.json(t)
	tok, _ := body["access_token"].(string)
	if _, has := body["expires_in"]; r.status != 200 || has || tok == "" || body["token_type"] != "Bearer" {
		t.Fatalf("Omit expires_in: %d %v, want 200 with the rest of the answer", r.status, slices.Collect(maps.Keys(body)))
	}
	if !e.srv.IsValid(tok) {
		t.Error("the token of the trimmed answer is not valid: the request was not processed")
	}
	e.srv.SetFault(linefake.EndpointIssueShort, linefake.Fault{Omit: "error"})
	form.Set("client_secret", "wrong")
	if r := e.post("/v2/oauth/accessToken", form); r.status != 400 || r.json(t)["error"] != "invalid_client" {
		t.Errorf("an error answer under Omit: %d %s, want LINE's 400 invalid_client whole", r.status, r.shown())
	}
}

func TestMaxConcurrent(t *testing.T) {
	e := newEnv(t)
	if e.srv.MaxConcurrent() != 0 {
		t.Fatal("MaxConcurrent before any request")
	}
	e.issueV21(3600)
	if got := e.srv.MaxConcurrent(); got != 1 {
		t.Errorf("MaxConcurrent after one request = %d", got)
	}

	e.srv.SetFault(linefake.EndpointVerifyV21, linefake.Fault{Delay: time.Minute})
	e.srv.SetFault(linefake.EndpointKeyIDsV21, linefake.Fault{Delay: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 5 {
		path := "/oauth2/v2.1/verify"
		if i%2 == 1 {
			path = "/oauth2/v2.1/tokens/kid"
		}
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.ts.URL+path+"?access_token=x", nil)
			resp, err := e.ts.Client().Do(req)
			if err == nil {
				resp.Body.Close()
				t.Error("delayed request answered")
			}
		})
	}
	waitFor(t, func() bool { return e.srv.MaxConcurrent() >= 5 })
	cancel()
	wg.Wait()
	if got := e.srv.MaxConcurrent(); got != 5 {
		t.Errorf("MaxConcurrent = %d, want 5", got)
	}
	waitFor(t, func() bool { return len(e.srv.Requests()) == 6 })
	e.srv.ClearFaults()
	// ResetRequests restarts from the requests in flight: wait until the
	// abandoned handlers have all returned.
	waitFor(t, func() bool { e.srv.ResetRequests(); return e.srv.MaxConcurrent() == 0 })
	e.get("/oauth2/v2.1/verify", url.Values{"access_token": {"x"}})
	if got := e.srv.MaxConcurrent(); got != 1 {
		t.Errorf("MaxConcurrent after ResetRequests = %d, want 1", got)
	}
}

// waitFor polls cond (real goroutines, real time) for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FuzzServeHTTP sends arbitrary bodies to every endpoint: the simulator must
// answer with a status and a JSON (or empty revoke) body, never panic.
func FuzzServeHTTP(f *testing.F) {
	f.Add(uint8(0), "grant_type=client_credentials&client_assertion_type=x&client_assertion=a.b.c", true)
	f.Add(uint8(2), "client_id=1&client_secret=2&access_token=eyJ.eyJ.sig", true)
	f.Add(uint8(3), "access_token=%ZZ", false)
	f.Add(uint8(4), "grant_type=client_credentials&client_id=1&client_secret=s", true)
	f.Add(uint8(7), "grant_type=client_credentials&client_assertion=e30.e30.e30", true)
	paths := []string{"/oauth2/v2.1/token", "/oauth2/v2.1/tokens/kid", "/oauth2/v2.1/revoke", "/oauth2/v2.1/verify",
		"/v2/oauth/accessToken", "/v2/oauth/revoke", "/v2/oauth/verify", "/oauth2/v3/token", "/nope"}
	srv := linefake.New(linefake.Options{})
	srv.AddChannel("1", "s")
	srv.RegisterKey("1", kidA, &keyA.PublicKey)
	f.Fuzz(func(t *testing.T, p uint8, body string, post bool) {
		path := paths[int(p)%len(paths)]
		var req *http.Request
		if post {
			req = httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req = httptest.NewRequest(http.MethodGet, path, nil)
			req.URL.RawQuery = body
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		res := w.Result()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode < 200 || res.StatusCode > 499 {
			t.Fatalf("status %d", res.StatusCode)
		}
		if len(b) == 0 && !(res.StatusCode == 200 && strings.HasSuffix(path, "revoke")) {
			t.Fatalf("%s: empty body with %d", path, res.StatusCode)
		}
		if len(b) > 0 && !json.Valid(b) {
			t.Fatalf("%s: body is not JSON: %q", path, b)
		}
	})
}
