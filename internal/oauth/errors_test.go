package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const epIssue = "POST /oauth2/v2.1/token"

func TestDecodeAPIError(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ra := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	tests := []struct {
		name     string
		endpoint string
		status   int
		header   http.Header
		body     string
		want     APIError
		wantText string
	}{
		{
			name: "OAuth shape", endpoint: epIssue, status: 400,
			body:     `{"error":"invalid_client","error_description":"iss and clientId of key do not match"}`,
			want:     APIError{Endpoint: epIssue, StatusCode: 400, Code: "invalid_client", Description: "iss and clientId of key do not match"},
			wantText: "POST /oauth2/v2.1/token: 400 invalid_client: iss and clientId of key do not match",
		},
		{
			name: "message shape", endpoint: epIssue, status: 400,
			body:     `{"message":"The maximum number of access tokens has already been issued"}`,
			want:     APIError{Endpoint: epIssue, StatusCode: 400, Message: "The maximum number of access tokens has already been issued"},
			wantText: "POST /oauth2/v2.1/token: 400: The maximum number of access tokens has already been issued",
		},
		{
			name: "message with details", endpoint: "POST /v2/oauth/accessToken", status: 400,
			body:     `{"message":"The request body has 2 error(s)","details":[{"message":"must be specified","property":"client_id"},{"message":"too long"}]}`,
			want:     APIError{Endpoint: "POST /v2/oauth/accessToken", StatusCode: 400, Message: "The request body has 2 error(s) (details: client_id: must be specified; too long)"},
			wantText: "POST /v2/oauth/accessToken: 400: The request body has 2 error(s) (details: client_id: must be specified; too long)",
		},
		{
			name: "five details, all shown", endpoint: epIssue, status: 400,
			body: `{"details":[{"property":"a"},{"property":"b"},{"property":"c"},{"property":"d"},{"property":"e"}]}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400, Message: "details: a; b; c; d; e"},
		},
		{
			name: "six details, five shown", endpoint: epIssue, status: 400,
			body: `{"details":[{"property":"a"},{"property":"b"},{"property":"c"},{"property":"d"},{"property":"e"},{"property":"f"}]}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400, Message: "details: a; b; c; d; e; ..."},
		},
		{
			name: "details only", endpoint: epIssue, status: 400,
			body: `{"details":[{"property":"x"}]}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400, Message: "details: x"},
		},
		{
			name: "details of another shape are ignored", endpoint: epIssue, status: 400,
			body: `{"message":"m","details":"oops"}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400, Message: "m"},
		},
		{
			name: "both shapes at once", endpoint: epIssue, status: 400,
			body:     `{"error":"invalid_request","error_description":"bad","message":"also bad"}`,
			want:     APIError{Endpoint: epIssue, StatusCode: 400, Code: "invalid_request", Description: "bad", Message: "also bad"},
			wantText: "POST /oauth2/v2.1/token: 400 invalid_request: bad; also bad",
		},
		{
			name: "code without description", endpoint: epIssue, status: 400,
			body:     `{"error":"invalid_grant"}`,
			want:     APIError{Endpoint: epIssue, StatusCode: 400, Code: "invalid_grant"},
			wantText: "POST /oauth2/v2.1/token: 400 invalid_grant",
		},
		{
			name: "non-JSON body is not echoed", endpoint: epIssue, status: 502,
			body:     "<html><body>Bad Gateway: upstream said SECRET-TOKEN-abcdef</body></html>",
			want:     APIError{Endpoint: epIssue, StatusCode: 502},
			wantText: "POST /oauth2/v2.1/token: 502 Bad Gateway",
		},
		{
			name: "empty body", endpoint: epIssue, status: 503,
			want:     APIError{Endpoint: epIssue, StatusCode: 503},
			wantText: "POST /oauth2/v2.1/token: 503 Service Unavailable",
		},
		{
			name: "JSON array", endpoint: epIssue, status: 500, body: `["error"]`,
			want: APIError{Endpoint: epIssue, StatusCode: 500},
		},
		{
			name: "non-string members ignored", endpoint: epIssue, status: 400,
			body: `{"error":{"code":1},"error_description":42,"message":null}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400},
		},
		{
			name: "control characters cannot forge lines", endpoint: epIssue, status: 400,
			body:     `{"error":"x\ny","message":"line1\r\nlevel=error msg=forged\u0000"}`,
			want:     APIError{Endpoint: epIssue, StatusCode: 400, Code: "x y", Message: "line1  level=error msg=forged"},
			wantText: "POST /oauth2/v2.1/token: 400 x y: line1  level=error msg=forged",
		},
		{
			name: "long message capped", endpoint: epIssue, status: 400,
			body: `{"message":"` + strings.Repeat("a", 1000) + `"}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400, Message: strings.Repeat("a", maxFieldLen) + "..."},
		},
		{
			// Found by FuzzDecodeAPIError: details alone were capped before
			// their "details: " prefix, so the message ran 9 runes over.
			name: "long details without a message capped", endpoint: epIssue, status: 400,
			body: `{"details":[{"property":"` + strings.Repeat("p", 1000) + `"}]}`,
			want: APIError{Endpoint: epIssue, StatusCode: 400, Message: "details: " + strings.Repeat("p", maxFieldLen-len("details: ")) + "..."},
		},
		{
			name: "unknown status", endpoint: epIssue, status: 599,
			want:     APIError{Endpoint: epIssue, StatusCode: 599},
			wantText: "POST /oauth2/v2.1/token: 599",
		},
		{
			name: "429 with Retry-After seconds", endpoint: epIssue, status: 429, header: ra("30"),
			body:     `{"message":"Too Many Requests"}`,
			want:     APIError{Endpoint: epIssue, StatusCode: 429, Message: "Too Many Requests", RetryAfter: 30 * time.Second},
			wantText: "POST /oauth2/v2.1/token: 429: Too Many Requests (retry after 30s)",
		},
		{
			name: "Retry-After HTTP date", endpoint: epIssue, status: 503,
			header:   ra(now.Add(90 * time.Second).Format(http.TimeFormat)),
			want:     APIError{Endpoint: epIssue, StatusCode: 503, RetryAfter: 90 * time.Second},
			wantText: "POST /oauth2/v2.1/token: 503 Service Unavailable (retry after 1m30s)",
		},
		{
			name: "Retry-After RFC 850 date", endpoint: epIssue, status: 503,
			header: ra("Thursday, 02-Jan-25 03:05:05 GMT"),
			want:   APIError{Endpoint: epIssue, StatusCode: 503, RetryAfter: time.Minute},
		},
		{
			name: "Retry-After in the past", endpoint: epIssue, status: 503,
			header: ra(now.Add(-time.Hour).Format(http.TimeFormat)),
			want:   APIError{Endpoint: epIssue, StatusCode: 503},
		},
		{
			name: "Retry-After garbage", endpoint: epIssue, status: 429, header: ra("soon"),
			want: APIError{Endpoint: epIssue, StatusCode: 429},
		},
		{
			name: "Retry-After negative", endpoint: epIssue, status: 429, header: ra("-5"),
			want: APIError{Endpoint: epIssue, StatusCode: 429},
		},
		{
			name: "Retry-After fractional", endpoint: epIssue, status: 429, header: ra("1.5"),
			want: APIError{Endpoint: epIssue, StatusCode: 429},
		},
		{
			name: "Retry-After zero", endpoint: epIssue, status: 429, header: ra("0"),
			want: APIError{Endpoint: epIssue, StatusCode: 429},
		},
		{
			name: "Retry-After padded", endpoint: epIssue, status: 429, header: ra("  7 "),
			want: APIError{Endpoint: epIssue, StatusCode: 429, RetryAfter: 7 * time.Second},
		},
		{
			name: "Retry-After huge saturates", endpoint: epIssue, status: 429, header: ra("99999999999999999999"),
			want: APIError{Endpoint: epIssue, StatusCode: 429, RetryAfter: time.Duration(1<<63 - 1)},
		},
		{
			name: "Retry-After beyond Duration", endpoint: epIssue, status: 429, header: ra("9999999999999"),
			want: APIError{Endpoint: epIssue, StatusCode: 429, RetryAfter: time.Duration(1<<63 - 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeAPIError(tt.endpoint, tt.status, tt.header, []byte(tt.body), now)
			if *got != tt.want {
				t.Errorf("decoded\n got: %#v\nwant: %#v", *got, tt.want)
			}
			if tt.wantText != "" && got.Error() != tt.wantText {
				t.Errorf("Error()\n got: %s\nwant: %s", got.Error(), tt.wantText)
			}
			if strings.Contains(got.Error(), "SECRET") {
				t.Errorf("Error() echoes the body: %s", got.Error())
			}
		})
	}
}

