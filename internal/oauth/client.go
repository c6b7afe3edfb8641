package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is LINE's production API origin.
const DefaultBaseURL = "https://api.line.me"

// DefaultTimeout is the per-call timeout used when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// DefaultUserAgent is the User-Agent header sent when Options.UserAgent is empty.
const DefaultUserAgent = "tokend/dev"

// DefaultMaxBodyBytes is the response size limit used when Options.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 1 << 20

// DefaultMaxIdleConns is the keep-alive pool size used when
// Options.MaxIdleConns is zero.
const DefaultMaxIdleConns = 16

// Form values fixed by LINE's API.
const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// API paths, relative to the base URL.
const (
	pathIssueV21       = "/oauth2/v2.1/token"
	pathKeyIDsV21      = "/oauth2/v2.1/tokens/kid"
	pathRevokeV21      = "/oauth2/v2.1/revoke"
	pathVerifyV21      = "/oauth2/v2.1/verify"
	pathIssueShort     = "/v2/oauth/accessToken"
	pathRevokeShort    = "/v2/oauth/revoke"
	pathVerifyShort    = "/v2/oauth/verify"
	pathIssueStateless = "/oauth2/v3/token"
)

// Options configures a Client. The zero value talks to LINE's production API.
type Options struct {
	BaseURL      string        // "" = DefaultBaseURL; must be an absolute http(s) URL
	HTTPClient   *http.Client  // nil = a private client that does not follow redirects
	Timeout      time.Duration // per call, applied with context.WithTimeout; 0 = DefaultTimeout
	UserAgent    string        // "" = DefaultUserAgent
	MaxBodyBytes int64         // response size limit; 0 = DefaultMaxBodyBytes
	// MaxIdleConns is how many connections to LINE the private client keeps
	// open between calls; set it to the number of calls made at once, or
	// every call beyond it opens (for https, handshakes) a new connection.
	// 0 = DefaultMaxIdleConns. Ignored with HTTPClient.
	MaxIdleConns int
}

// Client calls LINE's channel access token endpoints. It is safe for
// concurrent use and holds no credentials: every call is passed the ones it
// needs.
type Client struct {
	base    *url.URL
	hc      *http.Client
	timeout time.Duration
	ua      string
	maxBody int64
}

// NewClient validates o and returns a Client.
func NewClient(o Options) (*Client, error) {
	raw := o.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("oauth client: base URL %q is not a URL", raw)
	}
	switch {
	case base.Scheme != "http" && base.Scheme != "https":
		return nil, fmt.Errorf("oauth client: base URL %q must start with https:// or http://", raw)
	case base.Host == "":
		return nil, fmt.Errorf("oauth client: base URL %q has no host", raw)
	case base.User != nil:
		return nil, errors.New("oauth client: base URL must not contain user info")
	case base.RawQuery != "" || base.Fragment != "" || base.ForceQuery:
		return nil, fmt.Errorf("oauth client: base URL %q must not have a query or fragment", raw)
	}
	base.Path = strings.TrimRight(base.Path, "/")
	base.RawPath = ""

	if o.Timeout < 0 {
		return nil, fmt.Errorf("oauth client: timeout %v is negative", o.Timeout)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("oauth client: max body bytes %d is negative", o.MaxBodyBytes)
	}
	maxBody := o.MaxBodyBytes
	switch maxBody {
	case 0:
		maxBody = DefaultMaxBodyBytes
	case math.MaxInt64:
		maxBody-- // the body is read through a LimitReader of maxBody+1
	}
	ua := o.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	if strings.ContainsAny(ua, "\r\n\x00") {
		return nil, errors.New("oauth client: user agent contains a control character")
	}
	hc := o.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// net/http keeps 2 idle connections per host by default: with more
		// calls at once, most would pay for a new connection.
		tr.MaxIdleConnsPerHost = o.MaxIdleConns
		if tr.MaxIdleConnsPerHost <= 0 {
			tr.MaxIdleConnsPerHost = DefaultMaxIdleConns
		}
		tr.MaxIdleConns = max(tr.MaxIdleConns, tr.MaxIdleConnsPerHost)
		hc = &http.Client{
			Transport: tr,
			// A redirect would resend credentials (and, for GETs, a token in
			// the query) to wherever it points; LINE never redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Client{base: base, hc: hc, timeout: timeout, ua: ua, maxBody: maxBody}, nil
}

