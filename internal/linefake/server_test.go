package linefake_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/internal/linefake"
)

var (
	jwsShape   = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)
	keyIDShape = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)
)

func TestIssueV21(t *testing.T) {
	e := newEnv(t)
	r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil)))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.shown())
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	m := r.json(t)
	tok, _ := m["access_token"].(string)
	if !jwsShape.MatchString(tok) || len(tok) < 170 {
		t.Errorf("access_token is not a long JWS (%d chars)", len(tok))
	}
	if got := num(t, m["expires_in"]); got != 3600 {
		t.Errorf("expires_in = %d, want 3600", got)
	}
	if m["token_type"] != "Bearer" {
		t.Errorf("token_type = %v", m["token_type"])
	}
	kid, _ := m["key_id"].(string)
	if !keyIDShape.MatchString(kid) {
		t.Errorf("key_id = %q, want 22 base64url characters", kid)
	}
	if !e.srv.IsValid(tok) {
		t.Error("IsValid(new token) = false")
	}
	ts := e.srv.Tokens(chanA)
	if len(ts) != 1 || ts[0].Kind != linefake.KindV21 || ts[0].KeyID != kid || ts[0].AccessToken != tok ||
		!ts[0].IssuedAt.Equal(e.clock.Now()) || !ts[0].ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) || ts[0].Revoked {
		t.Errorf("Tokens = %v", ts)
	}
	if got := e.srv.ValidKeyIDs(chanA); len(got) != 1 || got[0] != kid {
		t.Errorf("ValidKeyIDs = %v", got)
	}
	if len(e.srv.Tokens(chanB)) != 0 {
		t.Error("channel B got a token")
	}

	// Two tokens never share a string or key ID.
	tok2, kid2 := e.issueV21(60)
	if tok2 == tok || kid2 == kid {
		t.Error("second token repeats the first")
	}
}

// TestIssueV21TokenExpRequired: a v2.1 issue needs token_exp (LINE's
// reference lists it as required); the key-ID listing and the stateless
// issue do not.
func TestIssueV21TokenExpRequired(t *testing.T) {
	e := newEnv(t)
	noExp := func(s *jwtSpec) { delete(s.claims, "token_exp") }
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(e.assertion(noExp))), 400, oauthErr("invalid_request", "Invalid token_exp"))
	if n := len(e.srv.Tokens(chanA)); n != 0 {
		t.Errorf("a refused issue issued %d tokens", n)
	}
	if r := e.post("/oauth2/v3/token", issueForm(e.assertion(noExp))); r.status != 200 {
		t.Errorf("stateless issue without token_exp: %s", r.shown())
	}
}

func TestIssueV21TokenExp(t *testing.T) {
	tests := []struct {
		name     string
		tokenExp any // nil = claim absent
		want     int64
	}{
		{"one second", 1, 1},
		{"30 days", 2592000, 2592000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(func(s *jwtSpec) {
				if tt.tokenExp == nil {
					delete(s.claims, "token_exp")
				} else {
					s.claims["token_exp"] = tt.tokenExp
				}
			})))
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.shown())
			}
			if got := num(t, r.json(t)["expires_in"]); got != tt.want {
				t.Errorf("expires_in = %d, want %d", got, tt.want)
			}
		})
	}
}

