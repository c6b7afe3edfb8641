package oauth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/go-jose/go-jose/v4"
)

// FuzzParsePrivateKey checks that no input makes ParsePrivateKey panic,
// that it returns exactly one of key or error, that whatever it accepts is
// usable for signing, and that ReadPrivateKey's parse, which keeps no CRT
// values, accepts exactly the same.
func FuzzParsePrivateKey(f *testing.F) {
	k := testKeys(f)
	pub, _ := MarshalPublicJWK(&k.rsaA.PublicKey)
	ecJWK, _ := jose.JSONWebKey{Key: k.ec}.MarshalJSON()
	ecDER, _ := x509.MarshalECPrivateKey(k.ec)
	for _, seed := range [][]byte{
		mustPrivateJWK(f, k.rsaA),
		mustPrivateJWK(f, k.rsa1024),
		pub,
		ecJWK,
		pemPKCS1(k.rsaA),
		pemPKCS8(f, k.rsaA),
		pemPKCS8(f, k.ec),
		pemPKCS8(f, k.ed),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}),
		[]byte(`{"keys":[]}`),
		[]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB","p":"AQ","q":"AQ"}`),
		[]byte(`{"kty":"EC","crv":"P-256"}`),
		[]byte(`{"kty":"oct","k":""}`),
		[]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
		[]byte(""),
		[]byte("{"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// parseKey (ReadPrivateKey's parse) keeps no CRT values and relies
		// on the parsers' own validation: it must accept exactly what
		// ParsePrivateKey accepts, and only valid keys.
		raw, rawErr := parseKey(data)
		key, err := ParsePrivateKey(data)
		if (key == nil) == (err == nil) {
			t.Fatalf("key %v and error %v", key != nil, err)
		}
		if (raw == nil) != (key == nil) || (rawErr == nil) != (err == nil) {
			t.Fatalf("parseKey: key %v, error %v; ParsePrivateKey: key %v, error %v", raw != nil, rawErr, key != nil, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if key.N.BitLen() < 2048 || key.Validate() != nil || raw.Validate() != nil {
			t.Fatalf("accepted an unusable %d-bit key", key.N.BitLen())
		}
	})
}

// FuzzDecodeAPIError checks that no status, Retry-After or body makes
// decodeAPIError panic, and that its fields stay single-line and bounded.
func FuzzDecodeAPIError(f *testing.F) {
	for _, seed := range []struct {
		status     int
		retryAfter string
		body       string
	}{
		{400, "", `{"error":"invalid_client","error_description":"iss and clientId of key do not match"}`},
		{400, "", `{"message":"The maximum number of access tokens has already been issued"}`},
		{404, "", `{"message":"Cannot find channel key that satisfies the conditions"}`},
		{400, "", `{"error":"invalid_request","error_description":"The access token not JWS"}`},
		{400, "", `{"message":"The request body has 1 error(s)","details":[{"message":"May not be empty","property":"messages[0].text"}]}`},
		{429, "30", `{"message":"Too Many Requests"}`},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", "<html>Service Unavailable</html>"},
		{500, "-1", ""},
		{0, "99999999999999999999999", `{"error":null,"details":[null,{"message":1}]}`},
		{-1, "Monday, 02-Jan-06 15:04:05 MST", "\xff\xfe{\"message\":\"\u2028\"}"},
	} {
		f.Add(seed.status, seed.retryAfter, []byte(seed.body))
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		e := decodeAPIError("POST /oauth2/v2.1/token", status, h, body, now)
		if e == nil || e.StatusCode != status {
			t.Fatalf("decoded %#v", e)
		}
		if e.RetryAfter < 0 {
			t.Fatalf("negative Retry-After %v", e.RetryAfter)
		}
		for _, s := range []string{e.Code, e.Description, e.Message} {
			if len([]rune(s)) > maxFieldLen+3 {
				t.Fatalf("field of %d runes exceeds the cap", len([]rune(s)))
			}
			if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
				t.Fatalf("field %q holds an unprintable character", s)
			}
		}
		text := e.Error()
		if strings.IndexFunc(text, unicode.IsControl) >= 0 {
			t.Fatalf("Error() %q holds a control character", text)
		}
		_ = IsRetryable(e)
		_ = Cause(e)
		_ = errors.Is(e, ErrTokenLimit)
	})
}

// fuzzSentinel stands for a secret in a fuzzed LINE answer (an access
// token, say): "$T" in a fuzzed body becomes it. Its letters cannot come
// from anything but the body (no JSON type or Go type name, no number
// holds them), so finding it in an error means the error quotes the body.
const fuzzSentinel = "QzxSNTLwvQzxTOKENwvQ"

// fuzzMaxBody is the client's body limit in FuzzDecodeResponse, small so
// the fuzzer reaches the too-large path.
const fuzzMaxBody = 512

