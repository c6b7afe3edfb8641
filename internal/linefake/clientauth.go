package linefake

import (
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Fixed parameter values and LINE's messages.
const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// Audience is the only aud LINE accepts in an assertion.
	Audience = "https://api.line.me/"

	msgKeyNotFound   = "Cannot find channel key that satisfies the conditions"
	msgIssMismatch   = "iss and clientId of key do not match"
	msgTokenLimit    = "The maximum number of access tokens has already been issued"
	msgNotJWS        = "The access token not JWS"
	msgTokenExpired  = "The access token expired"
	msgInvalidToken  = "invalid access token"
	msgInvalidID     = "invalid client_id"
	msgInvalidSecret = "invalid client_secret"
	msgRateLimit     = "The API rate limit has been exceeded. Try again later."
)

// requireParams answers 400 invalid_request naming the first missing or
// empty parameter.
func requireParams(form url.Values, names ...string) *response {
	for _, n := range names {
		if form.Get(n) == "" {
			r := errorResponse(http.StatusBadRequest, "invalid_request", "required parameter missing: "+n)
			return &r
		}
	}
	return nil
}

// checkGrantType answers 400 unless grant_type is exactly client_credentials.
func checkGrantType(form url.Values) *response {
	if r := requireParams(form, "grant_type"); r != nil {
		return r
	}
	if form.Get("grant_type") != grantClientCredentials {
		r := errorResponse(http.StatusBadRequest, "unsupported_grant_type", "unsupported grant_type")
		return &r
	}
	return nil
}

// checkAssertionParams checks client_assertion_type and client_assertion.
func checkAssertionParams(form url.Values) *response {
	if r := requireParams(form, "client_assertion_type", "client_assertion"); r != nil {
		return r
	}
	if form.Get("client_assertion_type") != assertionTypeJWTBearer {
		r := errorResponse(http.StatusBadRequest, "invalid_request", "invalid client_assertion_type")
		return &r
	}
	return nil
}

// checkSecretLocked checks client_id and client_secret against AddChannel's
// registration and returns the channel.
func (s *Server) checkSecretLocked(id, secret string) (*channel, *response) {
	ch := s.channels[id]
	if ch == nil || ch.secret == "" {
		r := errorResponse(http.StatusBadRequest, "invalid_client", msgInvalidID)
		return nil, &r
	}
	if subtle.ConstantTimeCompare([]byte(ch.secret), []byte(secret)) != 1 {
		r := errorResponse(http.StatusBadRequest, "invalid_client", msgInvalidSecret)
		return nil, &r
	}
	return ch, nil
}

// The key function's refusals, told apart after the parse.
var (
	errBadAlg = errors.New("alg is not RS256")
	errBadTyp = errors.New("typ is not JWT")
	errNoKey  = errors.New("no key for kid")
)

// verifyAssertion checks a client assertion as LINE does and returns the
// channel it authenticates and its claims (numbers as json.Number).
func (s *Server) verifyAssertion(assertion string) (string, jwt.MapClaims, *response) {
	fail := func(status int, code, desc string) (string, jwt.MapClaims, *response) {
		r := errorResponse(status, code, desc)
		return "", nil, &r
	}

	// One parse: the key function, called after the token is decoded and
	// before its signature is checked, refuses a wrong alg and finds the
	// key. (Decoding it once for the key and again to verify was a tenth
	// of the simulator's issue handler.)
	var (
		issMatchesKey bool
		iss           string
	)
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(
		jwt.WithTimeFunc(s.clock.Now),
		jwt.WithExpirationRequired(),
		jwt.WithJSONNumber(),
	)
	_, err := parser.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		if alg, _ := t.Header["alg"].(string); alg != jwt.SigningMethodRS256.Alg() {
			return nil, errBadAlg
		}
		if typ, _ := t.Header["typ"].(string); typ != "JWT" {
			return nil, errBadTyp
		}
		kid, _ := t.Header["kid"].(string)
		iss, _ = claims["iss"].(string)
		// Find the key by kid; a kid registered only for other channels
		// is still checked, then refused as LINE does ("iss and clientId
		// ...").
		var pub *rsa.PublicKey
		s.mu.Lock()
		if ks := s.keys[kid]; ks != nil {
			pub = ks.byChannel[ks.first]
			if p, ok := ks.byChannel[iss]; ok {
				pub, issMatchesKey = p, true
			}
		}
		s.mu.Unlock()
		if pub == nil || pub.N.BitLen() < MinKeyBits {
			// LINE's console registers 2048-bit keys; a smaller one is
			// one LINE would not know.
			return nil, errNoKey
		}
		return pub, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(http.StatusBadRequest, "invalid_request", "Invalid client_assertion: not a JWT")
	case errors.Is(err, errNoKey):
		r := messageResponse(http.StatusNotFound, msgKeyNotFound)
		return "", nil, &r
	case errors.Is(err, errBadTyp): // before ErrTokenUnverifiable, which wraps every key function error
		return fail(http.StatusBadRequest, "invalid_client", "Invalid typ")
	case errors.Is(err, errBadAlg), errors.Is(err, jwt.ErrTokenUnverifiable): // the latter: an alg jwt does not know
		return fail(http.StatusBadRequest, "invalid_client", "Invalid alg")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(http.StatusBadRequest, "invalid_client", "Invalid signature")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fail(http.StatusBadRequest, "invalid_client", "Invalid nbf")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		if _, nbfErr := claims.GetNotBefore(); nbfErr != nil {
			return fail(http.StatusBadRequest, "invalid_client", "Invalid nbf")
		}
		return fail(http.StatusBadRequest, "invalid_client", "Invalid exp")
	default:
		return fail(http.StatusBadRequest, "invalid_client", "Invalid client_assertion")
	}

	sub, _ := claims["sub"].(string)
	if !issMatchesKey || iss == "" || iss != sub {
		return fail(http.StatusBadRequest, "invalid_client", msgIssMismatch)
	}
	if aud, _ := claims["aud"].(string); aud != Audience {
		return fail(http.StatusBadRequest, "invalid_client", "Invalid aud")
	}
	exp, _ := claims.GetExpirationTime() // present and well-typed: the parser checked
	if exp.Sub(s.clock.Now()) > MaxAssertionLifetime {
		return fail(http.StatusBadRequest, "invalid_client", "Invalid exp")
	}
	return iss, claims, nil
}

// tokenExp returns the assertion's token_exp in seconds, which a v2.1
// issue requires: a whole number 1..MaxTokenExp.
func tokenExp(claims jwt.MapClaims) (int64, *response) {
	bad := errorResponse(http.StatusBadRequest, "invalid_request", "Invalid token_exp")
	v, ok := claims["token_exp"]
	if !ok {
		return 0, &bad
	}
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(n.String(), ".eE") {
		return 0, &bad
	}
	secs, err := n.Int64()
	if err != nil || secs < 1 || secs > MaxTokenExp {
		return 0, &bad
	}
	return secs, nil
}