// assertionCases break one rule each; every assertion endpoint enforces them.
var assertionCases = []struct {
	name   string
	edit   func(s *jwtSpec)
	status int
	body   map[string]any
}{
	{"aud without trailing slash", func(s *jwtSpec) { s.claims["aud"] = "https://api.line.me" },
		400, oauthErr("invalid_client", "Invalid aud")},
	{"aud as array", func(s *jwtSpec) { s.claims["aud"] = []string{"https://api.line.me/"} },
		400, oauthErr("invalid_client", "Invalid aud")},
	{"aud missing", func(s *jwtSpec) { delete(s.claims, "aud") },
		400, oauthErr("invalid_client", "Invalid aud")},
	{"exp 31 minutes ahead", func(s *jwtSpec) { s.claims["exp"] = time.Unix(num0(s), 0).Add(31 * time.Minute).Unix() },
		400, oauthErr("invalid_client", "Invalid exp")},
	{"exp in the past", func(s *jwtSpec) { s.claims["exp"] = num0(s) - 1 },
		400, oauthErr("invalid_client", "Invalid exp")},
	{"exp now", func(s *jwtSpec) { s.claims["exp"] = num0(s) },
		400, oauthErr("invalid_client", "Invalid exp")},
	{"exp missing", func(s *jwtSpec) { delete(s.claims, "exp") },
		400, oauthErr("invalid_client", "Invalid exp")},
	{"exp not a number", func(s *jwtSpec) { s.claims["exp"] = "soon" },
		400, oauthErr("invalid_client", "Invalid exp")},
	{"nbf in the future", func(s *jwtSpec) { s.claims["nbf"] = num0(s) + 60 },
		400, oauthErr("invalid_client", "Invalid nbf")},
	{"iss differs from sub", func(s *jwtSpec) { s.claims["sub"] = chanB },
		400, oauthErr("invalid_client", "iss and clientId of key do not match")},
	{"iss and sub name another channel", func(s *jwtSpec) { s.claims["iss"], s.claims["sub"] = chanB, chanB },
		400, oauthErr("invalid_client", "iss and clientId of key do not match")},
	{"iss and sub name an unknown channel", func(s *jwtSpec) { s.claims["iss"], s.claims["sub"] = "999", "999" },
		400, oauthErr("invalid_client", "iss and clientId of key do not match")},
	{"iss missing", func(s *jwtSpec) { delete(s.claims, "iss") },
		400, oauthErr("invalid_client", "iss and clientId of key do not match")},
	{"iss as a number", func(s *jwtSpec) { s.claims["iss"], s.claims["sub"] = 1000000001, 1000000001 },
		400, oauthErr("invalid_client", "iss and clientId of key do not match")},
	{"unknown kid", func(s *jwtSpec) { s.header["kid"] = "no-such-kid" },
		404, message("Cannot find channel key that satisfies the conditions")},
	{"kid missing", func(s *jwtSpec) { s.header["kid"] = nil },
		404, message("Cannot find channel key that satisfies the conditions")},
	{"signed by another key", func(s *jwtSpec) { s.key = keyB },
		400, oauthErr("invalid_client", "Invalid signature")},
	{"kid of channel B, signed by B, claims of A", func(s *jwtSpec) { s.header["kid"], s.key = kidB, keyB },
		400, oauthErr("invalid_client", "iss and clientId of key do not match")},
	{"alg HS256", func(s *jwtSpec) { s.method, s.key = jwt.SigningMethodHS256, []byte("secret") },
		400, oauthErr("invalid_client", "Invalid alg")},
	{"alg PS256", func(s *jwtSpec) { s.method = jwt.SigningMethodPS256 },
		400, oauthErr("invalid_client", "Invalid alg")},
	{"alg none", func(s *jwtSpec) { s.method, s.key = jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType },
		400, oauthErr("invalid_client", "Invalid alg")},
	{"alg unknown", func(s *jwtSpec) { s.header["alg"] = "XY512" },
		400, oauthErr("invalid_client", "Invalid alg")},
	{"alg missing", func(s *jwtSpec) { s.header["alg"] = nil },
		400, oauthErr("invalid_client", "Invalid alg")},
	{"typ missing", func(s *jwtSpec) { s.header["typ"] = nil },
		400, oauthErr("invalid_client", "Invalid typ")},
	{"typ at+jwt", func(s *jwtSpec) { s.header["typ"] = "at+jwt" },
		400, oauthErr("invalid_client", "Invalid typ")},
	{"signed by a 1024-bit key registered under the kid", func(s *jwtSpec) { s.header["kid"], s.key = kidSmall, keySmall },
		404, message("Cannot find channel key that satisfies the conditions")},
	{"alg HS256 and an unknown kid: the alg is checked first", func(s *jwtSpec) {
		s.method, s.key, s.header["kid"] = jwt.SigningMethodHS256, []byte("secret"), "no-such-kid"
	}, 400, oauthErr("invalid_client", "Invalid alg")},
	{"unknown kid and a bad signature: the key is looked up first", func(s *jwtSpec) { s.header["kid"], s.key = "no-such-kid", keyB },
		404, message("Cannot find channel key that satisfies the conditions")},
	{"bad signature and exp in the past: the signature is checked first", func(s *jwtSpec) { s.key, s.claims["exp"] = keyB, num0(s)-1 },
		400, oauthErr("invalid_client", "Invalid signature")},
}

// num0 is the test clock's now in Unix seconds, read back from the default
// exp (now + 10 minutes) before an edit changes it.
func num0(s *jwtSpec) int64 { return s.claims["exp"].(int64) - 600 }

func TestAssertionRules(t *testing.T) {
	endpoints := []struct {
		name string
		send func(e *env, assertion string) reply
	}{
		{"issue_v2.1", func(e *env, a string) reply { return e.post("/oauth2/v2.1/token", issueForm(a)) }},
		{"kids_v2.1", func(e *env, a string) reply {
			return e.get("/oauth2/v2.1/tokens/kid", url.Values{"client_assertion_type": {assertionType}, "client_assertion": {a}})
		}},
		{"issue_stateless", func(e *env, a string) reply { return e.post("/oauth2/v3/token", issueForm(a)) }},
	}
	for _, ep := range endpoints {
		for _, tt := range assertionCases {
			t.Run(ep.name+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t)
				wantError(t, ep.send(e, e.assertion(tt.edit)), tt.status, tt.body)
				if n := len(e.srv.Tokens(chanA)) + len(e.srv.Tokens(chanB)); n != 0 {
					t.Errorf("a refused request issued %d tokens", n)
				}
			})
		}
		t.Run(ep.name+"/not a JWT", func(t *testing.T) {
			e := newEnv(t)
			wantError(t, ep.send(e, "not.a.jwt"), 400, oauthErr("invalid_request", "Invalid client_assertion: not a JWT"))
		})
		t.Run(ep.name+"/exp exactly 30 minutes ahead is accepted", func(t *testing.T) {
			e := newEnv(t)
			r := ep.send(e, e.assertion(func(s *jwtSpec) { s.claims["exp"] = num0(s) + 1800 }))
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.shown())
			}
		})
	}
}

func TestAssertionClockIsSimulatorClock(t *testing.T) {
	e := newEnv(t)
	a := e.assertion(nil) // exp = now + 10 minutes
	e.clock.Advance(11 * time.Minute)
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(a)), 400, oauthErr("invalid_client", "Invalid exp"))
}

