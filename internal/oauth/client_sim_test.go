package oauth

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/tokend/tokend/internal/linefake"
)

// The client against the LINE simulator (internal/linefake, written
// independently from the same facts): every operation, LINE's documented
// errors and the simulator's faults, asserting exact APIError fields and
// retryability.

const (
	simChannel = "1234567890"
	simSecret  = "sim-channel-secret-0123456789ab"
	simKID     = "sim-kid-A"
)

type simEnv struct {
	sim    *linefake.Server
	clock  *clockwork.FakeClock
	client *Client
	signer *Signer
}

func newSim(t *testing.T, o Options) *simEnv {
	t.Helper()
	k := testKeys(t)
	clock := clockwork.NewFakeClockAt(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	sim := linefake.New(linefake.Options{Clock: clock})
	sim.AddChannel(simChannel, simSecret)
	sim.RegisterKey(simChannel, simKID, &k.rsaA.PublicKey)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	o.BaseURL = srv.URL
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return &simEnv{sim: sim, clock: clock, client: c,
		signer: &Signer{ChannelID: simChannel, KeyID: simKID, Key: k.rsaA}}
}

func (e *simEnv) assertion(t *testing.T, ttl time.Duration) string {
	t.Helper()
	a, err := e.signer.Sign(e.clock.Now(), ttl)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return a
}

// wantAPIError checks err is exactly want, and its classification.
func wantAPIError(t *testing.T, err error, want APIError, retryable bool, cause string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v (%T), want *APIError %+v", err, err, want)
	}
	if *ae != want {
		t.Errorf("APIError\n got %#v\nwant %#v", *ae, want)
	}
	if IsRetryable(err) != retryable {
		t.Errorf("IsRetryable(%v) = %v, want %v", err, !retryable, retryable)
	}
	if Cause(err) != cause {
		t.Errorf("Cause(%v) = %q, want %q", err, Cause(err), cause)
	}
}

func TestSimV21Lifecycle(t *testing.T) {
	t.Parallel()
	e := newSim(t, Options{})
	ctx := context.Background()

	tok, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, MaxTokenTTL))
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 2592000 || tok.KeyID == "" || tok.AccessToken == "" {
		t.Fatalf("issued %v", tok)
	}
	if !e.sim.IsValid(tok.AccessToken) {
		t.Fatal("simulator does not know the issued token")
	}

	short, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, time.Hour))
	if err != nil {
		t.Fatalf("issue 1h: %v", err)
	}
	if short.ExpiresIn != 3600 {
		t.Errorf("token_exp 1h gave expires_in %d", short.ExpiresIn)
	}

	kids, err := e.client.GetChannelAccessTokenKeyIDsV2_1(ctx, e.assertion(t, 0))
	if err != nil {
		t.Fatalf("key IDs: %v", err)
	}
	if want := []string{tok.KeyID, short.KeyID}; !slices.Equal(kids, want) {
		t.Errorf("key IDs %v, want %v", kids, want)
	}

	e.clock.Advance(10 * time.Second)
	info, err := e.client.VerifyChannelAccessTokenV2_1(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if info.ClientID != simChannel || info.ExpiresIn != 2592000-10 {
		t.Errorf("verify: %+v", *info)
	}

	if err := e.client.RevokeChannelAccessTokenV2_1(ctx, simChannel, simSecret, tok.AccessToken); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if e.sim.IsValid(tok.AccessToken) {
		t.Fatal("token still valid after revoke")
	}
	// Revoking an already revoked token is not an error.
	if err := e.client.RevokeChannelAccessTokenV2_1(ctx, simChannel, simSecret, tok.AccessToken); err != nil {
		t.Fatalf("revoke again: %v", err)
	}
	kids, err = e.client.GetChannelAccessTokenKeyIDsV2_1(ctx, e.assertion(t, 0))
	if err != nil || !slices.Equal(kids, []string{short.KeyID}) {
		t.Errorf("key IDs after revoke: %v, %v", kids, err)
	}
	_, err = e.client.VerifyChannelAccessTokenV2_1(ctx, tok.AccessToken)
	wantAPIError(t, err, APIError{Endpoint: "GET /oauth2/v2.1/verify", StatusCode: 400, Code: "invalid_request", Description: "invalid access token"}, false, "http_400")

	// Expired: verify says so, revoke still succeeds, key IDs drop it.
	e.clock.Advance(time.Hour)
	_, err = e.client.VerifyChannelAccessTokenV2_1(ctx, short.AccessToken)
	wantAPIError(t, err, APIError{Endpoint: "GET /oauth2/v2.1/verify", StatusCode: 400, Code: "invalid_request", Description: "The access token expired"}, false, "http_400")
	if err := e.client.RevokeChannelAccessTokenV2_1(ctx, simChannel, simSecret, short.AccessToken); err != nil {
		t.Fatalf("revoke expired: %v", err)
	}
	kids, err = e.client.GetChannelAccessTokenKeyIDsV2_1(ctx, e.assertion(t, 0))
	if err != nil || kids == nil || len(kids) != 0 {
		t.Errorf("key IDs after expiry: %#v, %v (want empty, non-nil)", kids, err)
	}
}