// FuzzDecodeResponse serves fuzzed 2xx answers (status, Content-Type,
// body) to every client call that decodes one (issue of each kind, key ID
// list, verify of each kind, revoke) over real HTTP, and checks that no
// answer makes the client panic; that a call returns exactly one of a
// usable result or an error; that a result is complete (a token with a
// type and a positive lifetime, a key ID for v2.1, a non-nil key ID list,
// a client ID); and that an error is a retryable *RequestError of kind
// malformed or too_large whose text is one bounded line that never quotes
// the body.
func FuzzDecodeResponse(f *testing.F) {
	for _, seed := range []struct {
		op     uint8
		status int
		ctype  string
		body   string
	}{
		{0, 200, "application/json", `{"access_token":"$T","expires_in":2592000,"token_type":"Bearer","key_id":"sDTOzw5wIfxxxxPEzcmeQA"}`},
		{0, 200, "application/json", `{"access_token":"$T","expires_in":2592000,"token_type":"Bearer"}`},
		{0, 200, "application/json", `{"access_token":"$T","expires_in":0,"key_id":"k"}`},
		{0, 200, "application/json", `{"access_token":"$T","expires_in":"2592000","key_id":"k"}`},
		{0, 200, "application/json", `{"access_token":"$T","expires_in":99999999999999999999999999999999999999999999,"key_id":"k"}`},
		{0, 200, "application/json", `{"access_token":"$T","expires_in":1e999,"key_id":"k"}`},
		{3, 200, "application/json", `{"access_token":"$T","expires_in":` + strings.Repeat("9", 300) + `}`},
		{0, 200, "application/json", `{"access_token":["$T"],"expires_in":1,"key_id":"k"}`},
		{0, 200, "application/json", `{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJ`},
		{0, 200, "text/html", `<html>$T</html>`},
		{0, 204, "", ``},
		{1, 200, "application/json", `{"kids":["U_gdnFYKTWRxxxxDVZexGg","$T"]}`},
		{1, 200, "application/json", `{"kids":null}`},
		{1, 200, "application/json", `{"kids":[1,"$T"]}`},
		{1, 200, "application/json", `{}`},
		{2, 200, "application/json", `{"client_id":"1234567890","expires_in":2591659,"scope":"profile chat_message.write"}`},
		{2, 200, "application/json", `{"client_id":"$T"}`},
		{3, 200, "application/json", `{"access_token":"$T","expires_in":2592000,"token_type":"Bearer"}`},
		{4, 200, "application/json", `{"client_id":1,"expires_in":-1}`},
		{5, 200, "application/json", `{"token_type":"Bearer","access_token":"$T","expires_in":900}`},
		{6, 200, "application/json", `$T`},
		{7, 200, "application/json", `{"access_token":"$T","expires_in":900}` + strings.Repeat(" ", fuzzMaxBody)},
		{3, 299, "application/json; charset=utf-8", "\xef\xbb\xbf{\"access_token\":\"$T\",\"expires_in\":1}"},
		{3, 200, "application/json", `{"access_token":"$T\u0000","expires_in":1,"access_token":""}`},
	} {
		f.Add(seed.op, seed.status, seed.ctype, []byte(seed.body))
	}

	// One server for every input; a lock makes each input's answer the
	// one its call gets.
	var mu sync.Mutex
	var status int
	var ctype string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	f.Cleanup(srv.Close)
	c, err := NewClient(Options{BaseURL: srv.URL, Timeout: 5 * time.Second, MaxBodyBytes: fuzzMaxBody})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, op uint8, st int, ct string, data []byte) {
		mu.Lock()
		defer mu.Unlock()
		status = 200 + int(uint(st)%100) // the 2xx path; FuzzDecodeAPIError has the rest
		ctype = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, ct)
		body = []byte(strings.ReplaceAll(string(data), "$T", fuzzSentinel))

		var tok *Token
		var err error
		var got bool // a result other than a token
		switch op % 8 {
		case 0:
			tok, err = c.IssueChannelAccessTokenV2_1(ctx, "assertion")
			if err == nil && tok.KeyID == "" {
				t.Fatal("v2.1 token without a key ID")
			}
		case 1:
			var kids []string
			kids, err = c.GetChannelAccessTokenKeyIDsV2_1(ctx, "assertion")
			got = err == nil
			if err == nil && kids == nil {
				t.Fatal("nil key ID list without an error")
			}
		case 2, 4:
			var info *TokenInfo
			if op%8 == 2 {
				info, err = c.VerifyChannelAccessTokenV2_1(ctx, "token")
			} else {
				info, err = c.VerifyAccessToken(ctx, "token")
			}
			got = err == nil
			if err == nil && (info == nil || info.ClientID == "") {
				t.Fatalf("verify result %+v without an error", info)
			}
		case 3:
			tok, err = c.IssueAccessToken(ctx, "1234567890", "secret")
		case 5:
			tok, err = c.IssueStatelessTokenBySecret(ctx, "1234567890", "secret")
		case 6:
			err = c.RevokeAccessToken(ctx, "token")
			got = err == nil
		case 7:
			tok, err = c.IssueStatelessTokenByAssertion(ctx, "assertion")
		}
		if err == nil {
			if got {
				return
			}
			if tok == nil || tok.AccessToken == "" || tok.TokenType == "" || tok.ExpiresIn <= 0 {
				t.Fatalf("incomplete token %v without an error", tok)
			}
			// Only the access token may carry the sentinel into the
			// formatted Token: the other fields are not secret.
			bare := *tok
			bare.KeyID, bare.TokenType = "", ""
			if strings.Contains(bare.AccessToken, fuzzSentinel) &&
				strings.Contains(fmt.Sprintf("%v %+v %#v %s", bare, &bare, bare, bare), fuzzSentinel) {
				t.Fatal("formatting a Token shows the access token")
			}
			return
		}
		if tok != nil {
			t.Fatal("both a token and an error")
		}
		var re *RequestError
		if !errors.As(err, &re) || (re.Kind != KindMalformed && re.Kind != KindTooLarge) {
			t.Fatalf("a %d answer gave %T %v, want a malformed or too_large *RequestError", status, err, err)
		}
		if !IsRetryable(err) {
			t.Fatalf("%v is not retryable", err)
		}
		text := err.Error()
		switch {
		case strings.Contains(text, fuzzSentinel):
			t.Fatalf("the error quotes the body: %q", strings.ReplaceAll(text, fuzzSentinel, "<sentinel>"))
		case len(text) > 160:
			t.Fatalf("an error of %d bytes (the body is quoted?): %.200q", len(text), text)
		case strings.IndexFunc(text, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
			t.Fatalf("error %q holds an unprintable character", text)
		}
	})
}