func TestTokenExpRules(t *testing.T) {
	for _, v := range []any{2592001, 0, -5, 1.5, "3600", true} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			e := newEnv(t)
			r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(func(s *jwtSpec) { s.claims["token_exp"] = v })))
			wantError(t, r, 400, oauthErr("invalid_request", "Invalid token_exp"))
		})
	}
	// token_exp does not matter where no token with it is issued.
	e := newEnv(t)
	a := e.assertion(func(s *jwtSpec) { s.claims["token_exp"] = 99999999 })
	if r := e.post("/oauth2/v3/token", issueForm(a)); r.status != http.StatusOK {
		t.Errorf("stateless with huge token_exp: %d %s", r.status, r.shown())
	}
}

func TestRequestParameters(t *testing.T) {
	e := newEnv(t)
	good := e.assertion(nil)
	with := func(k, v string) url.Values {
		f := issueForm(good)
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name string
		path string
		form url.Values
		body map[string]any
	}{
		{"v2.1 grant_type wrong", "/oauth2/v2.1/token", with("grant_type", "password"),
			oauthErr("unsupported_grant_type", "unsupported grant_type")},
		{"v2.1 grant_type missing", "/oauth2/v2.1/token", with("grant_type", ""),
			oauthErr("invalid_request", "required parameter missing: grant_type")},
		{"v2.1 assertion type wrong", "/oauth2/v2.1/token", with("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
			oauthErr("invalid_request", "invalid client_assertion_type")},
		{"v2.1 assertion missing", "/oauth2/v2.1/token", with("client_assertion", ""),
			oauthErr("invalid_request", "required parameter missing: client_assertion")},
		{"stateless grant_type wrong", "/oauth2/v3/token", with("grant_type", "client_credential"),
			oauthErr("unsupported_grant_type", "unsupported grant_type")},
		{"stateless neither assertion nor secret", "/oauth2/v3/token", url.Values{"grant_type": {"client_credentials"}},
			oauthErr("invalid_request", "required parameter missing: client_id")},
		{"short-lived grant_type wrong", "/v2/oauth/accessToken",
			url.Values{"grant_type": {"authorization_code"}, "client_id": {chanA}, "client_secret": {secretA}},
			oauthErr("unsupported_grant_type", "unsupported grant_type")},
		{"short-lived secret missing", "/v2/oauth/accessToken",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {chanA}},
			oauthErr("invalid_request", "required parameter missing: client_secret")},
		{"revoke v2.1 token missing", "/oauth2/v2.1/revoke", url.Values{"client_id": {chanA}, "client_secret": {secretA}},
			oauthErr("invalid_request", "required parameter missing: access_token")},
		{"revoke short token missing", "/v2/oauth/revoke", url.Values{},
			oauthErr("invalid_request", "required parameter missing: access_token")},
		{"verify short token missing", "/v2/oauth/verify", url.Values{},
			oauthErr("invalid_request", "required parameter missing: access_token")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, e.post(tt.path, tt.form), 400, tt.body)
		})
	}
	t.Run("kids assertion type wrong", func(t *testing.T) {
		r := e.get("/oauth2/v2.1/tokens/kid", url.Values{"client_assertion_type": {"jwt"}, "client_assertion": {good}})
		wantError(t, r, 400, oauthErr("invalid_request", "invalid client_assertion_type"))
	})
	t.Run("verify v2.1 token missing", func(t *testing.T) {
		wantError(t, e.get("/oauth2/v2.1/verify", nil), 400, oauthErr("invalid_request", "required parameter missing: access_token"))
	})
	if n := len(e.srv.Tokens(chanA)); n != 0 {
		t.Errorf("refused requests issued %d tokens", n)
	}
}

func TestFormEncoding(t *testing.T) {
	e := newEnv(t)
	form := issueForm(e.assertion(nil))
	ctErr := oauthErr("invalid_request", "Content-Type must be application/x-www-form-urlencoded")

	for _, ct := range []string{"", "application/json", "multipart/form-data; boundary=x", "text/plain"} {
		t.Run("content type "+ct, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/oauth2/v2.1/token", strings.NewReader(form.Encode()))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			wantError(t, e.do(req), 400, ctErr)
		})
	}
	t.Run("charset parameter is fine", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/oauth2/v2.1/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
		if r := e.do(req); r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.shown())
		}
	})
	t.Run("POST parameters in the query are ignored", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/oauth2/v2.1/token?"+form.Encode(), nil)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		wantError(t, e.do(req), 400, oauthErr("invalid_request", "required parameter missing: grant_type"))
	})
	t.Run("body too large", func(t *testing.T) {
		big := url.Values{"access_token": {strings.Repeat("a", linefake.MaxBodyBytes)}}
		wantError(t, e.post("/v2/oauth/revoke", big), 413, message("Request Entity Too Large"))
	})
}

func TestRouting(t *testing.T) {
	e := newEnv(t)
	routes := map[string]string{
		"/oauth2/v2.1/token":      http.MethodPost,
		"/oauth2/v2.1/tokens/kid": http.MethodGet,
		"/oauth2/v2.1/revoke":     http.MethodPost,
		"/oauth2/v2.1/verify":     http.MethodGet,
		"/v2/oauth/accessToken":   http.MethodPost,
		"/v2/oauth/revoke":        http.MethodPost,
		"/v2/oauth/verify":        http.MethodPost,
		"/oauth2/v3/token":        http.MethodPost,
	}
	for path, method := range routes {
		wrong := http.MethodGet
		if method == http.MethodGet {
			wrong = http.MethodPost
		}
		for _, m := range []string{wrong, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(m, e.ts.URL+path, nil)
			r := e.do(req)
			wantError(t, r, 405, message("Method not allowed"))
			if got := r.header.Get("Allow"); got != method {
				t.Errorf("%s %s: Allow = %q, want %q", m, path, got, method)
			}
		}
	}
	for _, path := range []string{"/", "/oauth2/v2.1/token/", "/oauth2/v2/token", "/v2/bot/message/push", "/OAUTH2/V2.1/TOKEN"} {
		wantError(t, e.post(path, url.Values{}), 404, message("Not found"))
	}
	if got := e.srv.Count(linefake.EndpointIssueV21); got != 3 {
		t.Errorf("Count(issue_v2.1) = %d, want 3 (the 405s)", got)
	}
	if got := e.srv.Count(""); got != 5 {
		t.Errorf("Count(\"\") = %d, want 5 (the 404s)", got)
	}
}

