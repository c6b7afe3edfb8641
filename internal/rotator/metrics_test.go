package rotator

import (
	"testing"
	"time"
)

// TestMetricsForChannelWithoutToken: a channel that never got a token (its
// key unknown at LINE) has its expiry series all the same, at 0 (README's
// metrics table: "0: none"), and its next rotation at the next issue
// attempt; so an alert on tokens expiring soon fires for exactly the
// broken channel.
func TestMetricsForChannelWithoutToken(t *testing.T) {
	e := newFaultEnv(t, 2, 2*time.Second, 1, func(i int, ch *Channel) {
		if i == 1 {
			ch.KeyID = "kid-not-registered"
		}
	})
	e.start()
	defer e.shutdown()
	ok, broken := e.chans[0], e.chans[1]
	expiry := series(t, e.m.Registry(), "tokend_token_expiry_timestamp_seconds", nil)
	if want := float64(e.clock.Now().Add(ok.TokenTTL).Unix()); expiry["channel="+ok.Name] != want {
		t.Errorf("expiry of the working channel = %v, want %v", expiry["channel="+ok.Name], want)
	}
	if v, has := expiry["channel="+broken.Name]; !has || v != 0 {
		t.Errorf("expiry series of the channel without a token: %v, present %v; want 0", v, has)
	}
	next := series(t, e.m.Registry(), "tokend_token_next_rotation_timestamp_seconds", map[string]string{"channel": broken.Name})
	if v := next[""]; v < float64(e.clock.Now().Unix()) || v > float64(e.clock.Now().Add(time.Hour).Unix()) {
		t.Errorf("next rotation of the channel without a token = %v (series %v), want its next issue attempt, within the hour", v, next)
	}
}
