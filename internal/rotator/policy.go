package rotator

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/store"
)

// Retry holds the retry policy for calls to LINE.
type Retry struct {
	Base time.Duration // first delay after a retryable failure
	Max  time.Duration // cap of the exponential backoff
	Slow time.Duration // delay after an error that retrying cannot fix
	// MaxRetryAfter caps how long a Retry-After from LINE may hold a
	// channel back, so a bogus value cannot park it past its token's expiry.
	MaxRetryAfter time.Duration
}

// DefaultRetry is the policy tokend runs with.
var DefaultRetry = Retry{
	Base:          time.Second,
	Max:           5 * time.Minute,
	Slow:          30 * time.Minute,
	MaxRetryAfter: time.Hour,
}

// RotateAt is when a token expiring at expiresAt should be replaced: at
// expiresAt-rotateBefore, moved earlier (never later) by up to
// jitter*rotateBefore. The offset is derived from the token's ID, so every
// restart computes the same instant while thousands of channels spread out.
// The jitter never takes more than half the time between issuance and
// expiresAt-rotateBefore. A token LINE issued with a lifetime no longer
// than rotateBefore is rotated at half its life, so tokend cannot spin
// issuing.
func RotateAt(issuedAt, expiresAt time.Time, id string, rotateBefore time.Duration, jitter float64) time.Time {
	base := expiresAt.Add(-rotateBefore)
	if !base.After(issuedAt) {
		return issuedAt.Add(expiresAt.Sub(issuedAt) / 2)
	}
	spread := time.Duration(float64(rotateBefore) * jitter * unitHash(id))
	spread = min(spread, base.Sub(issuedAt)/2)
	return base.Add(-spread)
}

// unitHash maps s to [0, 1) deterministically and uniformly (key IDs that
// differ in one character land far apart).
func unitHash(s string) float64 {
	sum := sha256.Sum256([]byte(s))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53)
}

// RevokeAt is when a superseded token should be revoked at LINE, and false
// when it should not be: kinds without revocation, or a token that expires
// by itself before its grace period ends (expired tokens are simply dropped).
func RevokeAt(rec store.Record, kind string, revokeAfter time.Duration) (time.Time, bool) {
	if !Revocable(kind) || rec.State != store.StateSuperseded {
		return time.Time{}, false
	}
	at := rec.SupersededAt.Add(revokeAfter)
	if !at.Before(rec.ExpiresAt) {
		return time.Time{}, false
	}
	return at, true
}

// Revocable reports whether tokens of kind can be revoked at LINE.
func Revocable(kind string) bool { return kind != KindStateless }

// Backoff is the delay before retry number failures (1 for the first
// retry): capped exponential growth from base, with "equal jitter" (half
// fixed, half random from rnd in [0,1)) so retries of many channels spread
// out without ever collapsing to zero.
func Backoff(failures int, base, max time.Duration, rnd float64) time.Duration {
	if failures < 1 {
		failures = 1
	}
	d := float64(base) * math.Pow(2, float64(failures-1))
	if d > float64(max) || math.IsInf(d, 0) {
		d = float64(max)
	}
	return time.Duration(d/2 + rnd*d/2)
}

// RetryDelay is how long to wait after the failures-th consecutive failure
// err: backoff for errors retrying can fix, never shorter than LINE's
// Retry-After (capped), and the slow delay for errors it cannot fix.
func (p Retry) RetryDelay(err error, failures int, rnd float64) time.Duration {
	if errors.Is(err, errMaybeIssued) || !oauth.IsRetryable(err) && !errors.Is(err, errLocal) {
		// Slow, but still jittered so a fleet of misconfigured channels
		// does not call LINE in lockstep.
		return time.Duration(float64(p.Slow) * (0.9 + 0.2*rnd))
	}
	d := Backoff(failures, p.Base, p.Max, rnd)
	if ra, ok := oauth.RetryAfter(err); ok {
		ra = min(ra, p.MaxRetryAfter)
		d = max(d, ra)
	}
	return d
}

// errLocal marks failures on tokend's side (an output that cannot be
// written, a store commit) that are retried with the normal backoff.
var errLocal = errors.New("local failure")

// earliest returns the earliest non-zero time of ts, or zero if none.
func earliest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	return out
}