func TestV21TokenLimit(t *testing.T) {
	e := newEnv(t)
	var first string
	for i := range 30 {
		ttl := 3600
		if i == 0 {
			ttl = 60 // the first expires early
		}
		_, kid := e.issueV21(ttl)
		if i == 0 {
			first = kid
		}
	}
	limit := message("The maximum number of access tokens has already been issued")
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil))), 400, limit)
	if n := len(e.srv.ValidKeyIDs(chanA)); n != 30 {
		t.Fatalf("valid key IDs = %d, want 30", n)
	}
	if got := e.srv.MaxValid(chanA); got != 30 {
		t.Errorf("MaxValid = %d, want 30", got)
	}

	// The limit is per channel.
	r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(func(s *jwtSpec) {
		s.claims["iss"], s.claims["sub"], s.header["kid"], s.key = chanB, chanB, kidB, keyB
	})))
	if r.status != 200 {
		t.Fatalf("channel B refused: %d %s", r.status, r.shown())
	}

	// An expired token no longer counts.
	e.clock.Advance(61 * time.Second)
	for _, k := range e.srv.ValidKeyIDs(chanA) {
		if k == first {
			t.Fatal("expired key ID still listed as valid")
		}
	}
	e.issueV21(3600)
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil))), 400, limit)

	// Nor does a revoked one.
	if !e.srv.RevokeKeyID(chanA, e.srv.ValidKeyIDs(chanA)[0]) {
		t.Fatal("RevokeKeyID(valid) = false")
	}
	e.issueV21(3600)
	if got := e.srv.MaxValid(chanA); got != 30 {
		t.Errorf("MaxValid = %d, want 30", got)
	}
	if got := e.srv.MaxValid(chanB); got != 1 {
		t.Errorf("MaxValid(B) = %d, want 1", got)
	}
	if got := len(e.srv.Tokens(chanA)); got != 32 {
		t.Errorf("Tokens = %d, want every one of the 32 issued", got)
	}
}

func TestV21TokenLimitConcurrent(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	statuses := make([]int, 40)
	for i := range statuses {
		a := e.assertion(nil)
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/oauth2/v2.1/token", strings.NewReader(issueForm(a).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		}
	}
	if ok != 30 || e.srv.MaxValid(chanA) != 30 {
		t.Errorf("%d issued, MaxValid %d; want 30 and 30", ok, e.srv.MaxValid(chanA))
	}
}

