package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Credentials the tests send; no error text may contain any of them.
const (
	testAssertion = "eyJhbGciOiJSUzI1NiJ9.ASSERTION-SECRET-PAYLOAD.SIGNATURE"
	testSecret    = "CHANNEL-SECRET-0123456789abcdef"
	testToken     = "ACCESS-TOKEN-SECRET-0123456789abcdef"
)

// seenRequest is what a fake handler saw.
type seenRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   string
}

// recorder is an http.Handler that records requests and answers with
// respond (a fixed 200 per path by default).
type recorder struct {
	mu      sync.Mutex
	seen    []seenRequest
	respond func(w http.ResponseWriter, r *http.Request)
}

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.seen = append(h.seen, seenRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
	respond := h.respond
	h.mu.Unlock()
	if respond != nil {
		respond(w, r)
		return
	}
	okResponse(w, r)
}

func (h *recorder) last(t *testing.T) seenRequest {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		t.Fatal("no request reached the server")
	}
	return h.seen[len(h.seen)-1]
}

// okResponse answers each endpoint with a plausible 200.
func okResponse(w http.ResponseWriter, r *http.Request) {
	body := ""
	switch r.URL.Path {
	case pathIssueV21:
		body = `{"access_token":"tok-v21","expires_in":2592000,"token_type":"Bearer","key_id":"kid-1"}`
	case pathKeyIDsV21:
		body = `{"kids":["kid-1","kid-2"]}`
	case pathVerifyV21:
		body = `{"client_id":"1234567890","expires_in":2591659,"scope":"profile chat_message.write"}`
	case pathIssueShort:
		body = `{"access_token":"tok-short","expires_in":2592000,"token_type":"Bearer"}`
	case pathVerifyShort:
		body = `{"client_id":"1350031035","expires_in":3138007490,"scope":"P CM"}`
	case pathIssueStateless:
		body = `{"token_type":"Bearer","access_token":"tok-stateless","expires_in":899}`
	case pathRevokeV21, pathRevokeShort:
		w.WriteHeader(http.StatusOK)
		return
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

func newTestServer(t *testing.T, h http.Handler, o Options) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if o.BaseURL == "" {
		o.BaseURL = srv.URL
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, srv
}

// operation is one client method, called with the test credentials.
type operation struct {
	name     string
	endpoint string
	call     func(ctx context.Context, c *Client) (any, error)
}

func operations() []operation {
	return []operation{
		{"IssueChannelAccessTokenV2_1", "POST /oauth2/v2.1/token", func(ctx context.Context, c *Client) (any, error) {
			return c.IssueChannelAccessTokenV2_1(ctx, testAssertion)
		}},
		{"GetChannelAccessTokenKeyIDsV2_1", "GET /oauth2/v2.1/tokens/kid", func(ctx context.Context, c *Client) (any, error) {
			return c.GetChannelAccessTokenKeyIDsV2_1(ctx, testAssertion)
		}},
		{"RevokeChannelAccessTokenV2_1", "POST /oauth2/v2.1/revoke", func(ctx context.Context, c *Client) (any, error) {
			return nil, c.RevokeChannelAccessTokenV2_1(ctx, "1234567890", testSecret, testToken)
		}},
		{"VerifyChannelAccessTokenV2_1", "GET /oauth2/v2.1/verify", func(ctx context.Context, c *Client) (any, error) {
			return c.VerifyChannelAccessTokenV2_1(ctx, testToken)
		}},
		{"IssueAccessToken", "POST /v2/oauth/accessToken", func(ctx context.Context, c *Client) (any, error) {
			return c.IssueAccessToken(ctx, "1234567890", testSecret)
		}},
		{"RevokeAccessToken", "POST /v2/oauth/revoke", func(ctx context.Context, c *Client) (any, error) {
			return nil, c.RevokeAccessToken(ctx, testToken)
		}},
		{"VerifyAccessToken", "POST /v2/oauth/verify", func(ctx context.Context, c *Client) (any, error) {
			return c.VerifyAccessToken(ctx, testToken)
		}},
		{"IssueStatelessTokenByAssertion", "POST /oauth2/v3/token", func(ctx context.Context, c *Client) (any, error) {
			return c.IssueStatelessTokenByAssertion(ctx, testAssertion)
		}},
		{"IssueStatelessTokenBySecret", "POST /oauth2/v3/token", func(ctx context.Context, c *Client) (any, error) {
			return c.IssueStatelessTokenBySecret(ctx, "1234567890", testSecret)
		}},
	}
}

// assertNoSecrets fails if text holds any credential the tests send.
func assertNoSecrets(t *testing.T, text string) {
	t.Helper()
	for _, s := range []string{testAssertion, "ASSERTION-SECRET", testSecret, testToken, "client_assertion=", "access_token=", "?"} {
		if strings.Contains(text, s) {
			t.Fatalf("error text %q contains %q", text, s)
		}
	}
}

func TestClientRequestsAndResults(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c, _ := newTestServer(t, rec, Options{})
	jwtForm := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {testAssertion}}
	secretForm := url.Values{"grant_type": {"client_credentials"}, "client_id": {"1234567890"}, "client_secret": {testSecret}}
	tests := []struct {
		op        string
		wantQuery url.Values // GET
		wantForm  url.Values // POST
		want      string     // fmt %+v of the dereferenced result
	}{
		{"IssueChannelAccessTokenV2_1", nil, jwtForm,
			`oauth.Token{AccessToken:<redacted> TokenType:"Bearer" KeyID:"kid-1" ExpiresIn:2592000}`},
		{"GetChannelAccessTokenKeyIDsV2_1", url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {testAssertion}}, nil,
			`[kid-1 kid-2]`},
		{"RevokeChannelAccessTokenV2_1", nil, url.Values{"client_id": {"1234567890"}, "client_secret": {testSecret}, "access_token": {testToken}},
			`<nil>`},
		{"VerifyChannelAccessTokenV2_1", url.Values{"access_token": {testToken}}, nil,
			`{ClientID:1234567890 ExpiresIn:2591659 Scope:profile chat_message.write}`},
		{"IssueAccessToken", nil, secretForm,
			`oauth.Token{AccessToken:<redacted> TokenType:"Bearer" KeyID:"" ExpiresIn:2592000}`},
		{"RevokeAccessToken", nil, url.Values{"access_token": {testToken}},
			`<nil>`},
		{"VerifyAccessToken", nil, url.Values{"access_token": {testToken}},
			`{ClientID:1350031035 ExpiresIn:3138007490 Scope:P CM}`}, // > 32 bits
		{"IssueStatelessTokenByAssertion", nil, jwtForm,
			`oauth.Token{AccessToken:<redacted> TokenType:"Bearer" KeyID:"" ExpiresIn:899}`},
		{"IssueStatelessTokenBySecret", nil, secretForm,
			`oauth.Token{AccessToken:<redacted> TokenType:"Bearer" KeyID:"" ExpiresIn:899}`},
	}
	ops := map[string]operation{}
	for _, op := range operations() {
		ops[op.name] = op
	}
	for _, tt := range tests {
		op := ops[tt.op]
		got, err := op.call(context.Background(), c)
		if err != nil {
			t.Errorf("%s: %v", tt.op, err)
			continue
		}
		var s string
		switch v := got.(type) {
		case *Token:
			s = v.String()
		case *TokenInfo:
			s = fmt.Sprintf("%+v", *v)
		default:
			s = fmt.Sprintf("%v", v)
		}
		if s != tt.want {
			t.Errorf("%s result %s, want %s", tt.op, s, tt.want)
		}
		req := rec.last(t)
		if got := req.Method + " " + req.Path; got != op.endpoint {
			t.Errorf("%s sent %s, want %s", tt.op, got, op.endpoint)
		}
		if req.Header.Get("User-Agent") != DefaultUserAgent {
			t.Errorf("%s User-Agent %q", tt.op, req.Header.Get("User-Agent"))
		}
		if req.Header.Get("Authorization") != "" {
			t.Errorf("%s sent an Authorization header", tt.op)
		}
		if req.Method == http.MethodGet {
			q, _ := url.ParseQuery(req.RawQuery)
			if q.Encode() != tt.wantQuery.Encode() || req.Body != "" {
				t.Errorf("%s query %q body %q, want query %q", tt.op, req.RawQuery, req.Body, tt.wantQuery.Encode())
			}
			continue
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("%s Content-Type %q", tt.op, ct)
		}
		form, err := url.ParseQuery(req.Body)
		if err != nil || form.Encode() != tt.wantForm.Encode() || req.RawQuery != "" {
			t.Errorf("%s form %q query %q, want form %q", tt.op, req.Body, req.RawQuery, tt.wantForm.Encode())
		}
	}
	if v, ok := ops["GetChannelAccessTokenKeyIDsV2_1"]; ok {
		rec.mu.Lock()
		rec.respond = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"kids":[]}`) }
		rec.mu.Unlock()
		got, err := v.call(context.Background(), c)
		if kids, _ := got.([]string); err != nil || kids == nil || len(kids) != 0 {
			t.Errorf("empty kids: %#v, %v (want a non-nil empty slice)", got, err)
		}
	}
}

func TestClientUserAgentAndBasePath(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	srv := httptest.NewServer(http.StripPrefix("/line-proxy", rec))
	t.Cleanup(srv.Close)
	c, err := NewClient(Options{BaseURL: srv.URL + "/line-proxy/", UserAgent: "tokend/1.2.3 (+https://example.com)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyAccessToken(context.Background(), testToken); err != nil {
		t.Fatal(err)
	}
	req := rec.last(t)
	if req.Header.Get("User-Agent") != "tokend/1.2.3 (+https://example.com)" {
		t.Errorf("User-Agent %q", req.Header.Get("User-Agent"))
	}
	if req.Header.Get("Accept") != "application/json" {
		t.Errorf("Accept %q", req.Header.Get("Accept"))
	}
	if req.Path != pathVerifyShort {
		t.Errorf("path after prefix %q", req.Path)
	}
}

func TestNewClientOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    Options
		want string // "" = accepted
	}{
		{"zero value", Options{}, ""},
		{"http", Options{BaseURL: "http://127.0.0.1:8080"}, ""},
		{"with path", Options{BaseURL: "https://proxy.example/line/"}, ""},
		{"no scheme", Options{BaseURL: "api.line.me"}, `oauth client: base URL "api.line.me" must start with https:// or http://`},
		{"ftp", Options{BaseURL: "ftp://api.line.me"}, `oauth client: base URL "ftp://api.line.me" must start with https:// or http://`},
		{"no host", Options{BaseURL: "https://"}, `oauth client: base URL "https://" has no host`},
		{"unparsable", Options{BaseURL: "https://a b/%zz"}, `oauth client: base URL "https://a b/%zz" is not a URL`},
		{"query", Options{BaseURL: "https://api.line.me/?x=1"}, `oauth client: base URL "https://api.line.me/?x=1" must not have a query or fragment`},
		{"user info", Options{BaseURL: "https://user:pw@api.line.me"}, "oauth client: base URL must not contain user info"},
		{"negative timeout", Options{Timeout: -time.Second}, "oauth client: timeout -1s is negative"},
		{"negative body limit", Options{MaxBodyBytes: -1}, "oauth client: max body bytes -1 is negative"},
		{"unlimited body", Options{MaxBodyBytes: 1<<63 - 1}, ""},
		{"user agent with newline", Options{UserAgent: "a\r\nX-Evil: 1"}, "oauth client: user agent contains a control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.o)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestClientEmptyArguments(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c, _ := newTestServer(t, rec, Options{})
	ctx := context.Background()
	checks := []struct {
		err  error
		want string
	}{
		{second(c.IssueChannelAccessTokenV2_1(ctx, "")), "issue v2.1 token: empty assertion"},
		{second(c.GetChannelAccessTokenKeyIDsV2_1(ctx, "")), "list v2.1 key IDs: empty assertion"},
		{c.RevokeChannelAccessTokenV2_1(ctx, "", "s", "t"), "revoke v2.1 token: empty channel ID"},
		{c.RevokeChannelAccessTokenV2_1(ctx, "1", "", "t"), "revoke v2.1 token: empty channel secret"},
		{c.RevokeChannelAccessTokenV2_1(ctx, "1", "s", ""), "revoke v2.1 token: empty access token"},
		{second(c.VerifyChannelAccessTokenV2_1(ctx, "")), "verify v2.1 token: empty access token"},
		{second(c.IssueAccessToken(ctx, "", "s")), "issue short-lived token: empty channel ID"},
		{second(c.IssueAccessToken(ctx, "1", "")), "issue short-lived token: empty channel secret"},
		{c.RevokeAccessToken(ctx, ""), "revoke token: empty access token"},
		{second(c.VerifyAccessToken(ctx, "")), "verify token: empty access token"},
		{second(c.IssueStatelessTokenByAssertion(ctx, "")), "issue stateless token: empty assertion"},
		{second(c.IssueStatelessTokenBySecret(ctx, "", "s")), "issue stateless token: empty channel ID"},
		{second(c.IssueStatelessTokenBySecret(ctx, "1", "")), "issue stateless token: empty channel secret"},
	}
	for _, ch := range checks {
		if ch.err == nil || ch.err.Error() != ch.want {
			t.Errorf("got %v, want %q", ch.err, ch.want)
		}
		if IsRetryable(ch.err) {
			t.Errorf("%v is retryable", ch.err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) != 0 {
		t.Errorf("%d requests sent for invalid arguments", len(rec.seen))
	}
}

func second[T any](_ T, err error) error { return err }

// TestClientAPIErrors runs every operation against error answers: each must
// yield the same *APIError, with the operation's endpoint.
func TestClientAPIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		want      APIError // Endpoint filled per operation
		retryable bool
		cause     string
	}{
		{"invalid_client", 400, nil, `{"error":"invalid_client","error_description":"invalid client_secret"}`,
			APIError{StatusCode: 400, Code: "invalid_client", Description: "invalid client_secret"}, false, "invalid_client"},
		{"token limit", 400, nil, `{"message":"The maximum number of access tokens has already been issued"}`,
			APIError{StatusCode: 400, Message: "The maximum number of access tokens has already been issued"}, false, "token_limit"},
		{"429 Retry-After", 429, map[string]string{"Retry-After": "12"}, `{"message":"Too many requests"}`,
			APIError{StatusCode: 429, Message: "Too many requests", RetryAfter: 12 * time.Second}, true, "http_429"},
		{"503 HTML", 503, map[string]string{"Content-Type": "text/html"}, "<html>" + testToken + "</html>",
			APIError{StatusCode: 503}, true, "http_503"},
		{"500 empty", 500, nil, "", APIError{StatusCode: 500}, true, "http_500"},
		{"403 text", 403, nil, "forbidden", APIError{StatusCode: 403}, false, "http_403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}}
			c, _ := newTestServer(t, h, Options{})
			for _, op := range operations() {
				got, err := op.call(context.Background(), c)
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Errorf("%s: got %v (%T), %v; want *APIError", op.name, got, err, err)
					continue
				}
				want := tt.want
				want.Endpoint = op.endpoint
				if *ae != want {
					t.Errorf("%s:\n got %#v\nwant %#v", op.name, *ae, want)
				}
				if IsRetryable(err) != tt.retryable || Cause(err) != tt.cause {
					t.Errorf("%s: IsRetryable %v Cause %q", op.name, IsRetryable(err), Cause(err))
				}
				if OutcomeUnknown(err) {
					t.Errorf("%s: OutcomeUnknown for LINE's own error answer", op.name)
				}
				assertNoSecrets(t, err.Error())
			}
		})
	}
}

func TestClientMalformedSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		op   string
		body string
		want string
	}{
		{"HTML", "IssueChannelAccessTokenV2_1", "<html>ok</html>",
			"POST /oauth2/v2.1/token: malformed: 200 response body: not valid JSON (error at byte 1 of 15)"},
		{"empty", "IssueAccessToken", "",
			"POST /v2/oauth/accessToken: malformed: 200 response body: empty, want JSON"},
		{"truncated", "IssueStatelessTokenBySecret", `{"access_token":"` + testToken,
			"POST /oauth2/v3/token: malformed: 200 response body: truncated JSON"},
		{"no access_token", "IssueChannelAccessTokenV2_1", `{"expires_in":10,"token_type":"Bearer","key_id":"k"}`,
			"POST /oauth2/v2.1/token: malformed: 200 response has no access_token"},
		{"no key_id on v2.1", "IssueChannelAccessTokenV2_1", `{"access_token":"t","expires_in":10,"token_type":"Bearer"}`,
			"POST /oauth2/v2.1/token: malformed: 200 response has no key_id"},
		{"no expires_in", "IssueAccessToken", `{"access_token":"t","token_type":"Bearer"}`,
			"POST /v2/oauth/accessToken: malformed: 200 response has no expires_in"},
		{"zero expires_in", "IssueStatelessTokenByAssertion", `{"access_token":"t","expires_in":0}`,
			"POST /oauth2/v3/token: malformed: 200 response expires_in 0 is not positive"},
		{"expires_in overflowing a Duration", "IssueChannelAccessTokenV2_1", `{"access_token":"t","expires_in":99999999999999,"key_id":"k"}`,
			"POST /oauth2/v2.1/token: malformed: 200 response expires_in 99999999999999 is over 2678400 seconds (744h0m0s), longer than LINE grants such a token"},
		{"short-lived over 31 days", "IssueAccessToken", `{"access_token":"t","expires_in":2678401}`,
			"POST /v2/oauth/accessToken: malformed: 200 response expires_in 2678401 is over 2678400 seconds (744h0m0s), longer than LINE grants such a token"},
		{"stateless over 30 minutes", "IssueStatelessTokenBySecret", `{"access_token":"t","expires_in":1801}`,
			"POST /oauth2/v3/token: malformed: 200 response expires_in 1801 is over 1800 seconds (30m0s), longer than LINE grants such a token"},
		{"expires_in string", "IssueAccessToken", `{"access_token":"t","expires_in":"10"}`,
			"POST /v2/oauth/accessToken: malformed: 200 response body: field expires_in is a JSON string, want int64"},
		{"expires_in fraction", "IssueAccessToken", `{"access_token":"t","expires_in":1.5}`,
			"POST /v2/oauth/accessToken: malformed: 200 response body: field expires_in is a JSON number 1.5, want int64"},
		{"access_token number", "IssueAccessToken", `{"access_token":5,"expires_in":1}`,
			"POST /v2/oauth/accessToken: malformed: 200 response body: field access_token is a JSON number, want string"},
		{"no kids", "GetChannelAccessTokenKeyIDsV2_1", `{"key_ids":["a"]}`,
			"GET /oauth2/v2.1/tokens/kid: malformed: 200 response has no kids"},
		{"an empty key ID", "GetChannelAccessTokenKeyIDsV2_1", `{"kids":["a",""]}`,
			"GET /oauth2/v2.1/tokens/kid: malformed: 200 response kids[1] is empty"},
		{"a null key ID", "GetChannelAccessTokenKeyIDsV2_1", `{"kids":[null]}`,
			"GET /oauth2/v2.1/tokens/kid: malformed: 200 response kids[0] is empty"},
		{"kids not array", "GetChannelAccessTokenKeyIDsV2_1", `{"kids":"a"}`,
			"GET /oauth2/v2.1/tokens/kid: malformed: 200 response body: field kids is a JSON string, want []string"},
		{"JSON array", "VerifyAccessToken", `[1]`,
			"POST /v2/oauth/verify: malformed: 200 response body: a JSON array, want oauth.verifyResponse"},
		{"verify without client_id", "VerifyChannelAccessTokenV2_1", `{"expires_in":5}`,
			"GET /oauth2/v2.1/verify: malformed: 200 response has no client_id"},
		{"verify without expires_in", "VerifyAccessToken", `{"client_id":"1"}`,
			"POST /v2/oauth/verify: malformed: 200 response has no expires_in"},
	}
	// The answers that carried a token LINE issued (IssuedToken); the rest
	// carry none, or none decoded.
	issued := map[string]bool{
		"no key_id on v2.1": true, "no expires_in": true, "zero expires_in": true,
		"expires_in overflowing a Duration": true, "short-lived over 31 days": true,
		"stateless over 30 minutes": true, "expires_in string": true, "expires_in fraction": true,
	}
	ops := map[string]operation{}
	for _, op := range operations() {
		ops[op.name] = op
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, tt.body) }}
			c, _ := newTestServer(t, h, Options{})
			_, err := ops[tt.op].call(context.Background(), c)
			var re *RequestError
			if !errors.As(err, &re) || re.Kind != KindMalformed {
				t.Fatalf("got %v, want a malformed RequestError", err)
			}
			if tok, ok := IssuedToken(err); ok != issued[tt.name] || (ok && tok != "t") {
				t.Errorf("IssuedToken = %q, %v; want \"t\" only if the answer carried it (%v)", tok, ok, issued[tt.name])
			}
			if OutcomeUnknown(err) == issued[tt.name] {
				t.Errorf("OutcomeUnknown %v; want it only when the answer carried no token to revoke", OutcomeUnknown(err))
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
			if !IsRetryable(err) || Cause(err) != "malformed" {
				t.Errorf("IsRetryable %v Cause %q", IsRetryable(err), Cause(err))
			}
			assertNoSecrets(t, err.Error())
		})
	}
}

