package oauth

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the aud claim LINE requires in an assertion, trailing slash included.
const Audience = "https://api.line.me/"

// MaxTokenTTL is the longest v2.1 token lifetime LINE grants (2592000 s).
const MaxTokenTTL = 30 * 24 * time.Hour

// MaxAssertionLifetime is LINE's 30-minute assertion limit minus a 5-minute
// margin for clock skew between this host and LINE.
const MaxAssertionLifetime = 25 * time.Minute

// DefaultAssertionLifetime is the assertion lifetime used when Signer.Lifetime is zero.
const DefaultAssertionLifetime = 5 * time.Minute

// minAssertionLifetime keeps exp meaningfully after now.
const minAssertionLifetime = 10 * time.Second

// Signer signs the JWT assertions that authenticate a channel to the v2.1
// issue, key-ID and stateless-issue endpoints. Its String, GoString and
// Format methods never print the key.
type Signer struct {
	ChannelID string          // iss and sub
	KeyID     string          // kid header: the ID LINE assigned to the registered public key
	Key       *rsa.PrivateKey // the assertion signing key
	Lifetime  time.Duration   // exp - now; 0 = DefaultAssertionLifetime, at most MaxAssertionLifetime
}

// String describes s without its key.
func (s Signer) String() string {
	key := "<nil>"
	if s.Key != nil {
		key = "<redacted>"
	}
	return fmt.Sprintf("oauth.Signer{ChannelID:%q KeyID:%q Key:%s Lifetime:%v}", s.ChannelID, s.KeyID, key, s.Lifetime)
}

// GoString is String, so %#v does not print the key.
func (s Signer) GoString() string { return s.String() }

// Format prints String for every verb, so no fmt verb can print the key.
func (s Signer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// Sign returns an RS256 assertion valid from now for the signer's lifetime.
// tokenTTL is the token_exp claim: 0 omits it (key IDs, stateless issue),
// otherwise it must be a whole number of seconds from 1s to MaxTokenTTL.
func (s *Signer) Sign(now time.Time, tokenTTL time.Duration) (string, error) {
	switch {
	case s.ChannelID == "":
		return "", errors.New("sign assertion: empty channel ID")
	case s.KeyID == "":
		return "", errors.New("sign assertion: empty key ID (the kid LINE assigned to the registered public key)")
	case s.Key == nil:
		return "", errors.New("sign assertion: no private key")
	case s.Key.N == nil || s.Key.N.BitLen() < minKeyBits:
		return "", fmt.Errorf("sign assertion: RSA key is %d bits; LINE needs at least %d", bitLen(s.Key), minKeyBits)
	}
	lifetime := s.Lifetime
	switch {
	case lifetime == 0:
		lifetime = DefaultAssertionLifetime
	case lifetime < minAssertionLifetime:
		return "", fmt.Errorf("sign assertion: lifetime %v is shorter than %v", lifetime, minAssertionLifetime)
	case lifetime > MaxAssertionLifetime:
		return "", fmt.Errorf("sign assertion: lifetime %v exceeds %v (LINE allows 30m, minus 5m for clock skew)", lifetime, MaxAssertionLifetime)
	}
	claims := jwt.MapClaims{
		"iss": s.ChannelID,
		"sub": s.ChannelID,
		// A plain string, not jwt.ClaimStrings: LINE wants a single aud and
		// this does not depend on the jwt.MarshalSingleStringAsArray global.
		"aud": Audience,
		"exp": now.Add(lifetime).Unix(),
	}
	if tokenTTL != 0 {
		secs, err := tokenTTLSeconds(tokenTTL)
		if err != nil {
			return "", fmt.Errorf("sign assertion: %w", err)
		}
		claims["token_exp"] = secs
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = s.KeyID
	signed, err := t.SignedString(s.Key)
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	return signed, nil
}

// tokenTTLSeconds validates a token_exp and returns it in seconds.
func tokenTTLSeconds(ttl time.Duration) (int64, error) {
	switch {
	case ttl < 0:
		return 0, fmt.Errorf("token TTL %v is negative", ttl)
	case ttl%time.Second != 0:
		return 0, fmt.Errorf("token TTL %v is not a whole number of seconds", ttl)
	case ttl > MaxTokenTTL:
		return 0, fmt.Errorf("token TTL %v exceeds LINE's maximum of 30 days (%ds)", ttl, int64(MaxTokenTTL/time.Second))
	}
	return int64(ttl / time.Second), nil
}

func bitLen(k *rsa.PrivateKey) int {
	if k == nil || k.N == nil {
		return 0
	}
	return k.N.BitLen()
}
