// Package linefake is an in-process simulator of LINE's channel access token
// API: a real http.Handler that tests serve with httptest, benchmarks drive
// with thousands of channels and `tokend dev` runs as its LINE.
//
// It is written from the facts in shared/line-api/README.md, independently of
// internal/oauth, so that a client bug is caught rather than mirrored. It
// serves every endpoint at LINE's path and method:
//
//	POST /oauth2/v2.1/token       issue_v2.1       (JWT assertion)
//	GET  /oauth2/v2.1/tokens/kid  kids_v2.1        (JWT assertion in the query)
//	POST /oauth2/v2.1/revoke      revoke_v2.1      (client_id + client_secret)
//	GET  /oauth2/v2.1/verify      verify_v2.1      (access_token in the query)
//	POST /v2/oauth/accessToken    issue_short      (client_id + client_secret)
//	POST /v2/oauth/revoke         revoke_short
//	POST /v2/oauth/verify         verify_short
//	POST /oauth2/v3/token         issue_stateless  (assertion or client secret)
//
// What it enforces: form-encoded POST bodies (parameters in a POST's query
// string are ignored, as at LINE); RS256 assertions with typ "JWT" signed by
// the public key registered with RegisterKey for the header's kid (one under
// 2048 bits is answered as unknown: LINE's console registers none),
// iss == sub == that key's channel, aud exactly "https://api.line.me/", exp
// present, not past and at most 30 minutes ahead of the simulator clock, and
// for a v2.1 issue token_exp present, 1..2592000 seconds;
// at most 30 valid v2.1 tokens per channel (the 31st issue is refused) and 30
// valid short-lived tokens (the 31st issue revokes the oldest); LINE's rate
// limits per channel and second of the simulator clock (370 short-lived
// issues, 2,000 calls to each other endpoint that names its channel: issue
// v2.1, key IDs, revoke v2.1, stateless issue), beyond which it answers 429;
// errors in LINE's two JSON shapes. Verify and the short-lived revoke name
// no channel, and are not limited.
//
// Token formats: v2.1 and stateless tokens are JWS-shaped (three base64url
// segments, HMAC'd with a per-server random key, about 176 and 237 characters);
// short-lived tokens are opaque standard base64 (172 characters that may
// contain '+', '/' and '='), like LINE's, so a client that forgets to
// form-encode a token is caught. A v2.1 key_id is 22 base64url characters (16
// random bytes), the shape LINE returns. Stateless tokens are self-contained
// (the simulator can verify any it issued without storing it); only the most
// recent few per channel are remembered for Tokens.
//
// Verification: GET /oauth2/v2.1/verify accepts v2.1 and stateless tokens;
// POST /v2/oauth/verify and POST /v2/oauth/revoke act on short-lived tokens
// only (revoking any other token through /v2/oauth/revoke answers 200 and
// changes nothing).
//
// Time: token lifetimes and assertion checks use Options.Clock (a clockwork
// fake in tests). Fault delays are the one exception: they sleep in real
// time, so that a real HTTP client's timeout can fire during them, and they
// end early when the request's context is canceled.
//
// The simulator never writes to stdout or stderr. Its request log keeps form
// values (assertions, secrets, tokens) in memory for tests to inspect; the
// Request and TokenState types redact them when formatted with fmt.
package linefake
