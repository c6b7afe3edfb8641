package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrTokenLimit matches (errors.Is) LINE refusing a v2.1 token because the
// channel already holds 30 valid ones.
var ErrTokenLimit = errors.New("channel already holds the maximum number of valid v2.1 tokens")

// ErrKeyNotFound matches (errors.Is) LINE not knowing the assertion's kid
// for the channel: the key is not registered, or the channel ID is wrong.
var ErrKeyNotFound = errors.New("assertion signing key not found for the channel")

// ErrInvalidClient matches (errors.Is) LINE rejecting the client
// credentials: wrong channel secret, or iss not matching the key's channel.
var ErrInvalidClient = errors.New("invalid client credentials")

// Messages LINE answers with, compared case-insensitively as substrings.
const (
	msgTokenLimit  = "maximum number of access tokens has already been issued"
	msgKeyNotFound = "cannot find channel key"
)

// maxFieldLen caps each text field kept from an error body.
const maxFieldLen = 300

// APIError is an error status answered by LINE. Its text fields are LINE's,
// trimmed of control characters and capped in length; a body that is not
// JSON leaves them empty and is never quoted.
type APIError struct {
	Endpoint    string        // e.g. "POST /oauth2/v2.1/token" (never a query string: it may hold a token)
	StatusCode  int           // HTTP status
	Code        string        // LINE "error", e.g. "invalid_client"
	Description string        // LINE "error_description"
	Message     string        // LINE "message", followed by its "details" if any
	RetryAfter  time.Duration // parsed Retry-After (seconds or HTTP date), 0 if none
}

// Error reads like "POST /oauth2/v2.1/token: 400 invalid_client: iss and
// clientId of key do not match".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d", e.Endpoint, e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	var detail []string
	for _, s := range []string{e.Description, e.Message} {
		if s != "" {
			detail = append(detail, s)
		}
	}
	switch {
	case len(detail) > 0:
		b.WriteString(": " + strings.Join(detail, "; "))
	case e.Code == "":
		if t := http.StatusText(e.StatusCode); t != "" {
			b.WriteString(" " + t)
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// FromLINE reports whether the answer's body was an error in one of LINE's
// JSON shapes (a message or an error code): not a proxy's page, an empty
// body or something that is not LINE at all.
func (e *APIError) FromLINE() bool { return e.Message != "" || e.Code != "" }

// Is reports whether e is one of ErrTokenLimit, ErrKeyNotFound or ErrInvalidClient.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrTokenLimit:
		return e.StatusCode == http.StatusBadRequest && containsFold(e.Message, msgTokenLimit)
	case ErrKeyNotFound:
		if e.StatusCode != http.StatusNotFound {
			return false
		}
		if containsFold(e.Message, msgKeyNotFound) {
			return true
		}
		// A 404 in LINE's JSON from an assertion-authenticated endpoint
		// means LINE could not match the assertion to a registered key,
		// whatever its words. Not one without: a proxy's HTML page, or a
		// wrong line.base_url path, is no news about keys.
		if !e.FromLINE() {
			return false
		}
		switch e.Endpoint {
		case http.MethodPost + " " + pathIssueV21,
			http.MethodGet + " " + pathKeyIDsV21,
			http.MethodPost + " " + pathIssueStateless:
			return true
		}
		return false
	case ErrInvalidClient:
		return (e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusUnauthorized) &&
			e.Code == "invalid_client"
	}
	return false
}

// RequestError is a call that got no usable answer from LINE.
type RequestError struct {
	Endpoint string // e.g. "GET /oauth2/v2.1/verify" (never a query string)
	Kind     string // KindTimeout, KindNetwork, KindMalformed, KindTooLarge or KindCanceled
	Err      error  // the cause; never holds a URL, body or credential

	issued *issuedToken // a malformed issue answer's access token, for IssuedToken
	unsent bool         // the request was not written whole: LINE did nothing
}

// issuedToken holds a token outside any text: behind a pointer, not even
// %#v of the error prints it.
type issuedToken struct{ token string }

// IssuedToken returns the access token of a malformed issue answer: one
// that carried an access_token but not the rest as expected (expires_in
// missing, mistyped or out of bounds; key_id missing). LINE has issued that
// token and counts it toward the channel's valid tokens (30 for v2.1 and
// short-lived ones) until it expires or is revoked; the caller, which
// cannot use it, should revoke it. The token is never part of the error's
// text.
func IssuedToken(err error) (string, bool) {
	var re *RequestError
	if errors.As(err, &re) && re.issued != nil {
		return re.issued.token, true
	}
	return "", false
}

// OutcomeUnknown reports whether a failed call may still have done its
// work at LINE: the request may have reached LINE and its answer been lost
// (a timeout, a connection that broke after the request was written) or
// come back unreadable (a malformed or oversized 2xx). For an issue, LINE
// may then hold a token the caller can never use or revoke, one of the
// channel's 30 until it expires. A request that was never written whole
// (no connection, a dial or handshake that timed out) did nothing at LINE;
// nor did LINE's own error answers.
func OutcomeUnknown(err error) bool {
	var re *RequestError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Kind {
	case KindMalformed, KindTooLarge:
		return re.issued == nil // a token it carried is the caller's to revoke
	case KindTimeout, KindNetwork:
		return !re.unsent
	}
	return false
}