// Token is an issued channel access token. Its String, GoString and Format
// methods redact AccessToken.
type Token struct {
	AccessToken string
	TokenType   string // "Bearer"
	KeyID       string // LINE's key_id of a v2.1 token; "" for other kinds
	ExpiresIn   int64  // seconds from issuance
}

// String describes t without its access token.
func (t Token) String() string {
	tok := "<empty>"
	if t.AccessToken != "" {
		tok = "<redacted>"
	}
	return fmt.Sprintf("oauth.Token{AccessToken:%s TokenType:%q KeyID:%q ExpiresIn:%d}", tok, t.TokenType, t.KeyID, t.ExpiresIn)
}

// GoString is String, so %#v redacts too.
func (t Token) GoString() string { return t.String() }

// Format prints String for every verb, so no fmt verb can reveal the token.
func (t Token) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }

// TokenInfo is the result of verifying a channel access token.
type TokenInfo struct {
	ClientID  string // the channel ID the token belongs to
	ExpiresIn int64  // seconds until the token expires
	Scope     string // may be empty
}

// issueResponse is the 200 body of every issue endpoint.
type issueResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   *int64 `json:"expires_in"`
	TokenType   string `json:"token_type"`
	KeyID       string `json:"key_id"`
}

// The longest expires_in an issue answer may carry: the lifetime LINE
// documents with a margin, so that LINE lengthening it a little stops
// nothing, while a nonsensical value (one that would also overflow a
// time.Duration) is a malformed answer instead of a wrong expiry.
const (
	maxExpiresIn          = MaxTokenTTL + 24*time.Hour // v2.1 and short-lived: 30 days
	maxExpiresInStateless = 30 * time.Minute           // stateless: 15 minutes
)

// token checks the answer: a token, and an expires_in from 1 s to limit.
func (r *issueResponse) token(wantKeyID bool, limit time.Duration) (*Token, error) {
	switch {
	case r.AccessToken == "":
		return nil, errors.New("response has no access_token")
	case r.ExpiresIn == nil:
		return nil, errors.New("response has no expires_in")
	case *r.ExpiresIn <= 0:
		return nil, fmt.Errorf("response expires_in %d is not positive", *r.ExpiresIn)
	case *r.ExpiresIn > int64(limit/time.Second):
		return nil, fmt.Errorf("response expires_in %d is over %d seconds (%v), longer than LINE grants such a token", *r.ExpiresIn, int64(limit/time.Second), limit)
	case wantKeyID && r.KeyID == "":
		return nil, errors.New("response has no key_id")
	}
	tt := r.TokenType
	if tt == "" {
		tt = "Bearer"
	}
	return &Token{AccessToken: r.AccessToken, TokenType: tt, KeyID: r.KeyID, ExpiresIn: *r.ExpiresIn}, nil
}

// verifyResponse is the 200 body of both verify endpoints.
type verifyResponse struct {
	ClientID  string `json:"client_id"`
	ExpiresIn *int64 `json:"expires_in"`
	Scope     string `json:"scope"`
}

func (r *verifyResponse) info() (*TokenInfo, error) {
	switch {
	case r.ClientID == "":
		return nil, errors.New("response has no client_id")
	case r.ExpiresIn == nil:
		return nil, errors.New("response has no expires_in")
	case *r.ExpiresIn < 0:
		return nil, fmt.Errorf("response expires_in %d is negative", *r.ExpiresIn)
	}
	return &TokenInfo{ClientID: r.ClientID, ExpiresIn: *r.ExpiresIn, Scope: r.Scope}, nil
}

// IssueChannelAccessTokenV2_1 issues a v2.1 channel access token whose
// lifetime is the assertion's token_exp (SDK: issueChannelAccessTokenV2_1).
func (c *Client) IssueChannelAccessTokenV2_1(ctx context.Context, assertion string) (*Token, error) {
	if assertion == "" {
		return nil, errors.New("issue v2.1 token: empty assertion")
	}
	return c.issue(ctx, pathIssueV21, url.Values{
		"grant_type":            {grantClientCredentials},
		"client_assertion_type": {assertionTypeJWTBearer},
		"client_assertion":      {assertion},
	}, true)
}