// TestClientExpiresInBounds: the longest lifetimes an issue answer may
// carry pass: LINE's documented ones (30 days; stateless 899 s, its
// example) and the margin's end (31 days; stateless 30 minutes).
func TestClientExpiresInBounds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		op   string
		secs int64
	}{
		{"IssueChannelAccessTokenV2_1", 2592000}, {"IssueChannelAccessTokenV2_1", 2678400},
		{"IssueAccessToken", 2678400}, {"IssueStatelessTokenBySecret", 899}, {"IssueStatelessTokenByAssertion", 1800},
	} {
		t.Run(fmt.Sprintf("%s/%d", tt.op, tt.secs), func(t *testing.T) {
			t.Parallel()
			body := fmt.Sprintf(`{"access_token":"t","expires_in":%d,"key_id":"k"}`, tt.secs)
			h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }}
			c, _ := newTestServer(t, h, Options{})
			var op operation
			for _, o := range operations() {
				if o.name == tt.op {
					op = o
				}
			}
			got, err := op.call(context.Background(), c)
			tok, _ := got.(*Token)
			if err != nil || tok == nil || tok.ExpiresIn != tt.secs {
				t.Errorf("expires_in %d: %v, %v", tt.secs, got, err)
			}
		})
	}
}

func TestClientBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 128
	pad := func(prefix string, n int) string { return prefix + strings.Repeat(" ", n-len(prefix)-1) + "}" }
	okBody := `{"access_token":"t","expires_in":5,"token_type":"Bearer"`
	tests := []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, err error)
	}{
		{"exactly the limit", 200, pad(okBody, limit), func(t *testing.T, err error) {
			if err != nil {
				t.Fatalf("body of exactly %d bytes refused: %v", limit, err)
			}
		}},
		{"one byte over", 200, pad(okBody, limit+1), func(t *testing.T, err error) {
			var re *RequestError
			if !errors.As(err, &re) || re.Kind != KindTooLarge {
				t.Fatalf("got %v, want too_large", err)
			}
			if want := "POST /v2/oauth/accessToken: too_large: 200 response body exceeds 128 bytes"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if !IsRetryable(err) || Cause(err) != "too_large" {
				t.Errorf("IsRetryable %v Cause %q", IsRetryable(err), Cause(err))
			}
		}},
		{"huge", 200, strings.Repeat("x", 10<<20), func(t *testing.T, err error) {
			if Cause(err) != "too_large" {
				t.Fatalf("got %v, want too_large", err)
			}
		}},
		{"huge error body keeps the status", 503, `{"message":"` + strings.Repeat("x", 10<<20) + `"}`, func(t *testing.T, err error) {
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want *APIError", err)
			}
			if want := (APIError{Endpoint: "POST /v2/oauth/accessToken", StatusCode: 503}); *ae != want {
				t.Errorf("got %#v, want %#v", *ae, want)
			}
			if !IsRetryable(err) {
				t.Error("503 not retryable")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}}
			c, _ := newTestServer(t, h, Options{MaxBodyBytes: limit})
			_, err := c.IssueAccessToken(context.Background(), "1", testSecret)
			tt.check(t, err)
		})
	}
}