func TestKeyIDs(t *testing.T) {
	e := newEnv(t)
	kids := func() []string {
		t.Helper()
		r := e.get("/oauth2/v2.1/tokens/kid", url.Values{"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(nil)}})
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("kids: %d %s", r.status, r.shown())
		}
		if !strings.HasPrefix(r.body, `{"kids":[`) {
			t.Fatalf("body %s: want a kids array", r.shown())
		}
		var out []string
		for _, v := range r.json(t)["kids"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := kids(); len(got) != 0 {
		t.Fatalf("kids before any issue = %v", got)
	}
	_, k1 := e.issueV21(3600)
	_, k2 := e.issueV21(60)
	_, k3 := e.issueV21(3600)
	e.issueShort(chanA, secretA) // not a v2.1 token: never listed
	if got := kids(); fmt.Sprint(got) != fmt.Sprint([]string{k1, k2, k3}) {
		t.Errorf("kids = %v, want %v", got, []string{k1, k2, k3})
	}
	e.clock.Advance(time.Minute) // k2 expires
	if !e.srv.RevokeKeyID(chanA, k3) {
		t.Error("RevokeKeyID(k3) = false")
	}
	if e.srv.RevokeKeyID(chanA, k3) || e.srv.RevokeKeyID(chanA, k2) || e.srv.RevokeKeyID(chanB, k1) || e.srv.RevokeKeyID("nope", k1) {
		t.Error("RevokeKeyID of an invalid, expired, foreign or unknown key ID = true")
	}
	if got := kids(); fmt.Sprint(got) != fmt.Sprint([]string{k1}) {
		t.Errorf("kids = %v, want [%s]", got, k1)
	}
	if got := e.srv.ValidKeyIDs(chanA); fmt.Sprint(got) != fmt.Sprint([]string{k1}) {
		t.Errorf("ValidKeyIDs = %v", got)
	}
	if got := e.srv.ValidKeyIDs("unknown"); got == nil || len(got) != 0 {
		t.Errorf("ValidKeyIDs(unknown) = %#v, want empty", got)
	}
}

func TestVerifyV21AndExpiry(t *testing.T) {
	e := newEnv(t)
	tok, kid := e.issueV21(60)
	verify := func() reply { return e.get("/oauth2/v2.1/verify", url.Values{"access_token": {tok}}) }

	r := verify()
	if r.status != 200 {
		t.Fatalf("verify: %d %s", r.status, r.shown())
	}
	m := r.json(t)
	if m["client_id"] != chanA || num(t, m["expires_in"]) != 60 || m["scope"] == nil {
		t.Errorf("verify = %v", m)
	}
	e.clock.Advance(30*time.Second + 500*time.Millisecond)
	if got := num(t, verify().json(t)["expires_in"]); got != 29 {
		t.Errorf("expires_in after 30.5s = %d, want 29", got)
	}
	e.clock.Advance(29500 * time.Millisecond)
	wantError(t, verify(), 400, oauthErr("invalid_request", "The access token expired"))
	if e.srv.IsValid(tok) {
		t.Error("IsValid(expired) = true")
	}
	if len(e.srv.ValidKeyIDs(chanA)) != 0 {
		t.Error("expired key ID still valid")
	}
	if ts := e.srv.Tokens(chanA); len(ts) != 1 || ts[0].KeyID != kid {
		t.Errorf("Tokens = %v, want the expired token kept", ts)
	}

	for name, tok := range map[string]string{
		"unknown JWS":       "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl",
		"not a token":       "hello",
		"short-lived token": e.issueShort(chanA, secretA),
	} {
		r := e.get("/oauth2/v2.1/verify", url.Values{"access_token": {tok}})
		if r.status != 400 || r.json(t)["error_description"] != "invalid access token" {
			t.Errorf("verify %s: %d %s", name, r.status, r.shown())
		}
	}
}

func TestRevokeV21(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.issueV21(3600)
	revoke := func(id, secret, tok string) reply {
		return e.post("/oauth2/v2.1/revoke", url.Values{"client_id": {id}, "client_secret": {secret}, "access_token": {tok}})
	}

	wantError(t, revoke(chanA, secretB, tok), 400, oauthErr("invalid_client", "invalid client_secret"))
	wantError(t, revoke("999", secretA, tok), 400, oauthErr("invalid_client", "invalid client_id"))
	wantError(t, revoke(chanB, secretB, tok), 400, oauthErr("invalid_client", "access token was not issued to client_id"))
	wantError(t, revoke(chanB, secretA, tok), 400, oauthErr("invalid_client", "invalid client_secret"))
	wantError(t, revoke(chanA, secretA, "not-a-jws"), 400, oauthErr("invalid_request", "The access token not JWS"))
	wantError(t, revoke(chanA, secretA, e.issueShort(chanA, secretA)), 400, oauthErr("invalid_request", "The access token not JWS"))
	if !e.srv.IsValid(tok) {
		t.Fatal("a refused revoke revoked the token")
	}

	r := revoke(chanA, secretA, tok)
	if r.status != 200 || r.body != "" {
		t.Fatalf("revoke: %d %q, want 200 and an empty body", r.status, r.shown())
	}
	if e.srv.IsValid(tok) {
		t.Error("IsValid(revoked) = true")
	}
	wantError(t, e.get("/oauth2/v2.1/verify", url.Values{"access_token": {tok}}), 400,
		oauthErr("invalid_request", "invalid access token"))
	if ts := e.srv.Tokens(chanA); !ts[0].Revoked {
		t.Error("Tokens does not show the revocation")
	}

	// A stateless token cannot be revoked at all: the v2.1 endpoint answers
	// 200 and leaves it valid.
	sr := e.post("/oauth2/v3/token", issueForm(e.assertion(nil)))
	if sr.status != http.StatusOK {
		t.Fatalf("stateless issue: %d %s", sr.status, sr.shown())
	}
	stateless := sr.json(t)["access_token"].(string)
	if r := revoke(chanA, secretA, stateless); r.status != 200 || r.body != "" {
		t.Errorf("revoke a stateless token: %d %q, want 200 and an empty body", r.status, r.shown())
	}
	if !e.srv.IsValid(stateless) {
		t.Error("the v2.1 revoke endpoint revoked a stateless token")
	}

	// Already invalid tokens are not an error.
	expired, _ := e.issueV21(1)
	e.clock.Advance(time.Second)
	for name, tok := range map[string]string{
		"revoked again": tok,
		"expired":       expired,
		"unknown JWS":   "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl",
	} {
		if r := revoke(chanA, secretA, tok); r.status != 200 || r.body != "" {
			t.Errorf("revoke %s: %d %q", name, r.status, r.shown())
		}
	}
}

func TestShortLived(t *testing.T) {
	e := newEnv(t)
	r := e.post("/v2/oauth/accessToken", url.Values{"grant_type": {"client_credentials"}, "client_id": {chanA}, "client_secret": {secretA}})
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("issue: %d %s", r.status, r.shown())
	}
	m := r.json(t)
	tok := m["access_token"].(string)
	if num(t, m["expires_in"]) != 2592000 || m["token_type"] != "Bearer" || m["key_id"] != nil {
		t.Errorf("issue = %v", m)
	}
	if raw, err := base64.StdEncoding.DecodeString(tok); err != nil || len(raw) < 64 {
		t.Errorf("short-lived token is not long opaque base64 (%d chars)", len(tok))
	}

	wrong := func(id, secret string) reply {
		return e.post("/v2/oauth/accessToken", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	}
	wantError(t, wrong("999", secretA), 400, oauthErr("invalid_client", "invalid client_id"))
	wantError(t, wrong(chanA, secretB), 400, oauthErr("invalid_client", "invalid client_secret"))
	e.srv.RegisterKey("3000000003", "kid-c", &keyA.PublicKey) // a channel without a secret
	wantError(t, wrong("3000000003", "x"), 400, oauthErr("invalid_client", "invalid client_id"))

	verify := func(tok string) reply { return e.post("/v2/oauth/verify", url.Values{"access_token": {tok}}) }
	m = verify(tok).json(t)
	if m["client_id"] != chanA || num(t, m["expires_in"]) != 2592000 {
		t.Errorf("verify = %v", m)
	}
	v21, _ := e.issueV21(3600)
	wantError(t, verify(v21), 400, oauthErr("invalid_request", "invalid access token"))

	// revoke short-lived acts on short-lived tokens only, and never errs.
	if r := e.post("/v2/oauth/revoke", url.Values{"access_token": {v21}}); r.status != 200 || !e.srv.IsValid(v21) {
		t.Errorf("revoke short-lived of a v2.1 token: %d, still valid %t", r.status, e.srv.IsValid(v21))
	}
	if r := e.post("/v2/oauth/revoke", url.Values{"access_token": {tok}}); r.status != 200 || r.body != "" {
		t.Errorf("revoke: %d %q", r.status, r.shown())
	}
	if e.srv.IsValid(tok) {
		t.Error("IsValid(revoked short-lived) = true")
	}
	wantError(t, verify(tok), 400, oauthErr("invalid_request", "invalid access token"))
	if r := e.post("/v2/oauth/revoke", url.Values{"access_token": {"whatever"}}); r.status != 200 {
		t.Errorf("revoke unknown: %d", r.status)
	}

	tok2 := e.issueShort(chanA, secretA)
	e.clock.Advance(30 * 24 * time.Hour)
	wantError(t, verify(tok2), 400, oauthErr("invalid_request", "The access token expired"))
}

func TestShortLivedEvictsOldest(t *testing.T) {
	e := newEnv(t)
	var toks []string
	for range 30 {
		toks = append(toks, e.issueShort(chanA, secretA))
		e.clock.Advance(time.Second)
	}
	e.srv.RevokeKeyID(chanA, "") // no effect on short-lived tokens
	toks = append(toks, e.issueShort(chanA, secretA))
	if e.srv.IsValid(toks[0]) {
		t.Error("the oldest token survived the 31st issue")
	}
	for _, tok := range toks[1:] {
		if !e.srv.IsValid(tok) {
			t.Fatal("a newer token was revoked")
		}
	}
	// A revoked token does not count: with 29 valid, the next issue must
	// not evict anything.
	e.post("/v2/oauth/revoke", url.Values{"access_token": {toks[5]}})
	toks = append(toks, e.issueShort(chanA, secretA))
	if !e.srv.IsValid(toks[1]) {
		t.Error("evicted although only 29 were valid")
	}
	ts := e.srv.Tokens(chanA)
	if len(ts) != 32 || !ts[0].Revoked || ts[0].Kind != linefake.KindShortLived {
		t.Errorf("Tokens: %d, first %v", len(ts), ts[0])
	}
	if e.srv.MaxValid(chanA) != 0 {
		t.Error("MaxValid counts short-lived tokens")
	}
}

func TestStateless(t *testing.T) {
	e := newEnv(t)
	bySecret := url.Values{"grant_type": {"client_credentials"}, "client_id": {chanB}, "client_secret": {secretB}}
	for name, form := range map[string]url.Values{
		"assertion": issueForm(e.assertion(func(s *jwtSpec) { delete(s.claims, "token_exp") })),
		"secret":    bySecret,
	} {
		r := e.post("/oauth2/v3/token", form)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", name, r.status, r.shown())
		}
		m := r.json(t)
		tok := m["access_token"].(string)
		if !jwsShape.MatchString(tok) || num(t, m["expires_in"]) != 900 || m["token_type"] != "Bearer" || m["key_id"] != nil {
			t.Errorf("%s: issue = %v", name, m)
		}
		if !e.srv.IsValid(tok) {
			t.Errorf("%s: not valid", name)
		}
	}
	wantError(t, e.post("/oauth2/v3/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {chanB}, "client_secret": {secretA}}),
		400, oauthErr("invalid_client", "invalid client_secret"))
	wantError(t, e.post("/oauth2/v3/token", url.Values{"grant_type": {"client_credentials"}, "client_assertion": {e.assertion(nil)}}),
		400, oauthErr("invalid_request", "required parameter missing: client_assertion_type"))

	// Unlimited, and not counted against v2.1.
	var toks []string
	for range 40 {
		r := e.post("/oauth2/v3/token", bySecret)
		if r.status != 200 {
			t.Fatalf("stateless issue refused: %d %s", r.status, r.shown())
		}
		toks = append(toks, r.json(t)["access_token"].(string))
	}
	if n := len(e.srv.Tokens(chanB)); n == 0 || n > 20 {
		t.Errorf("Tokens(B) holds %d stateless tokens; want a small bounded number", n)
	}
	if !e.srv.IsValid(toks[0]) {
		t.Error("a forgotten stateless token is no longer valid")
	}
	m := e.get("/oauth2/v2.1/verify", url.Values{"access_token": {toks[0]}}).json(t)
	if m["client_id"] != chanB || num(t, m["expires_in"]) != 900 {
		t.Errorf("verify stateless = %v", m)
	}
	wantError(t, e.post("/v2/oauth/verify", url.Values{"access_token": {toks[0]}}), 400,
		oauthErr("invalid_request", "invalid access token"))

	// Cannot be revoked.
	e.post("/oauth2/v2.1/revoke", url.Values{"client_id": {chanB}, "client_secret": {secretB}, "access_token": {toks[0]}})
	e.post("/v2/oauth/revoke", url.Values{"access_token": {toks[0]}})
	if !e.srv.IsValid(toks[0]) {
		t.Error("a stateless token was revoked")
	}

	// A forged one is not valid.
	forged := toks[0][:len(toks[0])-2] + "AA"
	if forged != toks[0] && e.srv.IsValid(forged) {
		t.Error("IsValid(forged stateless) = true")
	}

	e.clock.Advance(15 * time.Minute)
	if e.srv.IsValid(toks[39]) {
		t.Error("stateless token valid after 15 minutes")
	}
	wantError(t, e.get("/oauth2/v2.1/verify", url.Values{"access_token": {toks[39]}}), 400,
		oauthErr("invalid_request", "The access token expired"))
}

func TestRequestLog(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.issueV21(3600)
	e.get("/oauth2/v2.1/verify", url.Values{"access_token": {tok}})
	e.post("/v2/oauth/accessToken", url.Values{"grant_type": {"client_credentials"}, "client_id": {chanA}, "client_secret": {"bad-secret-value"}})

	reqs := e.srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("Requests = %d, want 3", len(reqs))
	}
	want := []struct {
		endpoint, method, path string
		status                 int
		param                  string
	}{
		{linefake.EndpointIssueV21, "POST", "/oauth2/v2.1/token", 200, "client_assertion"},
		{linefake.EndpointVerifyV21, "GET", "/oauth2/v2.1/verify", 200, "access_token"},
		{linefake.EndpointIssueShort, "POST", "/v2/oauth/accessToken", 400, "client_secret"},
	}
	for i, w := range want {
		r := reqs[i]
		if r.Endpoint != w.endpoint || r.Method != w.method || r.Path != w.path || r.Status != w.status ||
			r.Form.Get(w.param) == "" || !r.Time.Equal(e.clock.Now()) {
			t.Errorf("request %d = %+v, want %+v", i, r, w)
		}
	}
	if reqs[1].Form.Get("access_token") != tok {
		t.Error("log does not keep the verify query")
	}

	// Requests returns a copy.
	reqs[0].Form.Set("client_assertion", "changed")
	if e.srv.Requests()[0].Form.Get("client_assertion") == "changed" {
		t.Error("Requests shares its form maps")
	}

	// Nothing secret is printed.
	for _, s := range []string{
		fmt.Sprint(reqs), fmt.Sprintf("%v %+v %#v %s %q", reqs[2], reqs[2], reqs[2], reqs[2], reqs[2]),
		fmt.Sprintf("%v %+v %#v %s", e.srv.Tokens(chanA), e.srv.Tokens(chanA)[0], e.srv.Tokens(chanA)[0], e.srv.Tokens(chanA)[0]),
	} {
		if strings.Contains(s, tok) || strings.Contains(s, "bad-secret-value") || strings.Contains(s, reqs[0].Form.Get("grant_type")) {
			t.Errorf("formatted output leaks a value: %s", s)
		}
	}

	if e.srv.Count(linefake.EndpointIssueV21) != 1 || e.srv.Count(linefake.EndpointVerifyV21) != 1 || e.srv.Count(linefake.EndpointRevokeV21) != 0 {
		t.Error("Count disagrees with the log")
	}
	e.srv.ResetRequests()
	if len(e.srv.Requests()) != 0 || e.srv.Count(linefake.EndpointIssueV21) != 0 {
		t.Error("ResetRequests left entries")
	}
}

func TestManyChannelsConcurrently(t *testing.T) {
	e := newEnv(t)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("2%09d", i)
		e.srv.AddChannel(ids[i], "s"+ids[i])
		e.srv.RegisterKey(ids[i], "shared-kid", &keyA.PublicKey) // tests may reuse one kid
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		a := linefake.Assertion(id, "shared-kid", keyA, e.clock.Now(), time.Hour)
		wg.Go(func() {
			for _, path := range []string{"/oauth2/v2.1/token", "/oauth2/v2.1/token", "/oauth2/v3/token"} {
				resp, err := e.ts.Client().PostForm(e.ts.URL+path, issueForm(a))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s %s: %d", id, path, resp.StatusCode)
				}
			}
			resp, err := e.ts.Client().PostForm(e.ts.URL+"/v2/oauth/accessToken",
				url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {"s" + id}})
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if got := len(e.srv.ValidKeyIDs(id)); got != 2 {
			t.Errorf("channel %s: %d valid key IDs, want 2", id, got)
		}
		if got := len(e.srv.Tokens(id)); got != 4 {
			t.Errorf("channel %s: %d tokens, want 4", id, got)
		}
	}
	if got := e.srv.Count(linefake.EndpointIssueV21); got != 2*n {
		t.Errorf("Count = %d", got)
	}
}

func TestAssertionHelper(t *testing.T) {
	e := newEnv(t)
	a := linefake.Assertion(chanA, kidA, keyA, e.clock.Now(), 2*time.Hour)
	r := e.post("/oauth2/v2.1/token", issueForm(a))
	if r.status != 200 || num(t, r.json(t)["expires_in"]) != 7200 {
		t.Fatalf("issue with helper assertion: %d %s", r.status, r.shown())
	}
	a = linefake.Assertion(chanA, kidA, keyA, e.clock.Now(), 0) // no token_exp: for listings, not issues
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(a)), 400, oauthErr("invalid_request", "Invalid token_exp"))
	if r := e.get("/oauth2/v2.1/tokens/kid", url.Values{"client_assertion_type": {assertionType}, "client_assertion": {a}}); r.status != 200 {
		t.Errorf("listing without token_exp: %s", r.shown())
	}
	if got := linefake.Assertion(chanA, kidA, nil, e.clock.Now(), 0); got != "" {
		t.Error("Assertion with a nil key returned a token")
	}
	e.clock.Advance(linefake.AssertionLifetime)
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(a)), 400, oauthErr("invalid_client", "Invalid exp"))
}