// GetChannelAccessTokenKeyIDsV2_1 lists the key IDs of the channel's valid
// v2.1 tokens (SDK: getChannelAccessTokenKeyIdsV2_1). The result is never nil.
func (c *Client) GetChannelAccessTokenKeyIDsV2_1(ctx context.Context, assertion string) ([]string, error) {
	if assertion == "" {
		return nil, errors.New("list v2.1 key IDs: empty assertion")
	}
	var r struct {
		Kids *[]string `json:"kids"`
	}
	err := c.do(ctx, http.MethodGet, pathKeyIDsV21, url.Values{
		"client_assertion_type": {assertionTypeJWTBearer},
		"client_assertion":      {assertion},
	}, &r, func() error {
		if r.Kids == nil {
			return errors.New("response has no kids")
		}
		// null decodes to "": a key ID that names no token would be
		// counted as an orphan.
		if i := slices.Index(*r.Kids, ""); i >= 0 {
			return fmt.Errorf("response kids[%d] is empty", i)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kids := make([]string, 0, len(*r.Kids))
	return append(kids, *r.Kids...), nil
}

// RevokeChannelAccessTokenV2_1 revokes a v2.1 token (SDK:
// revokeChannelAccessTokenV2_1). LINE answers success for a token that is
// already invalid.
func (c *Client) RevokeChannelAccessTokenV2_1(ctx context.Context, channelID, channelSecret, accessToken string) error {
	switch {
	case channelID == "":
		return errors.New("revoke v2.1 token: empty channel ID")
	case channelSecret == "":
		return errors.New("revoke v2.1 token: empty channel secret")
	case accessToken == "":
		return errors.New("revoke v2.1 token: empty access token")
	}
	return c.do(ctx, http.MethodPost, pathRevokeV21, url.Values{
		"client_id":     {channelID},
		"client_secret": {channelSecret},
		"access_token":  {accessToken},
	}, nil, nil)
}

// VerifyChannelAccessTokenV2_1 asks LINE whether a v2.1 token is valid
// (SDK: verifyChannelTokenByJWT).
func (c *Client) VerifyChannelAccessTokenV2_1(ctx context.Context, accessToken string) (*TokenInfo, error) {
	if accessToken == "" {
		return nil, errors.New("verify v2.1 token: empty access token")
	}
	return c.verify(ctx, http.MethodGet, pathVerifyV21, accessToken)
}

// IssueAccessToken issues a short-lived (30-day) channel access token from
// the channel ID and secret (SDK: issueAccessToken).
func (c *Client) IssueAccessToken(ctx context.Context, channelID, channelSecret string) (*Token, error) {
	switch {
	case channelID == "":
		return nil, errors.New("issue short-lived token: empty channel ID")
	case channelSecret == "":
		return nil, errors.New("issue short-lived token: empty channel secret")
	}
	return c.issue(ctx, pathIssueShort, url.Values{
		"grant_type":    {grantClientCredentials},
		"client_id":     {channelID},
		"client_secret": {channelSecret},
	}, false)
}

// RevokeAccessToken revokes a short-lived or long-lived channel access
// token (SDK: revokeAccessToken).
func (c *Client) RevokeAccessToken(ctx context.Context, accessToken string) error {
	if accessToken == "" {
		return errors.New("revoke token: empty access token")
	}
	return c.do(ctx, http.MethodPost, pathRevokeShort, url.Values{
		"access_token": {accessToken},
	}, nil, nil)
}

// VerifyAccessToken asks LINE whether a short-lived or long-lived token is
// valid (SDK: verifyChannelToken).
func (c *Client) VerifyAccessToken(ctx context.Context, accessToken string) (*TokenInfo, error) {
	if accessToken == "" {
		return nil, errors.New("verify token: empty access token")
	}
	return c.verify(ctx, http.MethodPost, pathVerifyShort, accessToken)
}

// IssueStatelessTokenByAssertion issues a 15-minute stateless token with a
// JWT assertion (SDK: issueStatelessChannelToken).
func (c *Client) IssueStatelessTokenByAssertion(ctx context.Context, assertion string) (*Token, error) {
	if assertion == "" {
		return nil, errors.New("issue stateless token: empty assertion")
	}
	return c.issue(ctx, pathIssueStateless, url.Values{
		"grant_type":            {grantClientCredentials},
		"client_assertion_type": {assertionTypeJWTBearer},
		"client_assertion":      {assertion},
	}, false)
}

// IssueStatelessTokenBySecret issues a 15-minute stateless token with the
// channel ID and secret (SDK: issueStatelessChannelToken).
func (c *Client) IssueStatelessTokenBySecret(ctx context.Context, channelID, channelSecret string) (*Token, error) {
	switch {
	case channelID == "":
		return nil, errors.New("issue stateless token: empty channel ID")
	case channelSecret == "":
		return nil, errors.New("issue stateless token: empty channel secret")
	}
	return c.issue(ctx, pathIssueStateless, url.Values{
		"grant_type":    {grantClientCredentials},
		"client_id":     {channelID},
		"client_secret": {channelSecret},
	}, false)
}

// issue POSTs form to an issue endpoint and checks the token in the answer.
func (c *Client) issue(ctx context.Context, path string, form url.Values, wantKeyID bool) (*Token, error) {
	limit := maxExpiresIn
	if path == pathIssueStateless {
		limit = maxExpiresInStateless
	}
	var r issueResponse
	var tok *Token
	err := c.do(ctx, http.MethodPost, path, form, &r, func() (err error) { tok, err = r.token(wantKeyID, limit); return err })
	if err != nil {
		var re *RequestError
		if r.AccessToken != "" && errors.As(err, &re) && re.Kind == KindMalformed {
			re.issued = &issuedToken{r.AccessToken}
		}
		return nil, err
	}
	return tok, nil
}

// verify calls a verify endpoint and checks the answer.
func (c *Client) verify(ctx context.Context, method, path, accessToken string) (*TokenInfo, error) {
	var r verifyResponse
	var info *TokenInfo
	err := c.do(ctx, method, path, url.Values{"access_token": {accessToken}}, &r,
		func() (err error) { info, err = r.info(); return err })
	if err != nil {
		return nil, err
	}
	return info, nil
}

// do sends one request and decodes a 2xx JSON body into out (nil: the body
// is ignored), then runs check on it. Non-2xx answers become *APIError,
// everything else that goes wrong a *RequestError. params go in the query
// for GET and in a form body otherwise.
func (c *Client) do(parent context.Context, method, path string, params url.Values, out any, check func() error) error {
	endpoint := method + " " + path
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()

	u := *c.base
	u.Path = c.base.Path + path
	var body io.Reader
	if method == http.MethodGet {
		u.RawQuery = params.Encode()
	} else {
		body = strings.NewReader(params.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		// Only a malformed base URL gets here, and NewClient checked it.
		return &RequestError{Endpoint: endpoint, Kind: KindNetwork, Err: errors.New("cannot build request")}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)

	// Whether the request went out whole: a call that failed before it
	// did (no connection, a handshake that timed out) did nothing at
	// LINE (OutcomeUnknown).
	// Each attempt starts unwritten: the transport tries a request again
	// on a new connection when a kept one failed before taking it, and the
	// new one may never be made.
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn:      func(string) { wrote.Store(false) },
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}))
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		unsent := !wrote.Load() || errors.As(err, &op) && op.Op == "dial"
		terr := c.transportError(parent, ctx, endpoint, err, params)
		var re *RequestError
		if errors.As(terr, &re) {
			re.unsent = unsent
		}
		return terr
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return c.transportError(parent, ctx, endpoint, err, params)
	}
	tooLarge := int64(len(data)) > c.maxBody

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if tooLarge {
			// The status is what matters; an oversized error body is not decoded.
			data = nil
		}
		err := decodeAPIError(endpoint, resp.StatusCode, resp.Header, data, time.Now())
		var ae *APIError
		if errors.As(err, &ae) {
			// LINE's words may quote the request: a server that echoes
			// it, whole or cut short, would put a credential in logs.
			ae.Code = redactEcho(ae.Code, params)
			ae.Description, ae.Message = redactEcho(ae.Description, params), redactEcho(ae.Message, params)
		}
		return err
	}
	if out == nil {
		return nil // a success whose body does not matter (revoke), however long
	}
	if tooLarge {
		return &RequestError{Endpoint: endpoint, Kind: KindTooLarge,
			Err: fmt.Errorf("%d response body exceeds %d bytes", resp.StatusCode, c.maxBody)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &RequestError{Endpoint: endpoint, Kind: KindMalformed,
			Err: fmt.Errorf("%d response body: %s", resp.StatusCode, describeJSONError(err, len(data)))}
	}
	if check != nil {
		if err := check(); err != nil {
			return &RequestError{Endpoint: endpoint, Kind: KindMalformed, Err: fmt.Errorf("%d %w", resp.StatusCode, err)}
		}
	}
	return nil
}