// blockingServer holds every request until the client gives up or the test
// ends; arrived receives once per request.
func blockingServer(t *testing.T, o Options) (*Client, <-chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	c, _ := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}), o)
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return c, arrived
}

func TestClientPerCallTimeout(t *testing.T) {
	t.Parallel()
	c, _ := blockingServer(t, Options{Timeout: 50 * time.Millisecond})
	_, err := c.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
	var re *RequestError
	if !errors.As(err, &re) || re.Kind != KindTimeout {
		t.Fatalf("got %v, want a timeout RequestError", err)
	}
	if want := "GET /oauth2/v2.1/verify: timeout: no response within 50ms: context deadline exceeded"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) || Cause(err) != "timeout" {
		t.Errorf("Is(DeadlineExceeded) %v IsRetryable %v Cause %q", errors.Is(err, context.DeadlineExceeded), IsRetryable(err), Cause(err))
	}
	if !OutcomeUnknown(err) {
		t.Error("OutcomeUnknown false for a call with no answer in time")
	}
	assertNoSecrets(t, err.Error())
}

func TestClientHTTPClientTimeout(t *testing.T) {
	t.Parallel()
	// A caller-supplied http.Client with its own, shorter timeout.
	c, _ := blockingServer(t, Options{HTTPClient: &http.Client{Timeout: 30 * time.Millisecond}})
	_, err := c.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
	if Cause(err) != "timeout" || !IsRetryable(err) {
		t.Fatalf("got %v (cause %q), want a retryable timeout", err, Cause(err))
	}
	assertNoSecrets(t, err.Error())
}

