// Package socket is tokend's local API: HTTP/1.1 over a Unix socket that
// hands the current token of a channel to co-located bots, reports status,
// health and readiness, and serves Prometheus metrics; with the listener
// that creates the socket safely, the server that runs it until its context
// is done, and the client the `tokend token` and `tokend status` commands
// use.
//
// Routes (GET, and HEAD; any other method gets 405):
//
//	/v1/channels/{id or name}/token   the token as JSON (the output json format), or bare
//	                                  with ?format=raw or Accept: text/plain;
//	                                  404 unknown channel, 503 no valid token yet
//	/v1/channels                      {"channels":[status...]}, never a token
//	/healthz                          200 "ok" while the process serves
//	/readyz                           200 when every channel holds a valid token, else 503
//	/metrics                          Prometheus exposition
//
// When socket.allowed_uids is set, every request on the socket from a peer
// whose uid (SO_PEERCRED) is not listed gets 403. Errors are JSON objects
// {"error":"..."}.
//
// Serve answers plain token reads itself, allocating nothing, and hands a
// connection to net/http at its first other request (fast.go).
package socket

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/rotator"
)

// Source is what the socket serves; *rotator.Rotator is one.
type Source interface {
	// TokenBody returns the channel's current token rendered in format
	// (output.Render); found is false for an unknown channel, and body is
	// nil while the channel holds no valid token. The handler only reads
	// body, so a Source may share it between requests. An error must not
	// hold the token (Render's never do).
	TokenBody(idOrName, format string) (body []byte, found bool, err error)
	// Status returns the status of every channel.
	Status() []rotator.ChannelStatus
	// Ready reports whether every channel holds a valid token.
	Ready() bool
}

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	Metrics     http.Handler // serves /metrics; nil: 404
	AllowedUIDs []int        // peers allowed on the socket; empty: anyone who can open it (Handler.SetAllowedUIDs changes it)
	Logger      *zap.Logger  // nil: no logs
}

// Handler is the socket API. Its allow-list can change while it serves
// (a reload of socket.allowed_uids): each request is checked against the
// list in force when it arrives.
type Handler struct {
	http.Handler
	h *handler
}

// SetAllowedUIDs replaces socket.allowed_uids for the requests that follow;
// empty: anyone who can open the socket.
func (h *Handler) SetAllowedUIDs(uids []int) { h.h.setAllowed(uids) }

// maxNameInError bounds how much of a client-supplied channel name an
// error message repeats.
const maxNameInError = 64

// NewHandler returns the socket API served from src.
func NewHandler(src Source, o HandlerOptions) *Handler {
	h := &handler{src: src, metrics: o.Metrics, log: o.Logger}
	h.setAllowed(o.AllowedUIDs)
	if h.log == nil {
		h.log = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/channels/{channel}/token", get(func(w http.ResponseWriter, r *http.Request) {
		h.token(w, r, r.PathValue("channel"))
	}))
	mux.HandleFunc("/v1/channels", get(h.channels))
	h.public(mux)
	routes := cleanOnly(mux)
	return &Handler{Handler: h.authorize(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := tokenPath(r.URL); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.token(w, r, name) // the hot path, without the mux's matching
			return
		}
		routes.ServeHTTP(w, r)
	})), h: h}
}

