package rotator

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/store"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func TestRotateAt(t *testing.T) {
	day := 24 * time.Hour
	exp := t0.Add(30 * day)
	tests := []struct {
		name         string
		issued, exp  time.Time
		rotateBefore time.Duration
		jitter       float64
		lo, hi       time.Time // inclusive bounds
	}{
		{"no jitter is exact", t0, exp, 10 * day, 0, t0.Add(20 * day), t0.Add(20 * day)},
		{"jitter moves earlier only", t0, exp, 10 * day, 0.1, t0.Add(19 * day), t0.Add(20 * day)},
		{"full jitter", t0, exp, 10 * day, 0.99, t0.Add(10*day + day/10 - time.Minute), t0.Add(20 * day)},
		{"token shorter than rotate_before rotates at half life", t0, t0.Add(time.Hour), 10 * day, 0.1, t0.Add(30 * time.Minute), t0.Add(30 * time.Minute)},
		{"rotate_before of exactly half the life keeps its jitter", t0, t0.Add(2 * time.Minute), time.Minute, 0.5, t0.Add(30 * time.Second), t0.Add(time.Minute)},
		{"rotate_before near the whole life is honoured", t0, t0.Add(time.Minute), 55 * time.Second, 0, t0.Add(5 * time.Second), t0.Add(5 * time.Second)},
		{"jitter never takes more than half the time before rotation", t0, t0.Add(time.Minute), 55 * time.Second, 0.9, t0.Add(2500 * time.Millisecond), t0.Add(5 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 200 {
				id := fmt.Sprintf("key-%d", i)
				got := RotateAt(tt.issued, tt.exp, id, tt.rotateBefore, tt.jitter)
				if got.Before(tt.lo) || got.After(tt.hi) {
					t.Fatalf("RotateAt(%s) = %s, want within [%s, %s]", id, got, tt.lo, tt.hi)
				}
				if !got.After(tt.issued) {
					t.Fatalf("RotateAt(%s) = %s, not after issuance", id, got)
				}
				if again := RotateAt(tt.issued, tt.exp, id, tt.rotateBefore, tt.jitter); !again.Equal(got) {
					t.Fatalf("RotateAt not deterministic: %s then %s", got, again)
				}
			}
		})
	}
	// With rotate_before at half the life, jitter still spreads (tokend dev).
	spread := map[time.Time]bool{}
	for i := range 50 {
		spread[RotateAt(t0, t0.Add(2*time.Minute), fmt.Sprintf("k%d", i), time.Minute, 0.1)] = true
	}
	if len(spread) < 40 {
		t.Errorf("dev-like lifetimes: 50 tokens share %d rotation instants", len(spread))
	}
	// Jitter spreads channels: 200 IDs over a 1-day window land in many distinct minutes.
	minutes := map[int64]bool{}
	for i := range 200 {
		at := RotateAt(t0, exp, fmt.Sprintf("key-%d", i), 10*day, 0.1)
		minutes[at.Unix()/60] = true
	}
	if len(minutes) < 150 {
		t.Errorf("200 channels rotate in only %d distinct minutes; jitter does not spread them", len(minutes))
	}
}