// transportError classifies a failure to get a complete response. The
// caller's own context ending is "canceled"; our per-call deadline or a
// network timeout is "timeout"; anything else "network".
func (c *Client) transportError(parent, ctx context.Context, endpoint string, err error, params url.Values) error {
	if perr := parent.Err(); perr != nil {
		return &RequestError{Endpoint: endpoint, Kind: KindCanceled, Err: perr}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &RequestError{Endpoint: endpoint, Kind: KindTimeout,
			Err: fmt.Errorf("no response within %v: %w", c.timeout, context.DeadlineExceeded)}
	}
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	// *url.Error repeats the full URL, whose query may hold a token or an
	// assertion: keep only what it wraps.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	// The rest may still quote what the server sent back ("malformed
	// HTTP status code ..."), and a server that echoes the request (a
	// wrong port, a broken proxy) sends back the query too, whole or cut
	// short: every value sent, and every piece of a credential
	// (redactEcho, as for LINE's own error words).
	if msg := redactEcho(scrub(err.Error(), params), params); msg != err.Error() {
		err = errors.New(msg)
	}
	if timeout {
		return &RequestError{Endpoint: endpoint, Kind: KindTimeout, Err: err}
	}
	return &RequestError{Endpoint: endpoint, Kind: KindNetwork, Err: err}
}