func TestClientCallerCanceled(t *testing.T) {
	t.Parallel()
	c, arrived := blockingServer(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := c.IssueChannelAccessTokenV2_1(ctx, testAssertion)
	var re *RequestError
	if !errors.As(err, &re) || re.Kind != KindCanceled {
		t.Fatalf("got %v, want a canceled RequestError", err)
	}
	if want := "POST /oauth2/v2.1/token: canceled: context canceled"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, context.Canceled) || IsRetryable(err) || Cause(err) != "canceled" {
		t.Errorf("Is(Canceled) %v IsRetryable %v Cause %q", errors.Is(err, context.Canceled), IsRetryable(err), Cause(err))
	}

	// Already canceled before the call.
	_, err = c.IssueAccessToken(ctx, "1", testSecret)
	if Cause(err) != "canceled" || IsRetryable(err) {
		t.Errorf("pre-canceled: %v", err)
	}
}

func TestClientCallerDeadline(t *testing.T) {
	t.Parallel()
	// The caller's deadline is shorter than the per-call timeout: the caller
	// gave up, so this is not a retryable timeout.
	c, _ := blockingServer(t, Options{Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.GetChannelAccessTokenKeyIDsV2_1(ctx, testAssertion)
	if Cause(err) != "canceled" || IsRetryable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v (cause %q retryable %v)", err, Cause(err), IsRetryable(err))
	}
	assertNoSecrets(t, err.Error())
}

func TestClientNetworkErrors(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		base := srv.URL
		srv.Close()
		c, err := NewClient(Options{BaseURL: base})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
		var re *RequestError
		if !errors.As(err, &re) || re.Kind != KindNetwork || !IsRetryable(err) || Cause(err) != "network" {
			t.Fatalf("got %v, want a retryable network RequestError", err)
		}
		if !strings.HasPrefix(err.Error(), "GET /oauth2/v2.1/verify: network: dial tcp ") {
			t.Errorf("error %q", err)
		}
		if OutcomeUnknown(err) {
			t.Error("OutcomeUnknown: a dial that failed sent nothing")
		}
		assertNoSecrets(t, err.Error())
	})
	t.Run("connection dropped", func(t *testing.T) {
		t.Parallel()
		c, _ := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}), Options{})
		_, err := c.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
		if Cause(err) != "network" || !IsRetryable(err) {
			t.Fatalf("got %v, want a retryable network error", err)
		}
		if !OutcomeUnknown(err) {
			t.Error("OutcomeUnknown false for a connection dropped after the request")
		}
		assertNoSecrets(t, err.Error())
	})
	t.Run("body cut short", func(t *testing.T) {
		t.Parallel()
		c, _ := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, `{"access_token":"`)
		}), Options{})
		_, err := c.IssueAccessToken(context.Background(), "1", testSecret)
		if Cause(err) != "network" || !IsRetryable(err) {
			t.Fatalf("got %v, want a retryable network error", err)
		}
		if !OutcomeUnknown(err) {
			t.Error("OutcomeUnknown false for an answer cut short")
		}
	})
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var hits sync.Map
	c, srv := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}), Options{})
	_ = srv
	_, err := c.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusFound {
		t.Fatalf("got %v, want a 302 APIError", err)
	}
	if _, ok := hits.Load("/elsewhere"); ok {
		t.Fatal("client followed the redirect, resending the token")
	}
	if IsRetryable(err) {
		t.Error("a redirect is retryable")
	}
}