func TestSimTokenLimit(t *testing.T) {
	t.Parallel()
	e := newSim(t, Options{})
	ctx := context.Background()
	for i := range 30 {
		if _, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, 24*time.Hour)); err != nil {
			t.Fatalf("issue %d: %v", i+1, err)
		}
	}
	_, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, 24*time.Hour))
	wantAPIError(t, err, APIError{Endpoint: "POST /oauth2/v2.1/token", StatusCode: 400,
		Message: "The maximum number of access tokens has already been issued"}, false, "token_limit")
	if !errors.Is(err, ErrTokenLimit) {
		t.Error("not ErrTokenLimit")
	}
	if got := e.sim.MaxValid(simChannel); got != 30 {
		t.Errorf("MaxValid %d", got)
	}
	// Once one expires, issuing works again.
	e.clock.Advance(24*time.Hour + time.Second)
	if _, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, time.Hour)); err != nil {
		t.Fatalf("issue after expiry: %v", err)
	}
}

func TestSimAssertionErrors(t *testing.T) {
	t.Parallel()
	e := newSim(t, Options{})
	k := testKeys(t)
	// A second channel, with its own key.
	e.sim.AddChannel("2222222222", "other-secret-0123456789abcdef")
	e.sim.RegisterKey("2222222222", "sim-kid-B", &k.rsaB.PublicKey)
	ctx := context.Background()

	sign := func(s Signer, now time.Time, ttl time.Duration) string {
		a, err := s.Sign(now, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	now := e.clock.Now()
	unknownKID := Signer{ChannelID: simChannel, KeyID: "no-such-kid", Key: k.rsaA}
	issMismatch := Signer{ChannelID: "2222222222", KeyID: simKID, Key: k.rsaA} // simKID belongs to simChannel
	wrongKey := Signer{ChannelID: simChannel, KeyID: simKID, Key: k.rsaB}
	good := *e.signer

	notFound := func(ep string) APIError {
		return APIError{Endpoint: ep, StatusCode: 404, Message: "Cannot find channel key that satisfies the conditions"}
	}
	invalidClient := func(ep, desc string) APIError {
		return APIError{Endpoint: ep, StatusCode: 400, Code: "invalid_client", Description: desc}
	}
	const (
		epIssue     = "POST /oauth2/v2.1/token"
		epKids      = "GET /oauth2/v2.1/tokens/kid"
		epStateless = "POST /oauth2/v3/token"
	)
	issue := func(a string) error { _, err := e.client.IssueChannelAccessTokenV2_1(ctx, a); return err }
	kids := func(a string) error { _, err := e.client.GetChannelAccessTokenKeyIDsV2_1(ctx, a); return err }
	stateless := func(a string) error { _, err := e.client.IssueStatelessTokenByAssertion(ctx, a); return err }

	tests := []struct {
		name  string
		call  func(string) error
		a     string
		want  APIError
		cause string
	}{
		{"issue: unknown kid", issue, sign(unknownKID, now, time.Hour), notFound(epIssue), "key_not_found"},
		{"key IDs: unknown kid", kids, sign(unknownKID, now, 0), notFound(epKids), "key_not_found"},
		{"stateless: unknown kid", stateless, sign(unknownKID, now, 0), notFound(epStateless), "key_not_found"},
		{"issue: iss mismatch", issue, sign(issMismatch, now, time.Hour), invalidClient(epIssue, "iss and clientId of key do not match"), "invalid_client"},
		{"key IDs: iss mismatch", kids, sign(issMismatch, now, 0), invalidClient(epKids, "iss and clientId of key do not match"), "invalid_client"},
		{"issue: signed by another key", issue, sign(wrongKey, now, time.Hour), invalidClient(epIssue, "Invalid signature"), "invalid_client"},
		{"key IDs: expired assertion", kids, sign(good, now.Add(-time.Hour), 0), invalidClient(epKids, "Invalid exp"), "invalid_client"},
		{"key IDs: exp too far ahead", kids, sign(Signer{ChannelID: simChannel, KeyID: simKID, Key: k.rsaA, Lifetime: MaxAssertionLifetime}, now.Add(10*time.Minute), 0), invalidClient(epKids, "Invalid exp"), "invalid_client"},
		{"issue: expired assertion", issue, sign(good, now.Add(-time.Hour), time.Hour), invalidClient(epIssue, "Invalid exp"), "invalid_client"},
		{"issue: not a JWT", issue, "not-a-jwt", APIError{Endpoint: epIssue, StatusCode: 400, Code: "invalid_request", Description: "Invalid client_assertion: not a JWT"}, "http_400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(tt.a)
			wantAPIError(t, err, tt.want, false, tt.cause)
		})
	}
	if n := len(e.sim.Tokens(simChannel)) + len(e.sim.Tokens("2222222222")); n != 0 {
		t.Errorf("%d tokens issued by refused requests", n)
	}
}

func TestSimRevokeV21Errors(t *testing.T) {
	t.Parallel()
	e := newSim(t, Options{})
	ctx := context.Background()
	tok, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	const ep = "POST /oauth2/v2.1/revoke"

	err = e.client.RevokeChannelAccessTokenV2_1(ctx, simChannel, simSecret, "not-a-jws")
	wantAPIError(t, err, APIError{Endpoint: ep, StatusCode: 400, Code: "invalid_request", Description: "The access token not JWS"}, false, "http_400")

	err = e.client.RevokeChannelAccessTokenV2_1(ctx, simChannel, "wrong-secret", tok.AccessToken)
	wantAPIError(t, err, APIError{Endpoint: ep, StatusCode: 400, Code: "invalid_client", Description: "invalid client_secret"}, false, "invalid_client")
	if !errors.Is(err, ErrInvalidClient) {
		t.Error("wrong secret is not ErrInvalidClient")
	}
	assertNoSecrets(t, err.Error())
	if !e.sim.IsValid(tok.AccessToken) {
		t.Fatal("refused revoke revoked the token")
	}
}

func TestSimShortLived(t *testing.T) {
	t.Parallel()
	e := newSim(t, Options{})
	ctx := context.Background()
	tok, err := e.client.IssueAccessToken(ctx, simChannel, simSecret)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if tok.ExpiresIn != 2592000 || tok.TokenType != "Bearer" || tok.KeyID != "" {
		t.Errorf("issued %v", tok)
	}
	info, err := e.client.VerifyAccessToken(ctx, tok.AccessToken)
	if err != nil || info.ClientID != simChannel || info.ExpiresIn != 2592000 {
		t.Fatalf("verify: %+v, %v", info, err)
	}
	if err := e.client.RevokeAccessToken(ctx, tok.AccessToken); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if e.sim.IsValid(tok.AccessToken) {
		t.Fatal("short-lived token valid after revoke")
	}
	_, err = e.client.VerifyAccessToken(ctx, tok.AccessToken)
	wantAPIError(t, err, APIError{Endpoint: "POST /v2/oauth/verify", StatusCode: 400, Code: "invalid_request", Description: "invalid access token"}, false, "http_400")

	const ep = "POST /v2/oauth/accessToken"
	_, err = e.client.IssueAccessToken(ctx, simChannel, "wrong-secret")
	wantAPIError(t, err, APIError{Endpoint: ep, StatusCode: 400, Code: "invalid_client", Description: "invalid client_secret"}, false, "invalid_client")
	_, err = e.client.IssueAccessToken(ctx, "999", simSecret)
	wantAPIError(t, err, APIError{Endpoint: ep, StatusCode: 400, Code: "invalid_client", Description: "invalid client_id"}, false, "invalid_client")
}

func TestSimStateless(t *testing.T) {
	t.Parallel()
	e := newSim(t, Options{})
	ctx := context.Background()
	byJWT, err := e.client.IssueStatelessTokenByAssertion(ctx, e.assertion(t, 0))
	if err != nil {
		t.Fatalf("by assertion: %v", err)
	}
	bySecret, err := e.client.IssueStatelessTokenBySecret(ctx, simChannel, simSecret)
	if err != nil {
		t.Fatalf("by secret: %v", err)
	}
	for _, tok := range []*Token{byJWT, bySecret} {
		if tok.ExpiresIn != 900 || tok.TokenType != "Bearer" || tok.KeyID != "" {
			t.Errorf("issued %v", tok)
		}
		info, err := e.client.VerifyChannelAccessTokenV2_1(ctx, tok.AccessToken)
		if err != nil || info.ClientID != simChannel || info.ExpiresIn != 900 {
			t.Errorf("verify stateless: %+v, %v", info, err)
		}
	}
	_, err = e.client.IssueStatelessTokenBySecret(ctx, simChannel, "wrong-secret")
	wantAPIError(t, err, APIError{Endpoint: "POST /oauth2/v3/token", StatusCode: 400, Code: "invalid_client", Description: "invalid client_secret"}, false, "invalid_client")
}

func TestSimFaults(t *testing.T) {
	t.Parallel()
	const (
		epIssue = "POST /oauth2/v2.1/token"
		epShort = "POST /v2/oauth/accessToken"
	)
	t.Run("429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		e.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Status: 429, RetryAfter: "7", Times: 1})
		_, err := e.client.IssueChannelAccessTokenV2_1(context.Background(), e.assertion(t, time.Hour))
		wantAPIError(t, err, APIError{Endpoint: epIssue, StatusCode: 429,
			Message: "The API rate limit has been exceeded. Try again later.", RetryAfter: 7 * time.Second}, true, "http_429")
		if d, ok := RetryAfter(err); !ok || d != 7*time.Second {
			t.Errorf("RetryAfter = %v, %v", d, ok)
		}
		// Times: 1 - the retry succeeds.
		if _, err := e.client.IssueChannelAccessTokenV2_1(context.Background(), e.assertion(t, time.Hour)); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})
	t.Run("429 with an HTTP-date Retry-After", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		// Relative to the real clock: the client parses it against time.Now.
		e.sim.SetFault(linefake.EndpointIssueShort, linefake.Fault{Status: 429, RetryAfter: time.Now().Add(time.Hour).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")})
		_, err := e.client.IssueAccessToken(context.Background(), simChannel, simSecret)
		d, ok := RetryAfter(err)
		if !ok || d < 58*time.Minute || d > time.Hour {
			t.Fatalf("RetryAfter = %v, %v (err %v)", d, ok, err)
		}
	})
	t.Run("503 HTML", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		e.sim.SetFault(linefake.EndpointIssueShort, linefake.Fault{Status: 503, Body: "<html>down</html>", ContentType: "text/html"})
		_, err := e.client.IssueAccessToken(context.Background(), simChannel, simSecret)
		wantAPIError(t, err, APIError{Endpoint: epShort, StatusCode: 503}, true, "http_503")
	})
	t.Run("500 LINE-shaped", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		e.sim.SetFault(linefake.EndpointIssueShort, linefake.Fault{Status: 500})
		_, err := e.client.IssueAccessToken(context.Background(), simChannel, simSecret)
		wantAPIError(t, err, APIError{Endpoint: epShort, StatusCode: 500, Message: "Internal Server Error"}, true, "http_500")
	})
	t.Run("malformed 200", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		e.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Malformed: true})
		_, err := e.client.IssueChannelAccessTokenV2_1(context.Background(), e.assertion(t, time.Hour))
		if Cause(err) != "malformed" || !IsRetryable(err) {
			t.Fatalf("got %v", err)
		}
		assertNoSecrets(t, err.Error())
	})
	t.Run("oversized 200", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{MaxBodyBytes: 4096})
		e.sim.SetFault(linefake.EndpointIssueShort, linefake.Fault{BodySize: 4097})
		_, err := e.client.IssueAccessToken(context.Background(), simChannel, simSecret)
		if Cause(err) != "too_large" || !IsRetryable(err) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("dropped connection", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		e.sim.SetFault(linefake.EndpointVerifyV21, linefake.Fault{Drop: true})
		_, err := e.client.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
		if Cause(err) != "network" || !IsRetryable(err) {
			t.Fatalf("got %v", err)
		}
		assertNoSecrets(t, err.Error())
	})
	t.Run("slow answer hits the per-call timeout", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{Timeout: 50 * time.Millisecond})
		e.sim.SetFault(linefake.EndpointKeyIDsV21, linefake.Fault{Delay: time.Minute})
		_, err := e.client.GetChannelAccessTokenKeyIDsV2_1(context.Background(), e.assertion(t, 0))
		var re *RequestError
		if !errors.As(err, &re) || re.Kind != KindTimeout || !IsRetryable(err) {
			t.Fatalf("got %v", err)
		}
		if want := "GET /oauth2/v2.1/tokens/kid: timeout: no response within 50ms: context deadline exceeded"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	})
	t.Run("caller cancels during a slow answer", func(t *testing.T) {
		t.Parallel()
		e := newSim(t, Options{})
		e.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Delay: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := e.client.IssueChannelAccessTokenV2_1(ctx, e.assertion(t, time.Hour))
		if Cause(err) != "canceled" || IsRetryable(err) {
			t.Fatalf("got %v", err)
		}
	})
}