// scrub replaces every value of params in s, as it is and as the query
// encoding spells it, with [redacted].
func scrub(s string, params url.Values) string {
	for _, vs := range params {
		for _, v := range vs {
			if v == "" {
				continue
			}
			s = strings.ReplaceAll(s, v, "[redacted]")
			if q := url.QueryEscape(v); q != v {
				s = strings.ReplaceAll(s, q, "[redacted]")
			}
		}
	}
	return s
}

// secretParams are the request parameters that carry credentials.
var secretParams = []string{"client_secret", "client_assertion", "access_token"}

// minEcho is the shortest run of a credential that redactEcho takes out:
// long enough that LINE's own words never match by chance.
const minEcho = 12

// redactEcho replaces in s every run of minEcho or more characters that
// is part of a credential among params (as sent, or as the query encoding
// spells it) with [redacted]: a whole credential, and a piece of one, as a
// server that echoes the request and cuts its text short would quote it.
func redactEcho(s string, params url.Values) string {
	var secrets []string
	for _, k := range secretParams {
		for _, v := range params[k] {
			if len(v) >= minEcho {
				secrets = append(secrets, v)
				if q := url.QueryEscape(v); q != v {
					secrets = append(secrets, q)
				}
			}
		}
	}
	if len(secrets) == 0 || len(s) < minEcho {
		return s
	}
	inSecret := func(run string) bool {
		for _, v := range secrets {
			if strings.Contains(v, run) {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i + minEcho
		if j > len(s) || !inSecret(s[i:j]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		for j < len(s) && inSecret(s[i:j+1]) {
			j++
		}
		b.WriteString("[redacted]")
		i = j
	}
	return b.String()
}

// describeJSONError says what is wrong with n bytes of JSON without quoting them.
func describeJSONError(err error, n int) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case n == 0:
		return "empty, want JSON"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &se) && se.Offset >= int64(n):
		return "truncated JSON"
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (error at byte %d of %d)", se.Offset, n)
	case errors.As(err, &te):
		// te.Value quotes a number that does not fit ("number 1.5"): keep
		// a short one, never a long one (up to the whole body).
		value := te.Value
		if len(value) > 32 {
			value, _, _ = strings.Cut(value, " ")
		}
		if te.Field != "" {
			return fmt.Sprintf("field %s is a JSON %s, want %s", te.Field, value, te.Type)
		}
		return fmt.Sprintf("a JSON %s, want %s", value, te.Type)
	default:
		return "not valid JSON"
	}
}