func TestRealClockDefault(t *testing.T) {
	srv := linefake.New(linefake.Options{})
	srv.RegisterKey(chanA, kidA, &keyA.PublicKey)
	e := &env{t: t, srv: srv}
	e.ts = newServer(t, srv)
	a := linefake.Assertion(chanA, kidA, keyA, time.Now(), time.Minute)
	if r := e.post("/oauth2/v2.1/token", issueForm(a)); r.status != 200 {
		t.Fatalf("real clock: %d %s", r.status, r.shown())
	}
}

func TestRegisterKeyReplacesAndAdds(t *testing.T) {
	e := newEnv(t)
	// The console replaced channel A's key under the same kid.
	e.srv.RegisterKey(chanA, kidA, &keyB.PublicKey)
	wantError(t, e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil))), 400, oauthErr("invalid_client", "Invalid signature"))
	if r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(func(s *jwtSpec) { s.key = keyB }))); r.status != 200 {
		t.Fatalf("new key refused: %d %s", r.status, r.shown())
	}
	// A second key for the same channel works beside the first.
	e.srv.RegisterKey(chanA, "kid-a2", &keyA.PublicKey)
	if r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(func(s *jwtSpec) { s.header["kid"] = "kid-a2" }))); r.status != 200 {
		t.Fatalf("second key refused: %d %s", r.status, r.shown())
	}
	// AddChannel again replaces the secret.
	e.srv.AddChannel(chanA, "rotated")
	wantError(t, e.post("/v2/oauth/accessToken", url.Values{"grant_type": {"client_credentials"}, "client_id": {chanA}, "client_secret": {secretA}}),
		400, oauthErr("invalid_client", "invalid client_secret"))
	if got := e.srv.MaxValid("unknown"); got != 0 {
		t.Errorf("MaxValid(unknown) = %d", got)
	}
	if got := e.srv.Tokens("unknown"); got != nil {
		t.Errorf("Tokens(unknown) = %v", got)
	}
}

