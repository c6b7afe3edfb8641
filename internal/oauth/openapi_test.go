package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// specServer serves okResponse after validating every request against
// LINE's OpenAPI description (testdata/channel-access-token.yml); failures
// are collected for the test to report.
type specServer struct {
	router routers.Router
	mu     sync.Mutex
	errs   []string
	seen   map[string]int // "METHOD /path" -> requests
}

func (s *specServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint := r.Method + " " + r.URL.Path
	s.mu.Lock()
	s.seen[endpoint]++
	s.mu.Unlock()
	fail := func(msg string) {
		s.mu.Lock()
		s.errs = append(s.errs, endpoint+": "+msg)
		s.mu.Unlock()
		http.Error(w, `{"message":"request does not match the spec"}`, http.StatusBadRequest)
	}
	// A server-side URL has no scheme or host; the router matches the
	// spec's server URL against them.
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = "http", r.Host
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		fail("no route in the spec: " + err.Error())
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			// No endpoint takes an Authorization header; the spec declares none.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		fail(err.Error())
		return
	}
	if ct := r.Header.Get("Content-Type"); r.Method == http.MethodPost && ct != "application/x-www-form-urlencoded" {
		fail("Content-Type " + ct)
		return
	}
	okResponse(w, r)
}

// loadSpec loads the spec and points its server at base.
func loadSpec(t *testing.T, base string) routers.Router {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("testdata/channel-access-token.yml")
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	// POST /oauth2/v3/token's body is a bare oneOf of two object schemas;
	// kin-openapi decodes a form body only when the schema says type
	// object, which both alternatives are. Validation still applies oneOf.
	stateless := doc.Paths.Value("/oauth2/v3/token")
	if stateless == nil || stateless.Post == nil {
		t.Fatal("spec has no POST /oauth2/v3/token")
	}
	media := stateless.Post.RequestBody.Value.Content.Get("application/x-www-form-urlencoded")
	if media == nil || len(media.Schema.Value.OneOf) != 2 {
		t.Fatal("spec's stateless request body changed shape; revisit the patch in loadSpec")
	}
	media.Schema.Value.Type = &openapi3.Types{openapi3.TypeObject}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("spec does not validate: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return router
}

// TestClientRequestsMatchOpenAPI sends every client operation to a server
// that checks each request against LINE's own OpenAPI description: a
// misnamed form field, a parameter in the wrong place or a wrong content
// type fails here.
func TestClientRequestsMatchOpenAPI(t *testing.T) {
	t.Parallel()
	spec := &specServer{seen: map[string]int{}}
	srv := httptest.NewServer(spec)
	t.Cleanup(srv.Close)
	spec.router = loadSpec(t, srv.URL)

	c, err := NewClient(Options{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range operations() {
		if _, err := op.call(context.Background(), c); err != nil {
			t.Errorf("%s: %v", op.name, err)
		}
	}
	spec.mu.Lock()
	defer spec.mu.Unlock()
	for _, e := range spec.errs {
		t.Errorf("request does not match the spec: %s", e)
	}
	// Every operation in the spec was exercised.
	for _, op := range operations() {
		if spec.seen[op.endpoint] == 0 {
			t.Errorf("%s never reached the server", op.endpoint)
		}
	}
	if len(spec.seen) != 8 {
		t.Errorf("client reached %d distinct endpoints, the spec has 8: %v", len(spec.seen), spec.seen)
	}
}

// TestOpenAPIValidatorCatchesMistakes guards the test above: requests with
// a misnamed field, a GET parameter sent as a form, or a wrong enum value
// must be refused by the validating server.
func TestOpenAPIValidatorCatchesMistakes(t *testing.T) {
	t.Parallel()
	spec := &specServer{seen: map[string]int{}}
	srv := httptest.NewServer(spec)
	t.Cleanup(srv.Close)
	spec.router = loadSpec(t, srv.URL)
	tests := []struct {
		name, method, path, contentType, body string
		wantStatus                            int
	}{
		// Controls: correct requests pass, so the refusals below are
		// validation failures and not a broken router.
		{"good issue", "POST", "/oauth2/v2.1/token", "application/x-www-form-urlencoded",
			"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=x", 200},
		{"good stateless by secret", "POST", "/oauth2/v3/token", "application/x-www-form-urlencoded",
			"grant_type=client_credentials&client_id=1&client_secret=s", 200},
		{"good key IDs", "GET", "/oauth2/v2.1/tokens/kid?client_assertion_type=x&client_assertion=y", "", "", 200},
		{"misnamed client_assertion", "POST", "/oauth2/v2.1/token", "application/x-www-form-urlencoded",
			"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&assertion=x", 400},
		{"misnamed client_secret", "POST", "/oauth2/v2.1/revoke", "application/x-www-form-urlencoded",
			"client_id=1&secret=s&access_token=t", 400},
		{"key IDs params as a form", "GET", "/oauth2/v2.1/tokens/kid", "application/x-www-form-urlencoded",
			"client_assertion_type=x&client_assertion=y", 400},
		{"JSON body", "POST", "/v2/oauth/accessToken", "application/json",
			`{"grant_type":"client_credentials","client_id":"1","client_secret":"s"}`, 400},
		{"stateless wrong grant_type", "POST", "/oauth2/v3/token", "application/x-www-form-urlencoded",
			"grant_type=password&client_id=1&client_secret=s", 400},
		{"stateless with neither credential", "POST", "/oauth2/v3/token", "application/x-www-form-urlencoded",
			"grant_type=client_credentials&client_id=1", 400},
	}
	for _, b := range tests {
		req, err := http.NewRequest(b.method, srv.URL+b.path, strings.NewReader(b.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", b.contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != b.wantStatus {
			t.Errorf("%s: validator answered %d, want %d", b.name, resp.StatusCode, b.wantStatus)
		}
	}
	spec.mu.Lock()
	defer spec.mu.Unlock()
	for _, e := range spec.errs {
		if strings.Contains(e, "no route") {
			t.Errorf("refused for the wrong reason: %s", e)
		}
	}
}
