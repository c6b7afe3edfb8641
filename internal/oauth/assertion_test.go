package oauth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// decodeSegment returns the raw JSON members of a JWT segment, so tests see
// exactly what was serialized (a string aud, integer numbers).
func decodeSegment(t *testing.T, seg string) map[string]json.RawMessage {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment is not base64url: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("segment is not a JSON object: %v", err)
	}
	return m
}

func TestSignerSign(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	now := time.Date(2025, 3, 4, 5, 6, 7, 800_000_000, time.UTC)
	tests := []struct {
		name         string
		lifetime     time.Duration
		ttl          time.Duration
		wantExp      int64
		wantTokenExp string // raw JSON; "" = absent
	}{
		{"v2.1 30 days, default lifetime", 0, MaxTokenTTL, now.Unix() + 300, "2592000"},
		{"one second TTL", 0, time.Second, now.Unix() + 300, "1"},
		{"24h TTL, 25m lifetime", MaxAssertionLifetime, 24 * time.Hour, now.Unix() + 1500, "86400"},
		{"no token_exp (key IDs, stateless)", time.Minute, 0, now.Unix() + 60, ""},
		{"shortest lifetime", 10 * time.Second, 0, now.Unix() + 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Signer{ChannelID: "1234567890", KeyID: "kid-abc", Key: k.rsaA, Lifetime: tt.lifetime}
			signed, err := s.Sign(now, tt.ttl)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}

			// The signature verifies with the public key, under RS256 only.
			parsed, err := jwt.Parse(signed, func(*jwt.Token) (any, error) { return &k.rsaA.PublicKey, nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
			if err != nil {
				t.Fatalf("parse signed assertion: %v", err)
			}
			if !parsed.Valid {
				t.Fatal("assertion signature is not valid")
			}
			if _, err := jwt.Parse(signed, func(*jwt.Token) (any, error) { return &k.rsaB.PublicKey, nil },
				jwt.WithoutClaimsValidation()); err == nil {
				t.Fatal("assertion verifies with an unrelated key")
			}

			segs := strings.Split(signed, ".")
			if len(segs) != 3 {
				t.Fatalf("assertion has %d segments", len(segs))
			}
			header := decodeSegment(t, segs[0])
			wantHeader := map[string]string{"alg": `"RS256"`, "typ": `"JWT"`, "kid": `"kid-abc"`}
			if len(header) != len(wantHeader) {
				t.Errorf("header members: %v", keys(header))
			}
			for name, want := range wantHeader {
				if got := string(header[name]); got != want {
					t.Errorf("header %s = %s, want %s", name, got, want)
				}
			}

			claims := decodeSegment(t, segs[1])
			want := map[string]string{
				"iss": `"1234567890"`,
				"sub": `"1234567890"`,
				"aud": `"https://api.line.me/"`, // a plain string, never ["..."]
				"exp": fmt.Sprint(tt.wantExp),
			}
			if tt.wantTokenExp != "" {
				want["token_exp"] = tt.wantTokenExp
			}
			if len(claims) != len(want) {
				t.Errorf("claims %v, want exactly %v", keys(claims), keys(want))
			}
			for name, w := range want {
				if got := string(claims[name]); got != w {
					t.Errorf("claim %s = %s, want %s", name, got, w)
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSignerAudIgnoresGlobal flips jwt.MarshalSingleStringAsArray, which
// would turn a jwt.ClaimStrings aud into an array. It is not parallel: the
// global belongs to the whole process.
func TestSignerAudIgnoresGlobal(t *testing.T) {
	k := testKeys(t)
	old := jwt.MarshalSingleStringAsArray
	jwt.MarshalSingleStringAsArray = true
	defer func() { jwt.MarshalSingleStringAsArray = old }()
	s := &Signer{ChannelID: "1", KeyID: "k", Key: k.rsaA}
	signed, err := s.Sign(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(decodeSegment(t, strings.Split(signed, ".")[1])["aud"]); got != `"https://api.line.me/"` {
		t.Fatalf("aud = %s, want a plain string", got)
	}
}

func TestSignerSignRefuses(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	good := Signer{ChannelID: "1234567890", KeyID: "kid", Key: k.rsaA}
	tests := []struct {
		name   string
		modify func(s *Signer)
		ttl    time.Duration
		want   string
	}{
		{"empty channel ID", func(s *Signer) { s.ChannelID = "" }, time.Hour, "sign assertion: empty channel ID"},
		{"empty key ID", func(s *Signer) { s.KeyID = "" }, time.Hour, "sign assertion: empty key ID (the kid LINE assigned to the registered public key)"},
		{"nil key", func(s *Signer) { s.Key = nil }, time.Hour, "sign assertion: no private key"},
		{"1024-bit key", func(s *Signer) { s.Key = k.rsa1024 }, time.Hour, "sign assertion: RSA key is 1024 bits; LINE needs at least 2048"},
		{"lifetime over 25m", func(s *Signer) { s.Lifetime = MaxAssertionLifetime + time.Second }, time.Hour, "sign assertion: lifetime 25m1s exceeds 25m0s (LINE allows 30m, minus 5m for clock skew)"},
		{"lifetime 30m", func(s *Signer) { s.Lifetime = 30 * time.Minute }, time.Hour, "sign assertion: lifetime 30m0s exceeds 25m0s (LINE allows 30m, minus 5m for clock skew)"},
		{"lifetime too short", func(s *Signer) { s.Lifetime = 5 * time.Second }, time.Hour, "sign assertion: lifetime 5s is shorter than 10s"},
		{"negative lifetime", func(s *Signer) { s.Lifetime = -time.Minute }, time.Hour, "sign assertion: lifetime -1m0s is shorter than 10s"},
		{"fractional TTL", func(*Signer) {}, 1500 * time.Millisecond, "sign assertion: token TTL 1.5s is not a whole number of seconds"},
		{"sub-second TTL", func(*Signer) {}, 500 * time.Millisecond, "sign assertion: token TTL 500ms is not a whole number of seconds"},
		{"negative TTL", func(*Signer) {}, -time.Second, "sign assertion: token TTL -1s is negative"},
		{"TTL over 30 days", func(*Signer) {}, MaxTokenTTL + time.Second, "sign assertion: token TTL 720h0m1s exceeds LINE's maximum of 30 days (2592000s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.modify(&s)
			got, err := s.Sign(time.Now(), tt.ttl)
			if err == nil {
				t.Fatalf("Sign succeeded: %d-byte assertion", len(got))
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestSignerRedacts(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	s := Signer{ChannelID: "1234567890", KeyID: "kid", Key: k.rsaA, Lifetime: time.Minute}
	want := `oauth.Signer{ChannelID:"1234567890" KeyID:"kid" Key:<redacted> Lifetime:1m0s}`
	d := k.rsaA.D.String()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x"} {
		for _, v := range []any{s, &s} {
			got := fmt.Sprintf(verb, v)
			if got != want {
				t.Errorf("Sprintf(%q, %T) = %q, want %q", verb, v, got, want)
			}
			if strings.Contains(got, d[:20]) {
				t.Fatalf("Sprintf(%q) printed key material", verb)
			}
		}
	}
	if got := fmt.Sprint(Signer{}); got != `oauth.Signer{ChannelID:"" KeyID:"" Key:<nil> Lifetime:0s}` {
		t.Errorf("zero Signer prints %q", got)
	}
}
