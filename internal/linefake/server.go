package linefake

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// Endpoint names, used by Request.Endpoint, Count and SetFault.
const (
	EndpointIssueV21       = "issue_v2.1"
	EndpointKeyIDsV21      = "kids_v2.1"
	EndpointRevokeV21      = "revoke_v2.1"
	EndpointVerifyV21      = "verify_v2.1"
	EndpointIssueShort     = "issue_short"
	EndpointRevokeShort    = "revoke_short"
	EndpointVerifyShort    = "verify_short"
	EndpointIssueStateless = "issue_stateless"
)

// Token kinds, as in TokenState.Kind.
const (
	KindV21        = "v2.1"
	KindShortLived = "short-lived"
	KindStateless  = "stateless"
)

// LINE's limits and fixed lifetimes.
const (
	// MaxValidTokens is how many valid v2.1 (and, separately, short-lived)
	// tokens a channel may hold.
	MaxValidTokens = 30
	// MaxTokenExp is the largest token_exp LINE accepts, in seconds (30 days).
	MaxTokenExp = 2592000
	// MinKeyBits is the smallest assertion signing key LINE registers
	// (RSA 2048); an assertion signed by a smaller registered key is
	// answered as one signed by an unknown key.
	MinKeyBits = 2048
	// RateLimitIssueShort and RateLimit are LINE's rate limits: calls a
	// second a channel may make to the short-lived issue endpoint and to
	// each other endpoint; beyond them LINE answers 429.
	RateLimitIssueShort = 370
	RateLimit           = 2000
	// MaxAssertionLifetime is how far after now an assertion's exp may be.
	MaxAssertionLifetime = 30 * time.Minute
	// ShortLivedTTL is the lifetime of a short-lived token.
	ShortLivedTTL = 30 * 24 * time.Hour
	// StatelessTTL is the lifetime of a stateless token.
	StatelessTTL = 15 * time.Minute
	// MaxBodyBytes caps a request body; bigger bodies get 413.
	MaxBodyBytes = 64 << 10
)

const (
	// statelessKept is how many recent stateless tokens per channel Tokens
	// reports; older ones stay verifiable but are forgotten.
	statelessKept = 16
	// maxLogEntries caps the request log of a long-running simulator
	// (tokend dev); the oldest half is dropped when it is reached.
	maxLogEntries = 100000
)

// Options configures a Server.
type Options struct {
	Clock clockwork.Clock // nil = the real clock
}

