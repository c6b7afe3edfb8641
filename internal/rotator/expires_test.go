package rotator

import (
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/tokend/tokend/internal/linefake"
)

// TestIssueRefusesAbsurdExpiresIn makes the simulator answer an issue call
// with an expires_in LINE never sends, for each kind. tokend must record
// and publish nothing, log and count the answer as malformed without the
// token, retry with backoff, and take the next sound answer.
func TestIssueRefusesAbsurdExpiresIn(t *testing.T) {
	tests := []struct {
		name      string
		endpoint  string
		expiresIn int64
		mutate    func(int, *Channel)
		keyID     string
	}{
		{"v2.1 overflowing", linefake.EndpointIssueV21, 99999999999999, nil, "kid-absurd"},
		{"v2.1 a year", linefake.EndpointIssueV21, 365 * 86400, nil, "kid-absurd"},
		{"short-lived 31 days and a second", linefake.EndpointIssueShort, 2678401, func(_ int, ch *Channel) {
			ch.Kind, ch.Key, ch.KeyID = KindShortLived, nil, ""
		}, ""},
		{"stateless a day", linefake.EndpointIssueStateless, 86400, func(_ int, ch *Channel) {
			ch.Kind, ch.TokenTTL, ch.RotateBefore, ch.RevokeAfter, ch.Jitter = KindStateless, 15*time.Minute, 5*time.Minute, 0, 0
		}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFaultEnv(t, 1, 2*time.Second, uint64(i+1), tt.mutate)
			ch := e.chans[0]
			const fake = "absurd-expiry-access-token-0123456789"
			body := fmt.Sprintf(`{"access_token":%q,"expires_in":%d,"token_type":"Bearer"`, fake, tt.expiresIn)
			if tt.keyID != "" {
				body += fmt.Sprintf(`,"key_id":%q`, tt.keyID)
			}
			body += "}"
			e.sim.SetFault(tt.endpoint, linefake.Fault{Status: 200, Body: body})

			e.start()
			// Two attempts: the first, and its retry after the backoff.
			_, hi := retryBounds(DefaultRetry, 1, false, 0)
			e.advance(hi, nil)

			n := e.sim.Count(tt.endpoint)
			if n < 2 {
				t.Fatalf("%d issue attempts; want a retry within %s of the malformed answer", n, hi)
			}
			tok, st, _ := e.rot.Token(ch.ID)
			if tok.AccessToken != "" || e.rot.Ready() {
				t.Fatalf("token with expires_in %d accepted: expires %s", tt.expiresIn, tok.ExpiresAt)
			}
			t.Logf("last_error: %s", st.LastError)
			if !strings.Contains(st.LastError, fmt.Sprintf("expires_in %d", tt.expiresIn)) || !strings.Contains(st.LastError, "malformed") {
				t.Errorf("status last_error = %q, want it to name the malformed expires_in", st.LastError)
			}
			for _, o := range ch.Outputs {
				if _, err := os.Stat(o.Path); err == nil {
					t.Errorf("output %s written", o.Path)
				}
			}
			recs, err := e.store.Channel(ch.ID)
			if err != nil || len(recs) != 0 {
				t.Errorf("store holds %d records (%v), want none", len(recs), err)
			}

			rot := series(t, e.m.Registry(), "tokend_rotations_total", map[string]string{"channel": ch.Name})
			if want := map[string]float64{"result=malformed": float64(n)}; !maps.Equal(rot, want) {
				t.Errorf("tokend_rotations_total = %v, want %v", rot, want)
			}
			reqs := series(t, e.m.Registry(), "tokend_line_requests_total", map[string]string{"endpoint": tt.endpoint})
			if want := map[string]float64{"result=malformed": float64(n)}; !maps.Equal(reqs, want) {
				t.Errorf("tokend_line_requests_total = %v, want %v", reqs, want)
			}
			logs := e.logs.FilterMessage("issue token failed").All()
			if len(logs) != n {
				t.Errorf("%d \"issue token failed\" lines for %d attempts", len(logs), n)
			}
			for _, l := range logs {
				f := l.ContextMap()
				msg, _ := f["error"].(string)
				if f["cause"] != "malformed" || l.Level != zapcore.WarnLevel || f["fix"] != nil ||
					!strings.Contains(msg, fmt.Sprintf("expires_in %d", tt.expiresIn)) {
					t.Errorf("log line %s %v, want a warning with cause malformed quoting expires_in", l.Level, f)
					break
				}
			}
			for _, l := range e.logs.All() {
				if strings.Contains(l.Message, fake) || strings.Contains(fmt.Sprint(l.ContextMap()), fake) {
					t.Fatalf("a log line holds the access token: %s %v", l.Message, l.ContextMap())
				}
			}

			// LINE answers soundly again: the next retry issues a token
			// with the lifetime LINE gave.
			e.sim.ClearFaults()
			_, hi = retryBounds(DefaultRetry, n, false, 0)
			e.advance(hi, nil)
			tok, _, _ = e.rot.Token(ch.ID)
			if tok.AccessToken == "" || !e.sim.IsValid(tok.AccessToken) {
				t.Fatalf("no valid token within %s of LINE answering soundly", hi)
			}
			if got := tok.ExpiresAt.Sub(tok.IssuedAt); got != ch.TokenTTL {
				t.Errorf("token lives %s, want %s", got, ch.TokenTTL)
			}
		})
	}
}