// RequestError kinds; each is also the Cause label of such an error.
const (
	KindTimeout   = "timeout"   // the per-call timeout or a network timeout expired
	KindNetwork   = "network"   // connection refused, reset, DNS, TLS...
	KindMalformed = "malformed" // a 2xx whose body is not the JSON expected
	KindTooLarge  = "too_large" // a 2xx body over Options.MaxBodyBytes
	KindCanceled  = "canceled"  // the caller's context ended; not retryable
)

// Error reads like "POST /oauth2/v2.1/token: timeout: no response within 10s: context deadline exceeded".
func (e *RequestError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Endpoint, e.Kind, e.Err)
}

// Unwrap returns Err.
func (e *RequestError) Unwrap() error { return e.Err }

// IsRetryable reports whether trying the same call again later may succeed:
// LINE's 429 and 5xx, timeouts, network failures and malformed or oversized
// success bodies (typically a proxy hiccup). Other 4xx answers, the caller's
// own context ending and errors from outside the client are not retryable.
func IsRetryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode == http.StatusTooManyRequests || (ae.StatusCode >= 500 && ae.StatusCode <= 599)
	}
	var re *RequestError
	if errors.As(err, &re) {
		switch re.Kind {
		case KindTimeout, KindNetwork, KindMalformed, KindTooLarge:
			return true
		}
	}
	return false
}

// RetryAfter returns the Retry-After delay LINE sent with an error, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter, true
	}
	return 0, false
}

// Cause returns a short, bounded label for err, for metrics: "ok" for nil,
// "token_limit", "key_not_found", "invalid_client", "http_<status>" for
// other API errors, a RequestError's Kind, "canceled" or "timeout" for bare
// context errors and "error" for anything else (e.g. a signing failure).
func Cause(err error) string {
	if err == nil {
		return "ok"
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case errors.Is(ae, ErrTokenLimit):
			return "token_limit"
		case errors.Is(ae, ErrKeyNotFound):
			return "key_not_found"
		case errors.Is(ae, ErrInvalidClient):
			return "invalid_client"
		}
		if ae.StatusCode < 100 || ae.StatusCode > 599 {
			return "http_other"
		}
		return "http_" + strconv.Itoa(ae.StatusCode)
	}
	var re *RequestError
	if errors.As(err, &re) {
		switch re.Kind {
		case KindTimeout, KindNetwork, KindMalformed, KindTooLarge, KindCanceled:
			return re.Kind
		}
		return "error"
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// decodeAPIError builds the APIError for a non-2xx answer. It accepts both
// of LINE's error shapes ({"error","error_description"} and {"message",
// "details"}) in one object, and leaves the text fields empty for any body
// that is not a JSON object. now anchors an HTTP-date Retry-After.
func decodeAPIError(endpoint string, status int, h http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{Endpoint: endpoint, StatusCode: status}
	if h != nil {
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now)
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return e
	}
	e.Code = jsonString(fields["error"])
	e.Description = jsonString(fields["error_description"])
	e.Message = jsonString(fields["message"])
	if d := jsonDetails(fields["details"]); d != "" {
		if e.Message == "" {
			e.Message = clean("details: " + d) // d is capped, but not with its prefix
		} else {
			e.Message = clean(e.Message + " (details: " + d + ")")
		}
	}
	return e
}

// jsonString returns raw as a cleaned string, or "" if it is not a JSON string.
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return clean(s)
}

// jsonDetails renders LINE's details array ([{"message","property"}]) as
// "property: message; ...", or "" if it is absent or of another shape.
func jsonDetails(raw json.RawMessage) string {
	var details []struct {
		Message  json.RawMessage `json:"message"`
		Property json.RawMessage `json:"property"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &details) != nil {
		return ""
	}
	var parts []string
	for _, d := range details {
		msg, prop := jsonString(d.Message), jsonString(d.Property)
		switch {
		case msg != "" && prop != "":
			parts = append(parts, prop+": "+msg)
		case msg != "" || prop != "":
			parts = append(parts, msg+prop)
		}
	}
	if len(parts) > 5 {
		parts = append(parts[:5], "...")
	}
	return clean(strings.Join(parts, "; "))
}

// clean replaces unprintable characters and invalid UTF-8 with spaces, trims
// and caps s at maxFieldLen runes so a hostile body cannot forge log lines.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxFieldLen {
			b.WriteString("...")
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = ' ' // controls, line/paragraph separators, bidi overrides
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// parseRetryAfter parses a Retry-After value: delta-seconds or an HTTP-date
// (taken relative to now). Anything else, and a date in the past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 63)
		if errors.Is(err, strconv.ErrRange) {
			secs, err = math.MaxInt64, nil // all digits, too many: the longest
		}
		if err != nil {
			return 0
		}
		if secs > uint64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

func containsFold(s, substr string) bool {
	return strings.Contains(strings.ToLower(s), substr)
}
