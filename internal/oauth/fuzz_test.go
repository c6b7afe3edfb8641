package oauth

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/go-jose/go-jose/v4"
)

// FuzzParsePrivateKey checks that no input makes ParsePrivateKey panic,
// that it returns exactly one of key or error, and that whatever it accepts
// is usable for signing.
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
		key, err := ParsePrivateKey(data)
		if (key == nil) == (err == nil) {
			t.Fatalf("key %v and error %v", key != nil, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if key.N.BitLen() < 2048 || key.Validate() != nil {
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