// Server is the LINE simulator; it implements http.Handler and is safe for
// concurrent use.
type Server struct {
	clock   clockwork.Clock
	hmacKey []byte
	routes  map[string]route

	mu       sync.Mutex
	channels map[string]*channel
	keys     map[string]*kidKeys // by kid
	byToken  map[string]*token   // v2.1 and short-lived tokens by access token
	seq      uint64

	faultMu sync.Mutex
	faults  map[string]*Fault

	logMu  sync.Mutex
	log    []Request
	counts map[string]int

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

// kidKeys are the public keys registered under one kid, by channel
// (a map: benchmarks register one kid for thousands of channels).
type kidKeys struct {
	first     string // the channel registered earliest
	byChannel map[string]*rsa.PublicKey
}

type channel struct {
	id        string
	secret    string
	history   []*token // v2.1 and short-lived tokens, in issue order
	stateless []*token // the most recent stateless tokens, oldest first
	maxValid  int
	calls     map[string]rateWindow // per endpoint, for the rate limits
}

// rateWindow counts a channel's calls to one endpoint in one second of the
// simulator clock.
type rateWindow struct {
	sec int64
	n   int
}

// rateLimitedLocked counts a call by ch to endpoint and returns LINE's 429
// once the channel has made more than the endpoint's limit in the current
// second of the simulator clock (README: per channel, short-lived issue
// 370 requests a second, every other endpoint 2,000).
func (ch *channel) rateLimitedLocked(endpoint string, now time.Time) *response {
	limit := RateLimit
	if endpoint == EndpointIssueShort {
		limit = RateLimitIssueShort
	}
	if ch.calls == nil {
		ch.calls = map[string]rateWindow{}
	}
	w := ch.calls[endpoint]
	if sec := now.Unix(); w.sec != sec {
		w = rateWindow{sec: sec}
	}
	w.n++
	ch.calls[endpoint] = w
	if w.n > limit {
		r := messageResponse(http.StatusTooManyRequests, msgRateLimit)
		return &r
	}
	return nil
}

type route struct {
	endpoint string
	method   string
	form     bool // parameters come from a form-encoded body
	handle   func(*Server, url.Values) response
}

// New returns a simulator with no channels.
func New(o Options) *Server {
	c := o.Clock
	if c == nil {
		c = clockwork.NewRealClock()
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return &Server{
		clock:    c,
		hmacKey:  key,
		routes:   routes(),
		channels: make(map[string]*channel),
		keys:     make(map[string]*kidKeys),
		byToken:  make(map[string]*token),
		faults:   make(map[string]*Fault),
		counts:   make(map[string]int),
	}
}

func routes() map[string]route {
	return map[string]route{
		"/oauth2/v2.1/token":      {EndpointIssueV21, http.MethodPost, true, (*Server).issueV21},
		"/oauth2/v2.1/tokens/kid": {EndpointKeyIDsV21, http.MethodGet, false, (*Server).keyIDsV21},
		"/oauth2/v2.1/revoke":     {EndpointRevokeV21, http.MethodPost, true, (*Server).revokeV21},
		"/oauth2/v2.1/verify":     {EndpointVerifyV21, http.MethodGet, false, (*Server).verifyV21},
		"/v2/oauth/accessToken":   {EndpointIssueShort, http.MethodPost, true, (*Server).issueShort},
		"/v2/oauth/revoke":        {EndpointRevokeShort, http.MethodPost, true, (*Server).revokeShort},
		"/v2/oauth/verify":        {EndpointVerifyShort, http.MethodPost, true, (*Server).verifyShort},
		"/oauth2/v3/token":        {EndpointIssueStateless, http.MethodPost, true, (*Server).issueStateless},
	}
}

// AddChannel registers a channel and its secret (needed by the short-lived
// and client-secret endpoints and by revoke v2.1). Calling it again replaces
// the secret.
func (s *Server) AddChannel(channelID, channelSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channelLocked(channelID).secret = channelSecret
}

// RegisterKey registers an assertion signing public key for a channel under
// kid, as the LINE Developers Console does. The channel is created if
// needed. Registering the same kid for the same channel again replaces the
// key; the same kid may be registered for several channels (LINE's kids are
// unique, but tests may reuse one).
func (s *Server) RegisterKey(channelID, kid string, pub *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channelLocked(channelID)
	ks := s.keys[kid]
	if ks == nil {
		ks = &kidKeys{first: channelID, byChannel: make(map[string]*rsa.PublicKey)}
		s.keys[kid] = ks
	}
	ks.byChannel[channelID] = pub
}

func (s *Server) channelLocked(id string) *channel {
	ch := s.channels[id]
	if ch == nil {
		ch = &channel{id: id}
		s.channels[id] = ch
	}
	return ch
}

// response is what a handler produces; ServeHTTP logs it, then writes it.
type response struct {
	status      int
	contentType string
	header      http.Header
	body        []byte
	pad         int // spaces sent after body (Fault.BodySize)
}

// spaces is what padding is written from, a chunk at a time: a padded
// body is never built. A client that stops reading at its size limit
// ends the writing, and a 10 MiB fault costs what the client reads, not
// 30 MiB of copies, each checked by the race detector: under -race,
// TestLINEFaults' 10 MiB row took 30 s, and on a loaded machine its 2 s
// client timeout fired instead of the size limit.
var spaces = bytes.Repeat([]byte(" "), 32<<10)

func jsonResponse(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil { // only plain maps and structs are encoded here
		return messageResponse(http.StatusInternalServerError, "encode response: "+err.Error())
	}
	return response{status: status, contentType: "application/json", body: b}
}

// errorResponse is LINE's OAuth error shape.
func errorResponse(status int, code, description string) response {
	return jsonResponse(status, map[string]string{"error": code, "error_description": description})
}

// messageResponse is LINE's other error shape.
func messageResponse(status int, message string) response {
	return jsonResponse(status, map[string]string{"message": message})
}

// emptyResponse is a revoke's 200 with no body.
func emptyResponse() response { return response{status: http.StatusOK} }

// ServeHTTP routes a request to the simulated endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}

	start := s.clock.Now()
	rt, known := s.routes[r.URL.Path]
	s.count(rt.endpoint)
	entry := Request{Time: start, Endpoint: rt.endpoint, Method: r.Method, Path: r.URL.Path}

	if !known {
		s.finish(w, entry, messageResponse(http.StatusNotFound, "Not found"))
		return
	}
	if r.Method != rt.method {
		resp := messageResponse(http.StatusMethodNotAllowed, "Method not allowed")
		resp.header = http.Header{"Allow": {rt.method}}
		s.finish(w, entry, resp)
		return
	}

	form, formErr := readForm(w, r, rt.form)
	entry.Form = form

	if f, ok := s.takeFault(rt.endpoint); ok {
		s.serveFault(w, r, entry, f, rt, formErr)
		return
	}
	if formErr != nil {
		s.finish(w, entry, *formErr)
		return
	}
	s.finish(w, entry, rt.handle(s, form))
}

// readForm returns the request's parameters: the form-encoded body for a
// POST endpoint, the query for a GET one.
func readForm(w http.ResponseWriter, r *http.Request, body bool) (url.Values, *response) {
	if !body {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			resp := errorResponse(http.StatusBadRequest, "invalid_request", "malformed query string")
			return q, &resp
		}
		return q, nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		resp := errorResponse(http.StatusBadRequest, "invalid_request",
			"Content-Type must be application/x-www-form-urlencoded")
		return url.Values{}, &resp
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			resp := messageResponse(http.StatusRequestEntityTooLarge, "Request Entity Too Large")
			return url.Values{}, &resp
		}
		resp := errorResponse(http.StatusBadRequest, "invalid_request", "malformed form body")
		return url.Values{}, &resp
	}
	return r.PostForm, nil
}