func TestTokenRedacts(t *testing.T) {
	t.Parallel()
	tok := Token{AccessToken: testToken, TokenType: "Bearer", KeyID: "kid", ExpiresIn: 10}
	want := `oauth.Token{AccessToken:<redacted> TokenType:"Bearer" KeyID:"kid" ExpiresIn:10}`
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{tok, &tok, []*Token{&tok}} {
			got := fmt.Sprintf(verb, v)
			if strings.Contains(got, "SECRET") {
				t.Errorf("Sprintf(%q, %T) = %q leaks the token", verb, v, got)
			}
		}
		if got := fmt.Sprintf(verb, tok); got != want {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, got, want)
		}
	}
	if got := (Token{}).String(); got != `oauth.Token{AccessToken:<empty> TokenType:"" KeyID:"" ExpiresIn:0}` {
		t.Errorf("zero Token prints %q", got)
	}
}

// TestClientKeepsConnectionsAlive: as many calls at once as the pool holds
// reuse their connections instead of opening one per call (net/http's
// default keeps 2 per host; against LINE every extra one is a TLS handshake).
func TestClientKeepsConnectionsAlive(t *testing.T) {
	const workers, calls = 16, 25
	var opened atomic.Int64
	// Each round holds every worker's call in the handler until all have
	// arrived, so there are always `workers` calls at once.
	var mu sync.Mutex
	arrived, release := 0, make(chan struct{})
	barrier := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ch := release
		if arrived++; arrived == workers {
			close(release)
			arrived, release = 0, make(chan struct{})
		}
		mu.Unlock()
		<-ch
		okResponse(w, r)
	})
	srv := httptest.NewUnstartedServer(barrier)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := NewClient(Options{BaseURL: srv.URL, MaxIdleConns: workers})
	if err != nil {
		t.Fatal(err)
	}
	// Rounds: every connection goes back to the pool before the next round
	// asks for them again.
	errs := make(chan error, workers*calls)
	for range calls {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				if _, err := c.GetChannelAccessTokenKeyIDsV2_1(context.Background(), "a.b.c"); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := opened.Load(); n > workers {
		t.Errorf("%d calls from %d goroutines opened %d connections, want at most %d", workers*calls, workers, n, workers)
	}
}