func TestRevokeAt(t *testing.T) {
	sup := store.Record{State: store.StateSuperseded, SupersededAt: t0, ExpiresAt: t0.Add(48 * time.Hour)}
	tests := []struct {
		name   string
		rec    store.Record
		kind   string
		after  time.Duration
		want   time.Time
		wantOK bool
	}{
		{"v2.1 superseded", sup, KindV21, 24 * time.Hour, t0.Add(24 * time.Hour), true},
		{"short-lived superseded", sup, KindShortLived, time.Hour, t0.Add(time.Hour), true},
		{"zero grace revokes at once", sup, KindV21, 0, t0, true},
		{"stateless cannot be revoked", sup, KindStateless, time.Hour, time.Time{}, false},
		{"expires before grace ends: just dropped", sup, KindV21, 48 * time.Hour, time.Time{}, false},
		{"current is not revoked", store.Record{State: store.StateCurrent, ExpiresAt: t0.Add(time.Hour)}, KindV21, 0, time.Time{}, false},
		{"revoked is not revoked again", store.Record{State: store.StateRevoked, ExpiresAt: t0.Add(time.Hour)}, KindV21, 0, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RevokeAt(tt.rec, tt.kind, tt.after)
			if ok != tt.wantOK || !got.Equal(tt.want) {
				t.Errorf("RevokeAt = %s, %v; want %s, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	base, max := time.Second, 5*time.Minute
	tests := []struct {
		failures int
		rnd      float64
		want     time.Duration
	}{
		{0, 0, 500 * time.Millisecond},
		{1, 0, 500 * time.Millisecond},
		{1, 0.5, 750 * time.Millisecond},
		{2, 0, time.Second},
		{3, 0.999999, 4*time.Second - 2*time.Microsecond},
		{9, 0, 128 * time.Second},
		{10, 0, 150 * time.Second}, // 512s capped at 300s, half fixed
		{10, 0.999999, max - 150*time.Microsecond},
		{1000, 0, 150 * time.Second}, // no overflow
	}
	for _, tt := range tests {
		got := Backoff(tt.failures, base, max, tt.rnd)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("Backoff(%d, rnd=%v) = %s, want %s", tt.failures, tt.rnd, got, tt.want)
		}
		if got > max {
			t.Errorf("Backoff(%d) = %s exceeds cap %s", tt.failures, got, max)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	p := DefaultRetry
	tests := []struct {
		name     string
		err      error
		failures int
		lo, hi   time.Duration
	}{
		{"503 backs off", &oauth.APIError{StatusCode: 503}, 1, 500 * time.Millisecond, time.Second},
		{"503 tenth time is capped", &oauth.APIError{StatusCode: 503}, 10, p.Max / 2, p.Max},
		{"429 honours Retry-After", &oauth.APIError{StatusCode: 429, RetryAfter: 42 * time.Second}, 1, 42 * time.Second, 42 * time.Second},
		{"Retry-After shorter than backoff", &oauth.APIError{StatusCode: 429, RetryAfter: time.Second}, 10, p.Max / 2, p.Max},
		{"absurd Retry-After is capped", &oauth.APIError{StatusCode: 503, RetryAfter: 48 * time.Hour}, 1, time.Hour, time.Hour},
		{"30-token refusal is slow", &oauth.APIError{StatusCode: 400, Message: "The maximum number of access tokens has already been issued"}, 1, p.Slow * 9 / 10, p.Slow * 11 / 10},
		{"unknown key is slow", &oauth.APIError{StatusCode: 404}, 5, p.Slow * 9 / 10, p.Slow * 11 / 10},
		{"local failure backs off", fmt.Errorf("%w: disk full", errLocal), 2, time.Second, 2 * time.Second},
		{"wrapped 503 backs off", fmt.Errorf("issue: %w", &oauth.APIError{StatusCode: 503}), 1, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, rnd := range []float64{0, 0.5, 0.999} {
				got := p.RetryDelay(tt.err, tt.failures, rnd)
				if got < tt.lo || got > tt.hi {
					t.Errorf("RetryDelay(rnd=%v) = %s, want within [%s, %s]", rnd, got, tt.lo, tt.hi)
				}
			}
		})
	}
	if errors.Is(&oauth.APIError{StatusCode: 503}, errLocal) {
		t.Fatal("an API error must not count as local")
	}
}

// TestRemedy: the fix logged for an error retrying cannot mend points at
// what to change: the key for LINE's key-not-found, line.base_url for a
// 404 that is not LINE's.
func TestRemedy(t *testing.T) {
	c := &channel{cfg: Channel{ID: "1657000000", KeyID: "kid-1"}}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"LINE's key not found", &oauth.APIError{Endpoint: "POST /oauth2/v2.1/token", StatusCode: 404, Message: "Cannot find channel key that satisfies the conditions"},
			`LINE does not know assertion signing key "kid-1" for channel 1657000000: check key_id and that the public key is registered in the LINE Developers Console`},
		{"a 404 not from LINE", &oauth.APIError{Endpoint: "POST /oauth2/v2.1/token", StatusCode: 404},
			"line.base_url answered 404 without LINE's JSON error: check line.base_url (a wrong path, or a proxy in the way)"},
		{"another refusal", &oauth.APIError{Endpoint: "POST /oauth2/v2.1/token", StatusCode: 400, Message: "bad"},
			"LINE refused the request; check this channel's configuration"},
		{"a redirect", &oauth.APIError{Endpoint: "POST /oauth2/v2.1/token", StatusCode: 302},
			"line.base_url answered with a redirect, which tokend does not follow: set line.base_url to where it points (http instead of https, a proxy in the way?)"},
		{"retryable", &oauth.APIError{Endpoint: "POST /oauth2/v2.1/token", StatusCode: 503}, ""},
	} {
		if got := remedy(tt.err, c); got != tt.want {
			t.Errorf("%s: remedy = %q; want %q", tt.name, got, tt.want)
		}
	}
}
