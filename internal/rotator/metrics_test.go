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

// TestRenameKeepsOrphanSeries: a reload that renames a channel moves its
// series to the new name at once, the orphan count too (known since the
// last reconcile), not an hour later at the next one.
func TestRenameKeepsOrphanSeries(t *testing.T) {
	e := newFaultEnv(t, 1, 2*time.Second, 1, nil)
	e.start()
	defer e.shutdown()
	old := e.chans[0].Name
	if got := series(t, e.m.Registry(), "tokend_orphan_key_ids", nil); len(got) != 1 || got["channel="+old] != 0 {
		t.Fatalf("orphan series after the start: %v, want one at 0 for %s", got, old)
	}
	renamed := e.chans[0]
	renamed.Name = "renamed-bot"
	if err := e.rot.Reload([]Channel{renamed}); err != nil {
		t.Fatal(err)
	}
	e.settle()
	got := series(t, e.m.Registry(), "tokend_orphan_key_ids", nil)
	if _, has := got["channel=renamed-bot"]; !has || len(got) != 1 {
		t.Errorf("orphan series after the rename: %v, want one for renamed-bot only", got)
	}
}