// finish logs the exchange, then writes the response, so that a client that
// has its answer always finds the request in the log.
func (s *Server) finish(w http.ResponseWriter, entry Request, resp response) {
	entry.Status = resp.status
	s.record(entry)
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	if resp.contentType != "" {
		h.Set("Content-Type", resp.contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)+resp.pad))
	w.WriteHeader(resp.status)
	// The client may be gone; nothing to do about it but stop writing.
	if _, err := w.Write(resp.body); err != nil {
		return
	}
	for left := resp.pad; left > 0; {
		n, err := w.Write(spaces[:min(left, len(spaces))])
		if err != nil {
			return
		}
		left -= n
	}
}

func (s *Server) count(endpoint string) {
	s.logMu.Lock()
	s.counts[endpoint]++
	s.logMu.Unlock()
}

func (s *Server) record(entry Request) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if len(s.log) >= maxLogEntries {
		n := copy(s.log, s.log[len(s.log)/2:])
		clear(s.log[n:])
		s.log = s.log[:n]
	}
	s.log = append(s.log, entry)
}

// Request is one logged request. Form holds the parameters as sent
// (assertions, secrets and tokens included: the log is in memory and for
// tests only); formatting a Request with fmt redacts them.
type Request struct {
	Time     time.Time // simulator clock when the request arrived
	Endpoint string    // endpoint name; "" for an unknown path
	Method   string
	Path     string
	Form     url.Values // body form for POST endpoints, query for GET ones
	Status   int        // status answered; 0 if none was (dropped, or the client left during a delay)
}

// String describes the request without its parameter values.
func (r Request) String() string {
	keys := make([]string, 0, len(r.Form))
	for k := range r.Form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s (%s) -> %d params=[", r.Method, r.Path, r.Endpoint, r.Status)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=<redacted>")
	}
	b.WriteByte(']')
	return b.String()
}

// GoString is String: parameter values are never printed.
func (r Request) GoString() string { return "linefake.Request{" + r.String() + "}" }

// Format makes every fmt verb print the redacted form.
func (r Request) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(r.GoString()))
		return
	}
	_, _ = f.Write([]byte(r.String()))
}

// Requests returns a copy of the request log, oldest first. A long-running
// simulator keeps only its most recent 50,000 to 100,000 requests; Count is
// always exact.
func (s *Server) Requests() []Request {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := make([]Request, len(s.log))
	for i, e := range s.log {
		e.Form = cloneValues(e.Form)
		out[i] = e
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// ResetRequests empties the request log and the per-endpoint counts, and
// restarts MaxConcurrent from the number of requests in flight now.
func (s *Server) ResetRequests() {
	s.logMu.Lock()
	s.log = nil
	clear(s.counts)
	s.logMu.Unlock()
	s.maxInFlight.Store(s.inFlight.Load())
}

// Count returns how many requests the endpoint has received since the last
// ResetRequests, faulted and rejected ones included.
func (s *Server) Count(endpoint string) int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.counts[endpoint]
}

// MaxConcurrent returns the most requests that were in flight at once,
// across all endpoints.
func (s *Server) MaxConcurrent() int { return int(s.maxInFlight.Load()) }

// InFlight is the number of requests being served now. A request whose
// client gave up during a Delay fault is recorded only when the simulator
// notices the client has gone; tests that read Requests wait for 0 first.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }
