package oauth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// echoServer answers every connection with the bytes of the request it
// read, as a server on a wrong port, or a broken proxy, may: net/http then
// quotes them in its error ("malformed HTTP status code ...").
func echoServer(t *testing.T) string {
	t.Helper()
	return echoServerWith(t, func(req *http.Request, body []byte) string {
		// The request line first, as the client sent it, then the body.
		return req.Method + " " + req.URL.RequestURI() + " " + req.Proto + "\r\n" +
			"Content-Length: " + string(body) + "\r\n\r\n"
	})
}

// echoServerWith answers every connection with what answer makes of the
// request it read.
func echoServerWith(t *testing.T, answer func(req *http.Request, body []byte) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				_, _ = io.WriteString(conn, answer(req, body))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestEchoedRequestLeaksNothing: a server that echoes the request puts its
// query (a GET's access token or assertion) and its form (a POST's secret
// or assertion) in front of net/http's parser, whose errors quote what
// they could not parse. No operation's error holds a credential; it still
// says what went wrong.
func TestEchoedRequestLeaksNothing(t *testing.T) {
	t.Parallel()
	base := echoServer(t)
	c, err := NewClient(Options{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range operations() {
		t.Run(op.name, func(t *testing.T) {
			t.Parallel()
			_, err := op.call(context.Background(), c)
			var re *RequestError
			if !errors.As(err, &re) || re.Kind != KindNetwork {
				t.Fatalf("got %v, want a network RequestError", err)
			}
			text := err.Error()
			for _, s := range []string{testAssertion, "ASSERTION-SECRET", testSecret, testToken} {
				if strings.Contains(text, s) {
					t.Fatalf("error text %q contains %q", text, s)
				}
			}
			if !strings.Contains(text, "malformed HTTP") {
				t.Errorf("error text %q does not say the answer was not HTTP", text)
			}
		})
	}
}

// TestEchoedPiecesLeakNothing: a server that echoes pieces of the request
// (each value cut short at both ends) puts no run of 12 or more characters
// of a credential in the error: scrub takes out whole values only.
func TestEchoedPiecesLeakNothing(t *testing.T) {
	t.Parallel()
	base := echoServerWith(t, func(req *http.Request, body []byte) string {
		vals, _ := url.ParseQuery(req.URL.RawQuery + "&" + string(body))
		var pieces []string
		for _, vs := range vals {
			for _, v := range vs {
				pieces = append(pieces, v[min(len(v), 3):min(len(v), 28)])
			}
		}
		return strings.Join(pieces, " ") + "\r\n\r\n"
	})
	c, err := NewClient(Options{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range operations() {
		_, err := op.call(context.Background(), c)
		if err == nil {
			t.Fatalf("%s: no error from a server that does not speak HTTP", op.name)
		}
		noCredentialRun(t, op.name, err.Error())
	}
}

// noCredentialRun fails the test if text holds a run of minEcho or more
// characters of the test's assertion, channel secret or token.
func noCredentialRun(t *testing.T, what, text string) {
	t.Helper()
	for _, secret := range []string{testAssertion, testSecret, testToken} {
		for i := 0; i+minEcho <= len(secret); i++ {
			if run := secret[i : i+minEcho]; strings.Contains(text, run) {
				t.Fatalf("%s: error %q holds %q, a piece of a credential", what, text, run)
			}
		}
	}
}

func TestScrub(t *testing.T) {
	params := map[string][]string{"a": {"tok/en+1=="}, "b": {"", "plain"}}
	got := scrub(`x tok/en+1== y tok%2Fen%2B1%3D%3D z plain`, params)
	if want := "x [redacted] y [redacted] z [redacted]"; got != want {
		t.Errorf("scrub = %q; want %q", got, want)
	}
	if got := scrub("nothing here", params); got != "nothing here" {
		t.Errorf("scrub changed %q", got)
	}
}

// TestRevokeOversizedSuccess: a revoke LINE answered 200 succeeded, however
// long the body it does not read: not a retryable too_large.
func TestRevokeOversizedSuccess(t *testing.T) {
	t.Parallel()
	h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, strings.Repeat("x", 200)) }}
	c, _ := newTestServer(t, h, Options{MaxBodyBytes: 128})
	if err := c.RevokeChannelAccessTokenV2_1(context.Background(), "1", testSecret, testToken); err != nil {
		t.Errorf("revoke v2.1: %v", err)
	}
	if err := c.RevokeAccessToken(context.Background(), testToken); err != nil {
		t.Errorf("revoke short-lived: %v", err)
	}
}

// TestVerifyNegativeExpiresIn: a verify answer with a negative expires_in
// is malformed, as an issue answer's would be.
func TestVerifyNegativeExpiresIn(t *testing.T) {
	t.Parallel()
	h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"client_id":"1","expires_in":-5}`)
	}}
	c, _ := newTestServer(t, h, Options{})
	_, err := c.VerifyChannelAccessTokenV2_1(context.Background(), testToken)
	if Cause(err) != "malformed" || err.Error() != "GET /oauth2/v2.1/verify: malformed: 200 response expires_in -5 is negative" {
		t.Errorf("got %v", err)
	}
	if info, err := c.VerifyAccessToken(context.Background(), testToken); Cause(err) != "malformed" || info != nil {
		t.Errorf("short-lived verify: %v, %v", info, err)
	}
}

// TestHTML404IsNotAMissingKey: a 404 page that is not LINE's JSON (a proxy,
// a wrong line.base_url path) on an assertion endpoint is an http_404, not
// "key not found", which would send the operator to the LINE console.
func TestHTML404IsNotAMissingKey(t *testing.T) {
	t.Parallel()
	h := &recorder{respond: func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "<html>nginx 404</html>")
	}}
	c, _ := newTestServer(t, h, Options{})
	_, err := c.IssueChannelAccessTokenV2_1(context.Background(), testAssertion)
	if errors.Is(err, ErrKeyNotFound) || Cause(err) != "http_404" || IsRetryable(err) {
		t.Errorf("got %v (cause %s)", err, Cause(err))
	}
}

// TestAPIErrorEchoRedacted: an error answer whose words quote the request,
// whole or cut short (LINE's error, error_description and message are kept in the
// error's text, capped in length), leaves no run of 12 or more characters
// of a credential in the error: not the assertion, the channel secret or
// the token, whole or in part.
func TestAPIErrorEchoRedacted(t *testing.T) {
	t.Parallel()
	c, _ := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		var echo []string
		for k, vs := range r.Form {
			for _, v := range vs {
				echo = append(echo, k+"="+v[:min(len(v), 24)]) // cut short
				if len(v) > 30 {
					echo = append(echo, k+"~"+v[5:30]) // a piece from inside
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error": "invalid_request " + strings.Join(echo, " "), "error_description": "bad request: " + strings.Join(echo, " "),
			"message": strings.Join(echo, ","),
		})
	}), Options{})
	for _, op := range operations() {
		_, err := op.call(context.Background(), c)
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%s: got %v, want an APIError", op.name, err)
		}
		text := err.Error()
		noCredentialRun(t, op.name, text)
		if !strings.Contains(text, "bad request") {
			t.Errorf("%s: error %q lost LINE's own words", op.name, text)
		}
	}
}
