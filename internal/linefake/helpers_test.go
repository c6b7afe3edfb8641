package linefake_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jonboulle/clockwork"

	"github.com/tokend/tokend/internal/linefake"
)

const (
	chanA   = "1000000001"
	chanB   = "1000000002"
	secretA = "secret-a-0123456789abcdef"
	secretB = "secret-b-0123456789abcdef"
	kidA    = "kid-a"
	kidB    = "kid-b"
	// kidSmall names keySmall, registered for channel A: a key LINE's
	// console would not have taken.
	kidSmall = "kid-small"

	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// RSA keys are slow to generate: once per test binary.
var keyA, keyB, keySmall *rsa.PrivateKey

func TestMain(m *testing.M) {
	var err error
	if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
		keyB, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err == nil {
		keySmall, err = rsa.GenerateKey(rand.Reader, 1024)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate test keys:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// env is a simulator on a fake clock behind a real HTTP server, with two
// channels (A and B) that each have a secret and a registered key.
type env struct {
	t     *testing.T
	srv   *linefake.Server
	ts    *httptest.Server
	clock *clockwork.FakeClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	srv := linefake.New(linefake.Options{Clock: clock})
	srv.AddChannel(chanA, secretA)
	srv.AddChannel(chanB, secretB)
	srv.RegisterKey(chanA, kidA, &keyA.PublicKey)
	srv.RegisterKey(chanB, kidB, &keyB.PublicKey)
	srv.RegisterKey(chanA, kidSmall, &keySmall.PublicKey)
	return &env{t: t, srv: srv, ts: newServer(t, srv), clock: clock}
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// reply is a response read in full.
type reply struct {
	status int
	header http.Header
	body   string
}

// shown is the body for a failure message, access tokens blanked: even a
// simulator's tokens stay out of test output.
func (r reply) shown() string {
	return accessTokenValue.ReplaceAllString(r.body, `"access_token":"<redacted>"`)
}

var accessTokenValue = regexp.MustCompile(`"access_token"\s*:\s*"[^"]*"`)

// json decodes the body into a generic map, failing the test if it is not JSON.
func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(r.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object (status %d): %v: %q", r.status, err, r.shown())
	}
	return m
}

func (e *env) do(req *http.Request) reply {
	e.t.Helper()
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *env) post(path string, form url.Values) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req)
}

func (e *env) get(path string, query url.Values) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+path+"?"+query.Encode(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

// assertion signs a JWT for channel A with key A unless edit changes the
// header, the claims or the signing key/method.
type jwtSpec struct {
	header map[string]any
	claims jwt.MapClaims
	method jwt.SigningMethod
	key    any
}

func (e *env) assertion(edit func(*jwtSpec)) string {
	e.t.Helper()
	now := e.clock.Now()
	s := &jwtSpec{
		header: map[string]any{"kid": kidA},
		claims: jwt.MapClaims{
			"iss":       chanA,
			"sub":       chanA,
			"aud":       "https://api.line.me/",
			"exp":       now.Add(10 * time.Minute).Unix(),
			"token_exp": 3600,
		},
		method: jwt.SigningMethodRS256,
		key:    keyA,
	}
	if edit != nil {
		edit(s)
	}
	tok := jwt.NewWithClaims(s.method, s.claims)
	for k, v := range s.header {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	str, err := tok.SignedString(s.key)
	if err != nil {
		e.t.Fatalf("sign test assertion: %v", err)
	}
	return str
}

func issueForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {assertionType},
		"client_assertion":      {assertion},
	}
}

// issueV21 issues a v2.1 token for channel A and fails unless LINE says 200.
func (e *env) issueV21(tokenExp int) (accessToken, keyID string) {
	e.t.Helper()
	r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(func(s *jwtSpec) { s.claims["token_exp"] = tokenExp })))
	if r.status != http.StatusOK {
		e.t.Fatalf("issue v2.1: %d %s", r.status, r.shown())
	}
	m := r.json(e.t)
	return m["access_token"].(string), m["key_id"].(string)
}

func (e *env) issueShort(channelID, secret string) string {
	e.t.Helper()
	r := e.post("/v2/oauth/accessToken", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {channelID}, "client_secret": {secret},
	})
	if r.status != http.StatusOK {
		e.t.Fatalf("issue short-lived: %d %s", r.status, r.shown())
	}
	return r.json(e.t)["access_token"].(string)
}

// wantError checks a LINE error answer: exact status and exact JSON body.
func wantError(t *testing.T, r reply, status int, body map[string]any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.shown())
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	got := r.json(t)
	if len(got) != len(body) {
		t.Fatalf("body = %v, want %v", got, body)
	}
	for k, v := range body {
		if got[k] != v {
			t.Fatalf("body = %v, want %v", got, body)
		}
	}
}

func oauthErr(code, desc string) map[string]any {
	return map[string]any{"error": code, "error_description": desc}
}

func message(msg string) map[string]any { return map[string]any{"message": msg} }

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a JSON number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an integer: %v", v, err)
	}
	return i
}
