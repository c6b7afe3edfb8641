// Package oauth talks to LINE's channel access token API: it issues, lists,
// verifies and revokes channel access tokens (v2.1, short-lived and
// stateless), signs the JWT assertions that v2.1 and stateless issuance
// need, and loads the RSA assertion signing keys those assertions are signed
// with.
//
// The client returns *APIError when LINE answered with an error status and
// *RequestError when no usable answer arrived (timeout, network failure,
// malformed or oversized body). IsRetryable and Cause classify both for the
// caller's retry loop and metrics. A malformed issue answer that still
// carried a token (LINE issued it) gives that token to IssuedToken, so that
// the caller can revoke it. No error, log-friendly String or %v output from
// this package contains a token, a channel secret, an assertion or key
// material.
package oauth