// TestIssuedTokenNeverPrinted: the token of a malformed issue answer comes
// back only through IssuedToken, never in the error's text, whatever the
// verb.
func TestIssuedTokenNeverPrinted(t *testing.T) {
	t.Parallel()
	h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"access_token":"`+testToken+`","token_type":"Bearer","key_id":"k"}`)
	}}
	c, _ := newTestServer(t, h, Options{})
	_, err := c.IssueChannelAccessTokenV2_1(context.Background(), "a.b.c")
	if tok, ok := IssuedToken(err); !ok || tok != testToken {
		t.Fatalf("IssuedToken(%v) = %v; want the answer's token", err, ok)
	}
	if _, ok := IssuedToken(nil); ok {
		t.Error("IssuedToken(nil) reports a token")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, err); strings.Contains(s, testToken) {
			t.Errorf("%s of the error prints the token: %s", verb, s)
		}
	}
	if _, ok := IssuedToken(fmt.Errorf("wrapped: %w", errors.New("other"))); ok {
		t.Error("IssuedToken of an unrelated error reports a token")
	}
}

// TestDialTimeoutOutcomeKnown: a connection that hangs until line.timeout
// (a firewall that drops packets: the usual outage) sent nothing, so its
// timeout is not OutcomeUnknown: no token can have been issued, and the
// rotator keeps retrying at the usual pace, woken when LINE answers again.
// The timeout's error used to lose the dial it came from.
func TestDialTimeoutOutcomeKnown(t *testing.T) {
	t.Parallel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
		},
	}}
	c, err := NewClient(Options{BaseURL: "http://192.0.2.1", HTTPClient: hc, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.IssueChannelAccessTokenV2_1(context.Background(), testAssertion)
	if Cause(err) != "timeout" {
		t.Fatalf("got %v, want a timeout", err)
	}
	if OutcomeUnknown(err) {
		t.Error("OutcomeUnknown for a request that never left: a dial that timed out")
	}
}

// breakConn fails its writes once broken.
type breakConn struct {
	net.Conn
	broken *atomic.Bool
}

func (c breakConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, errors.New("write: broken pipe")
	}
	return c.Conn.Write(p)
}

// TestRetriedDialOutcomeKnown: a call whose kept connection fails before
// taking the request is tried again on a new one; when that one cannot be
// made, nothing reached LINE, so the outcome is known (not OutcomeUnknown).
// The first attempt's trace had said the request was written.
func TestRetriedDialOutcomeKnown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kids":["a"]}`)
	}))
	t.Cleanup(srv.Close)
	var broken atomic.Bool
	var dials atomic.Int64
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) > 1 {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
			}
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return breakConn{conn, &broken}, nil
		},
	}}
	c, err := NewClient(Options{BaseURL: srv.URL, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetChannelAccessTokenKeyIDsV2_1(context.Background(), testAssertion); err != nil {
		t.Fatal(err)
	}
	broken.Store(true)
	_, err = c.IssueChannelAccessTokenV2_1(context.Background(), testAssertion)
	if err == nil || dials.Load() < 2 {
		t.Fatalf("err %v after %d dials; want the retry's refused dial", err, dials.Load())
	}
	if OutcomeUnknown(err) {
		t.Errorf("OutcomeUnknown for %v: the request reached no one", err)
	}
}