func TestAPIErrorIs(t *testing.T) {
	t.Parallel()
	limit := "The maximum number of access tokens has already been issued"
	notFound := "Cannot find channel key that satisfies the conditions"
	tests := []struct {
		name string
		err  *APIError
		want []error
	}{
		{"token limit", &APIError{Endpoint: epIssue, StatusCode: 400, Message: limit}, []error{ErrTokenLimit}},
		{"token limit, other case and period", &APIError{Endpoint: epIssue, StatusCode: 400, Message: "the MAXIMUM number of access tokens has already been issued."}, []error{ErrTokenLimit}},
		{"limit message with 500 is not the limit", &APIError{Endpoint: epIssue, StatusCode: 500, Message: limit}, nil},
		{"key not found by message", &APIError{Endpoint: "POST /v2/oauth/verify", StatusCode: 404, Message: notFound}, []error{ErrKeyNotFound}},
		{"any JSON 404 on issue v2.1", &APIError{Endpoint: epIssue, StatusCode: 404, Message: "Not found"}, []error{ErrKeyNotFound}},
		{"any JSON 404 on key IDs", &APIError{Endpoint: "GET /oauth2/v2.1/tokens/kid", StatusCode: 404, Code: "not_found"}, []error{ErrKeyNotFound}},
		{"any JSON 404 on stateless", &APIError{Endpoint: "POST /oauth2/v3/token", StatusCode: 404, Message: "x"}, []error{ErrKeyNotFound}},
		{"a 404 not in JSON (a proxy's page, a wrong base_url path) is not a key", &APIError{Endpoint: epIssue, StatusCode: 404}, nil},
		{"nor on key IDs", &APIError{Endpoint: "GET /oauth2/v2.1/tokens/kid", StatusCode: 404}, nil},
		{"bare 404 on revoke is not a key", &APIError{Endpoint: "POST /oauth2/v2.1/revoke", StatusCode: 404}, nil},
		{"key message with 400 is not 404", &APIError{Endpoint: epIssue, StatusCode: 400, Message: notFound}, nil},
		{"invalid client", &APIError{Endpoint: epIssue, StatusCode: 400, Code: "invalid_client", Description: "iss and clientId of key do not match"}, []error{ErrInvalidClient}},
		{"invalid client 401", &APIError{Endpoint: "POST /v2/oauth/accessToken", StatusCode: 401, Code: "invalid_client"}, []error{ErrInvalidClient}},
		{"invalid request", &APIError{Endpoint: "POST /oauth2/v2.1/revoke", StatusCode: 400, Code: "invalid_request"}, nil},
	}
	all := []error{ErrTokenLimit, ErrKeyNotFound, ErrInvalidClient, context.Canceled}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrapped := fmt.Errorf("rotate channel 1: %w", tt.err)
			for _, target := range all {
				want := false
				for _, w := range tt.want {
					want = want || w == target
				}
				if got := errors.Is(wrapped, target); got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", target, got, want)
				}
			}
		})
	}
}