// cleanOnly answers a path that is not in clean form (empty, "//", "." or
// ".." segments) with the JSON 404, where http.ServeMux would redirect to
// the clean path with an HTML body.
func cleanOnly(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if !strings.HasPrefix(p, "/") { // "OPTIONS *": the mux's answer is an empty 400
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		c := path.Clean(p)
		if strings.HasSuffix(p, "/") && c != "/" {
			c += "/"
		}
		if c != p {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// tokenPath returns {channel} when u is plainly /v1/channels/{channel}/token:
// no escapes and nothing the mux would clean or redirect. Anything else
// goes through the mux, which decides the same way for plain paths.
func tokenPath(u *url.URL) (name string, ok bool) {
	const prefix, suffix = "/v1/channels/", "/token"
	p := u.Path
	if u.RawPath != "" || len(p) <= len(prefix)+len(suffix) || !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, suffix) {
		return "", false
	}
	name = p[len(prefix) : len(p)-len(suffix)]
	if name == "." || name == ".." || strings.IndexByte(name, '/') >= 0 {
		return "", false
	}
	return name, true
}

// NewMetricsHandler returns the handler for metrics_listen (TCP): only
// /metrics, /healthz and /readyz, never a token or a channel's status.
func NewMetricsHandler(src Source, metrics http.Handler) http.Handler {
	h := &handler{src: src, metrics: metrics, log: zap.NewNop()}
	mux := http.NewServeMux()
	h.public(mux)
	return cleanOnly(mux)
}

type handler struct {
	src     Source
	metrics http.Handler
	allowed atomic.Pointer[[]int] // nil or empty: anyone who can open the socket
	log     *zap.Logger

	// The fast path's counts (fast.go), for tests: requests it answered,
	// connections it handed to net/http.
	answered, handed atomic.Int64
}

func (h *handler) setAllowed(uids []int) {
	uids = slices.Clone(uids)
	h.allowed.Store(&uids)
}

// public registers the routes both handlers serve, and the JSON 404.
func (h *handler) public(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", get(func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	}))
	mux.HandleFunc("/readyz", get(func(w http.ResponseWriter, _ *http.Request) {
		if h.src.Ready() {
			writeText(w, http.StatusOK, "ok")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "not ready")
	}))
	mux.HandleFunc("/metrics", get(func(w http.ResponseWriter, r *http.Request) {
		if h.metrics == nil {
			writeError(w, http.StatusNotFound, "metrics are not enabled")
			return
		}
		h.metrics.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
}

// publicPaths are the routes served to peers not on the Unix socket.
var publicPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// authorize enforces the uid allow-list on the socket, and keeps token and
// status routes off any listener that is not a Unix socket.
func (h *handler) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, known := peerFrom(r.Context())
		// A refused peer's connection is closed after the answer: it
		// would be refused again.
		refuse := func(msg string) {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusForbidden, msg)
		}
		switch {
		case known && !p.unix:
			if !publicPaths[r.URL.Path] {
				refuse("only /metrics, /healthz and /readyz are served outside the Unix socket")
				return
			}
		case h.lets(p):
		case !known:
			refuse("peer credentials unknown")
			return
		case p.err != nil:
			h.log.Warn("cannot read peer credentials; request refused", zap.Error(p.err))
			refuse("peer credentials unavailable")
			return
		default: // a uid not listed
			h.log.Warn("peer not in socket.allowed_uids; request refused",
				zap.Int("uid", p.uid), zap.Int("pid", p.pid), zap.String("path", clip(r.URL.Path)))
			refuse(fmt.Sprintf("uid %d is not allowed (socket.allowed_uids)", p.uid))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// lets reports whether socket.allowed_uids lets p in: the list is empty,
// or p is a Unix peer whose credentials were read and whose uid is listed.
// authorize and the fast path decide by it.
func (h *handler) lets(p peer) bool {
	a := h.allowed.Load()
	if a == nil || len(*a) == 0 {
		return true
	}
	return p.unix && p.err == nil && slices.Contains(*a, p.uid)
}

// get allows GET (and so HEAD) only.
func get(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %q not allowed", clip(r.Method)))
			return
		}
		f(w, r)
	}
}

// token serves GET /v1/channels/{name}/token.
func (h *handler) token(w http.ResponseWriter, r *http.Request, name string) {
	format, err := tokenFormat(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, found, err := h.src.TokenBody(name, format)
	switch {
	case !found:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown channel %q", clip(name)))
		return
	case err == nil && body == nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("channel %q has no valid token yet", clip(name)))
		return
	case err != nil: // TokenBody's errors never hold the token
		h.log.Error("cannot render token", zap.String("channel", clip(name)), zap.Error(err))
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("channel %q: token cannot be rendered", clip(name)))
		return
	}
	if ce := h.log.Check(zap.DebugLevel, "token served"); ce != nil {
		p, _ := peerFrom(r.Context())
		ce.Write(zap.String("channel", clip(name)), zap.String("format", format),
			zap.Int("uid", p.uid), zap.Int("pid", p.pid))
	}
	// The hot path: headers set without canonicalising or allocating.
	hdr := w.Header()
	if format == output.FormatRaw {
		hdr["Content-Type"] = ctText
	} else {
		hdr["Content-Type"] = ctJSON
	}
	noStore(w)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// Header values shared by every token answer; net/http only reads them.
var (
	ctJSON       = []string{"application/json"}
	ctText       = []string{"text/plain; charset=utf-8"}
	noStoreValue = []string{"no-store"}
	nosniffValue = []string{"nosniff"}
)

// tokenFormat picks raw or json from ?format= or else the Accept header
// (acceptFormat).
func tokenFormat(r *http.Request) (string, error) {
	f := ""
	if r.URL.RawQuery != "" { // parsing allocates a map even for nothing
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return "", errors.New("malformed query string")
		}
		f = q.Get("format")
	}
	switch f {
	case output.FormatRaw, output.FormatJSON:
		return f, nil
	case "":
	default:
		return "", fmt.Errorf("unknown format %q (want json or raw)", clip(f))
	}
	return acceptFormat(r.Header.Values("Accept")), nil
}

// acceptFormat chooses between text/plain (raw) and application/json by
// the Accept header's weights: each type takes the q (0 to 1, default 1)
// of the most specific range that matches it (text/plain over text/* over
// */*). The higher weight wins; on a tie, the type whose range is listed
// first. q=0 refuses a type: with application/json refused and text/plain
// not named, raw; with neither acceptable (or no Accept), JSON.
func acceptFormat(accepts []string) string {
	type weight struct {
		q         float64
		spec, pos int // specificity (0: no range matched), position in the header
	}
	var raw, js weight
	pos := 0
	for _, accept := range accepts {
		for part := range strings.SplitSeq(accept, ",") {
			pos++
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(v, 64); err != nil || !(q >= 0 && q <= 1) {
					continue // not a weight (q=2, q=inf, q=NaN): the range is ignored
				}
			}
			for _, t := range [...]struct {
				name, anySub string
				w            *weight
			}{{"text/plain", "text/*", &raw}, {"application/json", "application/*", &js}} {
				spec := 0
				switch {
				case mt == t.name:
					spec = 3
				case mt == t.anySub:
					spec = 2
				case mt == "*/*":
					spec = 1
				}
				if spec > t.w.spec {
					*t.w = weight{q: q, spec: spec, pos: pos}
				}
			}
		}
	}
	switch {
	case raw.q > 0 && (raw.q > js.q || raw.q == js.q && raw.pos < js.pos):
		return output.FormatRaw
	case js.q > 0:
		return output.FormatJSON
	case js.spec > 0 && raw.spec == 0: // JSON refused, text/plain not named
		return output.FormatRaw
	}
	return output.FormatJSON
}

// channels serves GET /v1/channels.
func (h *handler) channels(w http.ResponseWriter, _ *http.Request) {
	st := h.src.Status()
	if st == nil {
		st = []rotator.ChannelStatus{}
	}
	writeJSON(w, http.StatusOK, struct {
		Channels []rotator.ChannelStatus `json:"channels"`
	}{st})
}

func noStore(w http.ResponseWriter) {
	w.Header()["Cache-Control"], w.Header()["X-Content-Type-Options"] = noStoreValue, nosniffValue
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // plain structs and strings: cannot happen
		code, body = http.StatusInternalServerError, []byte(`{"error":"cannot encode the response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	noStore(w)
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	noStore(w)
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}

// clip shortens a client-supplied string to maxNameInError bytes, at a
// rune boundary, marking the cut. Callers quote it with %q.
func clip(s string) string {
	if len(s) <= maxNameInError {
		return s
	}
	n := maxNameInError
	for n > maxNameInError-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
