package rotator

import (
	"testing"
	"time"

	"github.com/tokend/tokend/internal/config"
)

// TestHeldAtOnceBound: config.HeldAtOnce, which the config's validation
// uses to refuse lifetimes that would keep too many of a channel's tokens
// valid at LINE, bounds what the rotator really keeps valid, and is tight.
func TestHeldAtOnceBound(t *testing.T) {
	for _, tt := range []struct {
		name                string
		ttl, rotate, revoke time.Duration
		jitter              float64
	}{
		{"the defaults, scaled to hours", 30 * time.Hour, 10 * time.Hour, time.Hour, 0.1},
		{"revoke_after binds", 20 * time.Hour, 19 * time.Hour, 14 * time.Hour, 0},
		{"expiry binds", 20 * time.Hour, 18 * time.Hour, 19 * time.Hour, 0},
		{"jitter's spread", 10 * time.Hour, 6 * time.Hour, 9 * time.Hour, 0.5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 1, func(_ int, ch *Channel) {
				ch.TokenTTL, ch.RotateBefore, ch.RevokeAfter, ch.Jitter = tt.ttl, tt.rotate, tt.revoke, tt.jitter
				ch.Outputs = ch.Outputs[:1]
			})
			h.start()
			h.advance(4*tt.ttl, nil)
			bound := config.HeldAtOnce(tt.ttl, tt.rotate, tt.revoke, tt.jitter)
			got := h.sim.MaxValid(h.chans[0].ID)
			if got > bound {
				t.Errorf("LINE held %d of the channel's tokens valid at once; HeldAtOnce says at most %d", got, bound)
			}
			if tt.jitter == 0 && got < bound {
				t.Errorf("LINE held at most %d of the channel's tokens valid at once; HeldAtOnce says %d, a bound that is not tight", got, bound)
			}
			t.Logf("at most %d valid at once (bound %d)", got, bound)
		})
	}
}