func TestRequestErrorText(t *testing.T) {
	t.Parallel()
	e := &RequestError{Endpoint: "GET /oauth2/v2.1/verify", Kind: KindTimeout, Err: fmt.Errorf("no response within 10s: %w", context.DeadlineExceeded)}
	if got, want := e.Error(), "GET /oauth2/v2.1/verify: timeout: no response within 10s: context deadline exceeded"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, context.DeadlineExceeded) {
		t.Error("RequestError does not unwrap to its cause")
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	api := func(status int, code, msg string) error {
		return &APIError{Endpoint: epIssue, StatusCode: status, Code: code, Message: msg}
	}
	req := func(kind string) error { return &RequestError{Endpoint: epIssue, Kind: kind, Err: io.ErrUnexpectedEOF} }
	tests := []struct {
		name      string
		err       error
		retryable bool
		cause     string
	}{
		{"nil", nil, false, "ok"},
		{"429", api(429, "", ""), true, "http_429"},
		{"500", api(500, "", ""), true, "http_500"},
		{"502", api(502, "", ""), true, "http_502"},
		{"503", api(503, "", ""), true, "http_503"},
		{"400", api(400, "invalid_request", ""), false, "http_400"},
		{"401", api(401, "", ""), false, "http_401"},
		{"403", api(403, "", ""), false, "http_403"},
		{"404 on revoke", &APIError{Endpoint: "POST /v2/oauth/revoke", StatusCode: 404}, false, "http_404"},
		{"302", api(302, "", ""), false, "http_302"},
		{"status out of range", api(1000, "", ""), false, "http_other"},
		{"token limit", api(400, "", "The maximum number of access tokens has already been issued"), false, "token_limit"},
		{"key not found", api(404, "", "Cannot find channel key that satisfies the conditions"), false, "key_not_found"},
		{"invalid client", api(400, "invalid_client", ""), false, "invalid_client"},
		{"timeout", req(KindTimeout), true, "timeout"},
		{"network", req(KindNetwork), true, "network"},
		{"malformed", req(KindMalformed), true, "malformed"},
		{"too large", req(KindTooLarge), true, "too_large"},
		{"canceled", req(KindCanceled), false, "canceled"},
		{"unknown kind", req("weird"), false, "error"},
		{"wrapped 503", fmt.Errorf("rotate: %w", api(503, "", "")), true, "http_503"},
		{"wrapped timeout", fmt.Errorf("rotate: %w", req(KindTimeout)), true, "timeout"},
		{"bare context.Canceled", context.Canceled, false, "canceled"},
		{"bare context.DeadlineExceeded", fmt.Errorf("x: %w", context.DeadlineExceeded), false, "timeout"},
		{"signing error", errors.New("sign assertion: no private key"), false, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsRetryable(tt.err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			if got := Cause(tt.err); got != tt.cause {
				t.Errorf("Cause = %q, want %q", got, tt.cause)
			}
		})
	}
}

func TestRetryAfterFunc(t *testing.T) {
	t.Parallel()
	if d, ok := RetryAfter(fmt.Errorf("x: %w", &APIError{StatusCode: 429, RetryAfter: 3 * time.Second})); !ok || d != 3*time.Second {
		t.Errorf("RetryAfter = %v, %v", d, ok)
	}
	if d, ok := RetryAfter(&APIError{StatusCode: 429}); ok || d != 0 {
		t.Errorf("without header: %v, %v", d, ok)
	}
	if _, ok := RetryAfter(errors.New("x")); ok {
		t.Error("plain error has a Retry-After")
	}
	if _, ok := RetryAfter(nil); ok {
		t.Error("nil has a Retry-After")
	}
}
