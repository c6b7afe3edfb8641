package linefake

import (
	"crypto/rsa"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionLifetime is how long an assertion made by Assertion stays valid.
const AssertionLifetime = 5 * time.Minute

// Assertion returns a valid client assertion for channelID signed RS256 with
// key under kid: iss = sub = channelID, aud = Audience, exp = now +
// AssertionLifetime and, if tokenExp > 0, token_exp = tokenExp in whole
// seconds. It is a reference for tests and `tokend dev` tooling, written
// independently of internal/oauth; it is not the product's signer. It
// returns "" if key cannot sign (nil or invalid), which the simulator
// rejects as a malformed assertion.
func Assertion(channelID, kid string, key *rsa.PrivateKey, now time.Time, tokenExp time.Duration) string {
	if key == nil {
		return ""
	}
	claims := jwt.MapClaims{
		"iss": channelID,
		"sub": channelID,
		"aud": Audience,
		"exp": now.Add(AssertionLifetime).Unix(),
	}
	if tokenExp > 0 {
		claims["token_exp"] = int64(tokenExp / time.Second)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = kid
	s, err := t.SignedString(key)
	if err != nil {
		return ""
	}
	return s
}