func TestMalformedQuery(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/oauth2/v2.1/verify?access_token=%ZZ", nil)
	wantError(t, e.do(req), 400, oauthErr("invalid_request", "malformed query string"))
}

// TestRateLimits: per channel and endpoint, LINE answers 429 beyond 370
// short-lived issues, or 2,000 calls to another endpoint, in one second;
// the next second starts afresh, and another channel is not held back.
func TestRateLimits(t *testing.T) {
	e := newEnv(t)
	short := func(id, secret string) reply {
		return e.post("/v2/oauth/accessToken", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	}
	for i := range linefake.RateLimitIssueShort {
		if r := short(chanA, secretA); r.status != 200 {
			t.Fatalf("short-lived issue %d: %s", i+1, r.shown())
		}
	}
	wantError(t, short(chanA, secretA), 429, message("The API rate limit has been exceeded. Try again later."))
	if r := short(chanB, secretB); r.status != 200 {
		t.Errorf("channel B held back by A's calls: %s", r.shown())
	}
	e.clock.Advance(time.Second)
	if r := short(chanA, secretA); r.status != 200 {
		t.Errorf("the next second: %s", r.shown())
	}

	list := url.Values{"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(nil)}}
	for i := range linefake.RateLimit {
		if r := e.get("/oauth2/v2.1/tokens/kid", list); r.status != 200 {
			t.Fatalf("key-ID listing %d: %s", i+1, r.shown())
		}
	}
	wantError(t, e.get("/oauth2/v2.1/tokens/kid", list), 429, message("The API rate limit has been exceeded. Try again later."))
	if r := e.post("/oauth2/v2.1/token", issueForm(e.assertion(nil))); r.status != 200 {
		t.Errorf("issue v2.1 held back by the listings' limit: %s", r.shown())
	}
}

// TestRateLimitEveryChannelEndpoint: issue v2.1 (past its 30-token limit,
// the rate limit still counts), stateless issue and revoke v2.1 are held
// to 2,000 calls a second each as well.
func TestRateLimitEveryChannelEndpoint(t *testing.T) {
	e := newEnv(t)
	a := e.assertion(nil)
	revoke := url.Values{"client_id": {chanA}, "client_secret": {secretA}, "access_token": {"a.b.c"}}
	for _, ep := range []struct {
		name string
		send func() reply
	}{
		{"issue_v2.1", func() reply { return e.post("/oauth2/v2.1/token", issueForm(a)) }},
		{"issue_stateless", func() reply { return e.post("/oauth2/v3/token", issueForm(a)) }},
		{"revoke_v2.1", func() reply { return e.post("/oauth2/v2.1/revoke", revoke) }},
	} {
		for i := range linefake.RateLimit {
			if r := ep.send(); r.status == 429 {
				t.Fatalf("%s: call %d answered 429", ep.name, i+1)
			}
		}
		wantError(t, ep.send(), 429, message("The API rate limit has been exceeded. Try again later."))
	}
}
