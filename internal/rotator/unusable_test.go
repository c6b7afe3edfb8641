package rotator

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
)

// TestUnusableAnswerRevoked: LINE issues a token but its answer lacks a
// field tokend needs (expires_in, or a v2.1 token's key_id). tokend cannot
// record or publish that token, so it revokes it at once: LINE then holds
// only the token tokend used, not one more for every such answer, which
// would use up the channel's 30 valid tokens one retry at a time.
func TestUnusableAnswerRevoked(t *testing.T) {
	const bad = 3 // malformed answers before LINE answers soundly
	shortLived := func(_ int, ch *Channel) { ch.Kind, ch.Key, ch.KeyID = KindShortLived, nil, "" }
	stateless := func(_ int, ch *Channel) {
		ch.Kind, ch.TokenTTL, ch.RotateBefore, ch.RevokeAfter, ch.Jitter = KindStateless, 15*time.Minute, 5*time.Minute, 0, 0
	}
	const (
		revoked  = "revoked"
		noSecret = "no secret" // a v2.1 token needs the channel secret to be revoked
		nothing  = "nothing"   // stateless tokens cannot be revoked, and do not count
	)
	tests := []struct {
		name             string
		issue, revoke    string // endpoints
		omit             string
		mutate           func(int, *Channel)
		want             string
		validAtLINEAfter int
	}{
		{"v2.1 without expires_in", linefake.EndpointIssueV21, linefake.EndpointRevokeV21, "expires_in", nil, revoked, 1},
		{"v2.1 without key_id", linefake.EndpointIssueV21, linefake.EndpointRevokeV21, "key_id", nil, revoked, 1},
		{"short-lived without expires_in", linefake.EndpointIssueShort, linefake.EndpointRevokeShort, "expires_in", shortLived, revoked, 1},
		{"v2.1 without a channel secret", linefake.EndpointIssueV21, linefake.EndpointRevokeV21, "expires_in",
			func(_ int, ch *Channel) { ch.Secret = "" }, noSecret, 1 + bad},
		{"stateless without expires_in", linefake.EndpointIssueStateless, linefake.EndpointRevokeShort, "expires_in", stateless, nothing, 1 + bad},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFaultEnv(t, 1, 2*time.Second, uint64(i+1), tt.mutate)
			ch := e.chans[0]
			e.sim.SetFault(tt.issue, linefake.Fault{Omit: tt.omit, Times: bad})
			e.start()
			for k := 1; k <= bad && !e.rot.Ready(); k++ {
				_, hi := retryBounds(DefaultRetry, k, false, 0)
				e.advance(hi, nil)
			}
			tok, _, _ := e.rot.Token(ch.ID)
			if !e.rot.Ready() || !e.sim.IsValid(tok.AccessToken) {
				t.Fatalf("no valid token after %d malformed answers and their retries", bad)
			}
			if n := e.sim.Count(tt.issue); n != bad+1 {
				t.Fatalf("%d issue calls, want %d", n, bad+1)
			}

			valid := 0
			for _, s := range e.sim.Tokens(ch.ID) {
				if !s.Revoked && s.ExpiresAt.After(e.clock.Now()) {
					valid++
				}
			}
			if valid != tt.validAtLINEAfter {
				t.Errorf("LINE holds %d valid tokens for the channel, want %d", valid, tt.validAtLINEAfter)
			}
			revokes := e.sim.Count(linefake.EndpointRevokeV21) + e.sim.Count(linefake.EndpointRevokeShort)
			done := e.logs.FilterMessage("revoked the token of an issue answer tokend could not use").Len()
			warned := e.logs.FilterMessage("cannot revoke the token of an issue answer tokend could not use: no channel secret").All()
			rev := series(t, e.m.Registry(), "tokend_revocations_total", map[string]string{"channel": ch.Name})
			switch tt.want {
			case revoked:
				if n := e.sim.Count(tt.revoke); n != bad || revokes != bad || done != bad || len(warned) != 0 {
					t.Errorf("%d calls to %s (%d revoke calls in all), %d log lines; want %d of each", n, tt.revoke, revokes, done, bad)
				}
				if want := map[string]float64{"result=ok": bad}; !maps.Equal(rev, want) {
					t.Errorf("tokend_revocations_total = %v, want %v", rev, want)
				}
			case noSecret:
				if revokes != 0 || done != 0 || len(warned) != bad {
					t.Errorf("without a secret: %d revoke calls, %d revoked lines, %d warnings; want 0, 0, %d", revokes, done, len(warned), bad)
				}
				for _, l := range warned {
					if fix, _ := l.ContextMap()["fix"].(string); !strings.Contains(fix, "channel_secret") {
						t.Errorf("warning's fix = %q, want it to name channel_secret", fix)
					}
				}
			case nothing:
				if revokes != 0 || done != 0 || len(warned) != 0 || len(rev) != 0 {
					t.Errorf("stateless: %d revoke calls, %d revoked lines, %d warnings, revocations %v; want none", revokes, done, len(warned), rev)
				}
			}
			for _, l := range e.logs.All() {
				for _, s := range e.sim.Tokens(ch.ID) {
					if strings.Contains(l.Message, s.AccessToken) || strings.Contains(fmt.Sprint(l.ContextMap()), s.AccessToken) {
						t.Fatalf("a log line holds an access token: %s", l.Message)
					}
				}
			}
		})
	}
}
