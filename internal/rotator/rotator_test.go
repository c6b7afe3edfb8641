package rotator

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/metrics"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/store"
)

const day = 24 * time.Hour

func TestFirstStartIssuesOncePerChannelAndRestartReuses(t *testing.T) {
	h := newHarness(t, 5, nil)
	h.start()
	if got := h.sim.Count("issue_v2.1"); got != 5 {
		t.Fatalf("first start made %d issue calls, want 5", got)
	}
	if !h.rot.Ready() {
		t.Fatal("not ready after first start")
	}
	stats := map[string]os.FileInfo{}
	for i, ch := range h.chans {
		tok := h.current(i)
		if tok == "" || !h.sim.IsValid(tok) {
			t.Fatalf("channel %d serves no valid token", i)
		}
		if got := h.readFile(ch.Outputs[0].Path); got != tok {
			t.Fatalf("raw output of %s is not the current token", ch.Name)
		}
		var js map[string]any
		if err := json.Unmarshal([]byte(h.readFile(ch.Outputs[1].Path)), &js); err != nil || js["access_token"] != tok || js["channel_id"] != ch.ID {
			t.Fatalf("json output of %s wrong: %v", ch.Name, err)
		}
		for _, o := range ch.Outputs {
			fi, err := os.Stat(o.Path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != o.Mode {
				t.Errorf("%s mode %v, want %v", o.Path, fi.Mode().Perm(), o.Mode)
			}
			stats[o.Path] = fi
		}
	}

	h.stop()
	h.clock.Advance(time.Hour)
	h.sim.ResetRequests()
	h.start()
	if got := h.sim.Count("issue_v2.1"); got != 0 {
		t.Fatalf("restart with valid tokens made %d issue calls, want 0", got)
	}
	for path, before := range stats {
		after, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("restart rewrote %s", path)
		}
	}
	if !h.rot.Ready() {
		t.Fatal("not ready after restart")
	}
}

func TestRotationWindowRevocationAndNinetyDays(t *testing.T) {
	const n = 3
	h := newHarness(t, n, func(i int, ch *Channel) { ch.ReconcileEvery = 6 * time.Hour })
	h.start()
	type life struct {
		issued, expires time.Time
	}
	seen := map[string]life{} // token -> its life as served
	supersededAt := map[string]time.Time{}
	last := make([]string, n)
	for i := range n {
		last[i] = h.current(i)
		tok, _, _ := h.rot.Token(h.chans[i].ID)
		seen[last[i]] = life{tok.IssuedAt, tok.ExpiresAt}
	}
	rotations := 0
	visit := func() {
		now := h.clock.Now()
		for i, ch := range h.chans {
			if got := len(h.sim.ValidKeyIDs(ch.ID)); got > 2 {
				t.Fatalf("%s holds %d valid tokens at LINE at %s", ch.Name, got, now)
			}
			tok, _, _ := h.rot.Token(ch.ID)
			if tok.AccessToken == "" {
				t.Fatalf("%s has no valid token at %s", ch.Name, now)
			}
			if tok.AccessToken == last[i] {
				continue
			}
			// Rotated: it must have happened inside the window.
			prev := seen[last[i]]
			rb := ch.RotateBefore
			lo := prev.expires.Add(-rb - time.Duration(float64(rb)*ch.Jitter))
			hi := prev.expires.Add(-rb)
			if now.Before(lo) || now.After(hi) {
				t.Errorf("%s rotated at %s, outside [%s, %s]", ch.Name, now, lo, hi)
			}
			rotations++
			supersededAt[last[i]] = now
			seen[tok.AccessToken] = life{tok.IssuedAt, tok.ExpiresAt}
			last[i] = tok.AccessToken
		}
		// Superseded tokens are revoked revoke_after later, not before.
		for tok, at := range supersededAt {
			valid := h.sim.IsValid(tok)
			age := now.Sub(at)
			if age < h.chans[0].RevokeAfter && !valid && now.Before(seen[tok].expires) {
				t.Errorf("token superseded at %s revoked early (now %s)", at, now)
			}
			if age >= h.chans[0].RevokeAfter && valid {
				t.Errorf("token superseded at %s still valid at %s", at, now)
			}
		}
	}
	h.advance(90*day, visit)
	if rotations < 3*n {
		t.Fatalf("only %d rotations in 90 days for %d channels", rotations, n)
	}
	for _, ch := range h.chans {
		if got := h.sim.MaxValid(ch.ID); got > 2 {
			t.Errorf("%s held %d valid tokens at LINE at once; want at most 2", ch.Name, got)
		}
		if got := h.logCount("superseded token revoked"); got < 3 {
			t.Errorf("%d revocations logged", got)
		}
	}
}

func TestReconcileReplacesRevokedTokenAndCountsOrphans(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.start()
	ch := h.chans[0]
	old := h.current(0)
	var oldKID string
	for _, ts := range h.sim.Tokens(ch.ID) {
		if ts.AccessToken == old {
			oldKID = ts.KeyID
		}
	}
	if !h.sim.RevokeKeyID(ch.ID, oldKID) {
		t.Fatal("simulator did not revoke")
	}
	// An orphan: a token issued at LINE that tokend never saw.
	a := linefake.Assertion(ch.ID, testKID, sharedKey(t), h.clock.Now(), 30*day)
	if _, err := h.line.IssueChannelAccessTokenV2_1(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	h.advance(ch.ReconcileEvery, nil)
	now := h.current(0)
	if now == old || !h.sim.IsValid(now) {
		t.Fatal("revoked token was not replaced at the next reconcile")
	}
	if got := h.readFile(ch.Outputs[0].Path); got != now {
		t.Fatal("output still holds the revoked token")
	}
	_, st, _ := h.rot.Token(ch.ID)
	if st.Orphans != 1 {
		t.Errorf("orphans = %d, want 1", st.Orphans)
	}
	if h.logCount("LINE holds valid tokens tokend does not track (orphans); they count against the limit of 30 until they expire") == 0 {
		t.Error("orphan not logged")
	}
	if _, st2, _ := h.rot.Token(h.chans[1].ID); st2.Orphans != 0 {
		t.Errorf("other channel has %d orphans", st2.Orphans)
	}
}

// issueGate holds every v2.1 issue request (or, with path set, every
// request to that path), once armed, until released: a step's later LINE
// call, in flight for as long as a test needs.
type issueGate struct {
	rt      http.RoundTripper
	path    string // "": /oauth2/v2.1/token
	armed   atomic.Bool
	arrived chan struct{}
	release chan struct{}
}

func (g *issueGate) RoundTrip(req *http.Request) (*http.Response, error) {
	path := g.path
	if path == "" {
		path = "/oauth2/v2.1/token"
	}
	if g.armed.Load() && req.URL.Path == path {
		// A request given up (the test failed, the rotator stops) is let go.
		select {
		case g.arrived <- struct{}{}:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		select {
		case <-g.release:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return g.rt.RoundTrip(req)
}

// TestRestartPublishesBeforeCallingLINE: a restart writes every stored
// token still valid to its outputs, and is ready, before its first call to
// LINE (DESIGN: a current token not yet due is reused with no LINE call and
// published). The restart's key-ID listings are held until the test has
// looked.
func TestRestartPublishesBeforeCallingLINE(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.start()
	toks := []string{h.current(0), h.current(1)}
	h.stop()
	for _, ch := range h.chans {
		for _, o := range ch.Outputs {
			if err := os.Remove(o.Path); err != nil {
				t.Fatal(err)
			}
		}
	}
	g := &issueGate{rt: http.DefaultTransport.(*http.Transport).Clone(), path: "/oauth2/v2.1/tokens/kid",
		arrived: make(chan struct{}, len(h.chans)), release: make(chan struct{})}
	g.armed.Store(true)
	line, err := oauth.NewClient(oauth.Options{BaseURL: h.srv.URL, Timeout: time.Minute, HTTPClient: &http.Client{Transport: g}})
	if err != nil {
		t.Fatal(err)
	}
	h.line, h.opts.LINE = line, line
	h.run() // not start: its settle would wait for the held listings
	select {
	case <-g.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the restart made no key-ID listing")
	}
	if !h.rot.Ready() {
		t.Error("not ready when the restart's first LINE call went out")
	}
	for i, ch := range h.chans {
		if got, err := os.ReadFile(ch.Outputs[0].Path); err != nil || string(got) != toks[i] {
			t.Errorf("%s's raw output does not hold its stored token when the restart's first LINE call went out (%v)", ch.Name, err)
		}
	}
	close(g.release)
	h.stop()
}

// What a reconcile logs about a channel (orphans, a failure), its status
// already shows: not only at the end of the step, after the step's issue
// and revoke calls to LINE, which may take seconds. An operator who reads
// the log line and then asks the socket sees the same.
func TestStatusShowsWhatReconcileLoggedBeforeTheStepsNextCall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, h *harness, ch Channel)
		want  func(st ChannelStatus) string
		log   string
	}{
		{
			name: "orphan",
			setup: func(t *testing.T, h *harness, ch Channel) {
				a := linefake.Assertion(ch.ID, testKID, sharedKey(t), h.clock.Now(), 30*day)
				if _, err := h.line.IssueChannelAccessTokenV2_1(context.Background(), a); err != nil {
					t.Fatal(err)
				}
			},
			want: func(st ChannelStatus) string {
				if st.Orphans != 1 {
					return fmt.Sprintf("orphan_key_ids %d, want 1", st.Orphans)
				}
				return ""
			},
			log: "LINE holds valid tokens tokend does not track (orphans); they count against the limit of 30 until they expire",
		},
		{
			name: "reconcile failure",
			setup: func(_ *testing.T, h *harness, ch Channel) {
				h.sim.SetFault(linefake.EndpointKeyIDsV21, linefake.Fault{Status: http.StatusInternalServerError, Times: 1})
			},
			want: func(st ChannelStatus) string {
				if !strings.Contains(st.LastError, "list valid key IDs") {
					return fmt.Sprintf("last_error %q, want the listing's failure", st.LastError)
				}
				return ""
			},
			log: "reconcile failed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 1, nil)
			g := &issueGate{rt: http.DefaultTransport.(*http.Transport).Clone(), arrived: make(chan struct{}), release: make(chan struct{})}
			line, err := oauth.NewClient(oauth.Options{BaseURL: h.srv.URL, Timeout: time.Minute, HTTPClient: &http.Client{Transport: g}})
			if err != nil {
				t.Fatal(err)
			}
			h.line, h.opts.LINE = line, line
			h.start()
			ch := h.chans[0]
			tc.setup(t, h, ch)
			_, st, _ := h.rot.Token(ch.ID)
			if msg := tc.want(st); msg == "" {
				t.Fatalf("before the reconcile the status already shows it: %+v", st)
			}
			// One jump past the rotation: the step that wakes must reconcile
			// (listing first, the token being served) and then issue.
			g.armed.Store(true)
			h.clock.Advance(st.NextRotation.Sub(h.clock.Now()) + ch.ReconcileEvery)
			select {
			case <-g.arrived:
			case <-time.After(30 * time.Second):
				t.Fatal("the rotation's issue call never came")
			}
			if h.logCount(tc.log) == 0 {
				t.Errorf("%q not logged before the issue call", tc.log)
			}
			_, st, _ = h.rot.Token(ch.ID)
			if msg := tc.want(st); msg != "" {
				t.Errorf("with the step's issue call in flight, after the log said %q, the status says %s", tc.log, msg)
			}
			g.armed.Store(false)
			close(g.release)
			h.settle()
			if h.sim.Count(linefake.EndpointIssueV21) < 2 {
				t.Error("the rotation did not issue")
			}
		})
	}
}

func TestOutageKeepsServingAndRecoversBeforeExpiry(t *testing.T) {
	h := newHarness(t, 1, func(_ int, ch *Channel) {
		ch.TokenTTL, ch.RotateBefore, ch.Jitter = 24*time.Hour, 10*time.Hour, 0
	})
	h.start()
	ch := h.chans[0]
	old := h.current(0)
	oldTok, st, _ := h.rot.Token(ch.ID)
	oldExpiry := oldTok.ExpiresAt
	// Jump to just before rotation; then LINE fails for 6 hours.
	h.advance(st.NextRotation.Sub(h.clock.Now())-time.Minute, nil)
	h.sim.SetFault("issue_v2.1", linefake.Fault{Status: 503})
	h.sim.SetFault("kids_v2.1", linefake.Fault{Status: 503})
	h.sim.ResetRequests()
	var prevAttempt time.Time
	var gaps []time.Duration
	h.advance(6*time.Hour, func() {
		if got := h.current(0); got != old {
			t.Fatalf("token changed during the outage")
		}
		if got := h.readFile(ch.Outputs[0].Path); got != old {
			t.Fatal("output lost the old token during the outage")
		}
		for _, r := range h.sim.Requests() {
			if r.Endpoint == "issue_v2.1" && r.Time.After(prevAttempt) {
				if !prevAttempt.IsZero() {
					gaps = append(gaps, r.Time.Sub(prevAttempt))
				}
				prevAttempt = r.Time
			}
		}
	})
	issues := h.sim.Count("issue_v2.1")
	// 6h with backoff capped at 5m (equal jitter: 2.5-5m) after ~9 fast tries.
	if issues < 60 || issues > 6*60/2.5+12 {
		t.Errorf("%d issue attempts during a 6h outage; want between 60 and %d", issues, int(6*60/2.5+12))
	}
	for _, g := range gaps {
		if g > DefaultRetry.Max {
			t.Errorf("retry gap %s exceeds the cap %s", g, DefaultRetry.Max)
		}
	}
	if h.logCount("issue token failed") == 0 {
		t.Error("failures not logged")
	}
	h.sim.ClearFaults()
	h.advance(DefaultRetry.Max+time.Second, nil)
	got := h.current(0)
	if got == old || !h.sim.IsValid(got) {
		t.Fatal("no new token after LINE recovered")
	}
	if !h.clock.Now().Before(oldExpiry) {
		t.Fatalf("new token issued at %s, after the old one expired at %s", h.clock.Now(), oldExpiry)
	}
	if h.readFile(ch.Outputs[0].Path) != got {
		t.Fatal("new token not published")
	}
}

func TestPermanentErrorsRetrySlowlyWithClearLog(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		log   string
		fix   string
	}{
		{
			name: "30-token refusal",
			setup: func(h *harness) {
				for range 30 {
					a := linefake.Assertion(h.chans[0].ID, testKID, sharedKey(t), h.clock.Now(), 30*day)
					if _, err := h.line.IssueChannelAccessTokenV2_1(context.Background(), a); err != nil {
						t.Fatal(err)
					}
				}
			},
			log: "issue token failed",
			fix: "30 valid v2.1 tokens",
		},
		{
			name: "unknown key",
			setup: func(h *harness) {
				h.chans[0].KeyID = "not-registered"
			},
			log: "reconcile failed",
			fix: "does not know assertion signing key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 1, nil)
			tt.setup(h)
			h.sim.ResetRequests()
			h.start()
			h.advance(6*time.Hour, nil)
			calls := h.sim.Count("issue_v2.1") + h.sim.Count("kids_v2.1")
			// Slow retries: every ~30 min, so about 12 attempts per endpoint over 6h.
			if calls > 30 {
				t.Errorf("%d LINE calls in 6h: tight retry loop", calls)
			}
			entries := h.logs.FilterMessage(tt.log).All()
			if len(entries) == 0 {
				t.Fatalf("no %q log line", tt.log)
			}
			ctx := entries[0].ContextMap()
			fix, _ := ctx["fix"].(string)
			if !strings.Contains(fix, tt.fix) {
				t.Errorf("fix = %q, want it to mention %q", fix, tt.fix)
			}
			if ch := h.chans[0]; ctx["channel_id"] != ch.ID || ctx["channel"] != ch.Label() {
				t.Errorf("log line names channel %v (%v); want %s (%s)", ctx["channel"], ctx["channel_id"], ch.Label(), ch.ID)
			}
			if h.rot.Ready() {
				t.Error("ready without a token")
			}
		})
	}
}

func TestMaxInFlightBoundsLINECalls(t *testing.T) {
	h := newHarness(t, 24, nil)
	h.opts.MaxInFlight = 3
	h.sim.SetFault("issue_v2.1", linefake.Fault{Delay: 20 * time.Millisecond, Times: 0})
	// Delay-only fault: requests are slowed, then answered normally.
	h.start()
	if got := h.sim.MaxConcurrent(); got > 3 || got < 2 {
		t.Errorf("LINE saw %d concurrent calls; want ≤ 3 (and the bound reached)", got)
	}
	if got := h.sim.Count("issue_v2.1"); got != 24 {
		t.Errorf("%d issue calls, want 24", got)
	}
}

func TestKinds(t *testing.T) {
	t.Run("stateless renews every 10 minutes and never revokes", func(t *testing.T) {
		h := newHarness(t, 1, func(_ int, ch *Channel) {
			ch.Kind, ch.TokenTTL, ch.RotateBefore, ch.RevokeAfter, ch.Jitter = KindStateless, 15*time.Minute, 5*time.Minute, 0, 0
		})
		h.start()
		h.advance(time.Hour, func() {
			if h.current(0) == "" {
				t.Fatal("stateless channel lapsed")
			}
		})
		if got := h.sim.Count("issue_stateless"); got != 7 {
			t.Errorf("%d stateless issues in 1h, want 7 (at 0,10,...,60m)", got)
		}
		if got := h.sim.Count("revoke_v2.1") + h.sim.Count("revoke_short"); got != 0 {
			t.Errorf("%d revocations of stateless tokens", got)
		}
	})
	t.Run("short-lived rotates and revokes via /v2/oauth/revoke", func(t *testing.T) {
		h := newHarness(t, 1, func(_ int, ch *Channel) {
			ch.Kind, ch.Key, ch.KeyID = KindShortLived, nil, ""
		})
		h.start()
		first := h.current(0)
		h.advance(22*day, nil)
		if h.current(0) == first {
			t.Fatal("short-lived token not rotated after 22 days")
		}
		if h.sim.IsValid(first) {
			t.Fatal("superseded short-lived token not revoked")
		}
		if h.sim.Count("revoke_short") != 1 {
			t.Errorf("revoke_short calls = %d", h.sim.Count("revoke_short"))
		}
	})
	t.Run("short-lived revoked elsewhere is replaced at the next reconcile", func(t *testing.T) {
		h := newHarness(t, 1, func(_ int, ch *Channel) {
			ch.Kind, ch.Key, ch.KeyID = KindShortLived, nil, ""
		})
		h.start()
		old := h.current(0)
		if err := h.line.RevokeAccessToken(context.Background(), old); err != nil {
			t.Fatal(err)
		}
		h.advance(h.chans[0].ReconcileEvery, nil)
		now := h.current(0)
		if now == old || !h.sim.IsValid(now) || h.readFile(h.chans[0].Outputs[0].Path) != now {
			t.Fatal("a short-lived token revoked behind tokend's back was not replaced and published at the next reconcile")
		}
		if h.logCount("current token is no longer valid at LINE; replacing it") != 1 {
			t.Error("the replacement was not logged once")
		}
	})
}

func TestReload(t *testing.T) {
	h := newHarness(t, 3, nil)
	m := metrics.New()
	h.opts.Metrics = m
	h.start()
	keep := h.current(0)
	removed := h.chans[2]
	added := h.chans[2]
	added.ID, added.Name = "1699999999", "new-bot"
	added.Outputs = []Output{{Path: h.dir + "/new-bot.token", Format: "env", Mode: 0o600}}
	h.sim.AddChannel(added.ID, added.Secret)
	h.sim.RegisterKey(added.ID, testKID, &sharedKey(t).PublicKey)
	changed := h.chans[1]
	changed.Outputs = append(changed.Outputs, Output{Path: h.dir + "/bot-2.env", Format: "env", Mode: 0o600})
	oldName := changed.Name
	changed.Name = "renamed-bot"
	before := h.sim.Count("issue_v2.1")
	if err := h.rot.Reload([]Channel{h.chans[0], changed, added}); err != nil {
		t.Fatal(err)
	}
	h.chans = []Channel{h.chans[0], changed, added}
	h.settle()
	if got := h.sim.Count("issue_v2.1") - before; got != 1 {
		t.Errorf("reload issued %d tokens, want 1 (the new channel)", got)
	}
	if h.current(0) != keep {
		t.Error("reload replaced an unchanged channel's token")
	}
	if _, _, ok := h.rot.Token(removed.ID); ok {
		t.Error("removed channel still served")
	}
	if got := h.readFile(h.dir + "/bot-2.env"); got != "LINE_CHANNEL_ACCESS_TOKEN="+h.current(1)+"\n" {
		t.Error("changed channel's new output not written")
	}
	if got := h.readFile(h.dir + "/new-bot.token"); !strings.HasPrefix(got, "LINE_CHANNEL_ACCESS_TOKEN=") {
		t.Error("added channel's output not written")
	}
	if !h.rot.Ready() {
		t.Error("not ready after reload")
	}
	// The metrics follow: no series is left for the removed channel or
	// under the renamed channel's old name.
	for _, label := range []string{removed.Name, oldName} {
		if got := series(t, m.Registry(), "tokend_token_expiry_timestamp_seconds", map[string]string{"channel": label}); len(got) != 0 {
			t.Errorf("tokend_token_expiry_timestamp_seconds{channel=%q} still exported after reload", label)
		}
	}
	for _, label := range []string{h.chans[0].Name, changed.Name, added.Name} {
		if got := series(t, m.Registry(), "tokend_token_expiry_timestamp_seconds", map[string]string{"channel": label}); len(got) != 1 {
			t.Errorf("tokend_token_expiry_timestamp_seconds{channel=%q}: %d series after reload, want 1", label, len(got))
		}
	}
	// The socket's read table follows: the renamed channel by its new
	// name (its JSON says so), not by its old one; the added channel; not
	// the removed one.
	for _, name := range []string{oldName, removed.Name, removed.ID} {
		if _, found, _ := h.rot.TokenBody(name, output.FormatJSON); found {
			t.Errorf("TokenBody(%s) found after reload", name)
		}
	}
	for _, ch := range []Channel{changed, added} {
		tok, _, _ := h.rot.Token(ch.ID)
		want, _ := output.Render(output.FormatJSON, tok)
		got, found, err := h.rot.TokenBody(ch.Name, output.FormatJSON)
		if !found || err != nil || string(got) != string(want) || !strings.Contains(string(got), `"name":"`+ch.Name+`"`) {
			t.Errorf("TokenBody(%s) after reload: found %v, err %v, body as Render's %v, names it %v", ch.Name, found, err,
				string(got) == string(want), strings.Contains(string(got), ch.Name))
		}
	}
}

func TestRunOnce(t *testing.T) {
	h := newHarness(t, 2, nil)
	rot, err := New(h.chans, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rot.RunOnce(context.Background()); err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if h.sim.Count("issue_v2.1") != 2 {
		t.Fatalf("issue calls = %d", h.sim.Count("issue_v2.1"))
	}
	// Second pass with valid tokens: no issue.
	rot2, _ := New(h.chans, h.opts)
	if err := rot2.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.sim.Count("issue_v2.1") != 2 {
		t.Fatalf("second pass issued again")
	}
	// A pass that cannot get a token for a new channel fails and names it.
	h.sim.SetFault("issue_v2.1", linefake.Fault{Status: 500})
	ch := h.chans[0]
	ch.ID, ch.Name = "1688888888", "broken-bot"
	ch.Outputs = nil
	h.sim.AddChannel(ch.ID, ch.Secret)
	h.sim.RegisterKey(ch.ID, testKID, &sharedKey(t).PublicKey)
	rot3, _ := New(append(h.chans, ch), h.opts)
	err = rot3.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 of 3 channels hold no valid token: broken-bot") {
		t.Fatalf("RunOnce error = %v", err)
	}
	// A pass stopped (a signal) says so, not just "context canceled".
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rot4, _ := New(h.chans, h.opts)
	if err := rot4.RunOnce(ctx); err == nil || !strings.Contains(err.Error(), "stopped before the pass was over") {
		t.Errorf("RunOnce stopped at once: error %v, want it to say the pass was stopped", err)
	}
}

// TestStartBoundsItsSteps: a start with more channels than workers runs
// at most that many steps at once (each step a goroutine and its stack),
// not one per channel.
func TestStartBoundsItsSteps(t *testing.T) {
	const n, workers = 300, 256 // max(32*max_in_flight, 256) for max_in_flight 1
	h := newHarness(t, n, func(_ int, ch *Channel) { ch.Outputs = ch.Outputs[:1] })
	h.opts.MaxInFlight = 1
	var peak int64
	h.opts.LINE = &gatedLINE{LINE: h.line, gate: func() {
		// Hold the first issue while the start begins what steps it will.
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
			peak = max(peak, h.rot.running.Load())
		}
	}}
	h.start()
	if got := h.sim.Count("issue_v2.1"); got != n {
		t.Fatalf("%d issue calls, want %d", got, n)
	}
	// running counts the pass itself as one step.
	if peak > workers+1 || peak < 2 {
		t.Fatalf("%d steps under way at the start's peak, want at most %d", peak-1, workers)
	}
}

// TestRunOnceIssuesBeforeListing: a -once pass over more channels than it
// has workers still makes every issue call before any key-ID listing.
// (With one worker per channel step, the first workers' listings took the
// LINE slot before the channels not yet started had issued.)
func TestRunOnceIssuesBeforeListing(t *testing.T) {
	const n = 300 // more than the 256 workers of max_in_flight 1
	h := newHarness(t, n, func(_ int, ch *Channel) { ch.Outputs = ch.Outputs[:1] })
	h.opts.MaxInFlight = 1
	rot, err := New(h.chans, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rot.RunOnce(context.Background()); err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	issues, early := 0, 0
	for _, r := range h.sim.Requests() {
		switch r.Endpoint {
		case "issue_v2.1":
			issues++
		case "kids_v2.1":
			if issues < n {
				early++
			}
		}
	}
	if issues != n || h.sim.Count("kids_v2.1") != n {
		t.Fatalf("%d issues and %d key-ID listings, want %d of each", issues, h.sim.Count("kids_v2.1"), n)
	}
	if early > 0 {
		t.Errorf("%d key-ID listings came before the last issue; want issues first", early)
	}
}

func TestStoreRecordsLifecycle(t *testing.T) {
	h := newHarness(t, 1, func(_ int, ch *Channel) { ch.Jitter = 0 })
	h.start()
	h.advance(21*day+time.Hour, nil) // rotated at day 20, revoked at day 21
	recs, err := h.store.Channel(h.chans[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	states := map[store.State]int{}
	for _, r := range recs {
		states[r.State]++
	}
	if states[store.StateCurrent] != 1 || states[store.StateRevoked] != 1 {
		t.Errorf("record states %v, want 1 current and 1 revoked", states)
	}
	h.advance(10*day, nil) // the revoked one expires and is dropped
	recs, _ = h.store.Channel(h.chans[0].ID)
	if len(recs) != 1 {
		t.Errorf("%d records after expiry, want 1", len(recs))
	}
}

func TestStartSignsOneAssertionPerChannel(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.start()
	distinct := func(endpoint string) map[string]bool {
		set := map[string]bool{}
		for _, a := range h.assertions(endpoint) {
			set[a] = true
		}
		return set
	}
	kids, issues := distinct("kids_v2.1"), distinct("issue_v2.1")
	if len(kids) != 3 || len(issues) != 3 {
		t.Fatalf("distinct assertions: %d for key IDs, %d for issue; want 3 and 3", len(kids), len(issues))
	}
	// On the frozen clock a second signature would be the same string
	// (PKCS #1 v1.5 is deterministic), so the signatures are counted.
	if n := h.rot.signs.done.Load(); n != 3 {
		t.Errorf("%d signatures for 3 channels' starts, want 3", n)
	}
	for a := range kids {
		if !issues[a] {
			t.Error("start signed separate assertions for listing and issuing")
		}
	}
	// Once the start's listing has used it, no later step could: each
	// channel forgets it rather than hold a live credential for nothing.
	h.rot.mu.Lock()
	defer h.rot.mu.Unlock()
	for _, c := range h.rot.chans {
		c.mu.Lock()
		held := c.assertionText != ""
		c.mu.Unlock()
		if held {
			t.Errorf("channel %s still holds its assertion after its start", c.cfg.ID)
		}
	}
}

// TestAssertionReusedOnlyInItsFirstHalf: a signed assertion is reused
// only while more than half of its lifetime is left. A step that runs late
// (the machine was suspended, the process stopped) signs a fresh one rather
// than send LINE one about to expire, or expired.
func TestAssertionReusedOnlyInItsFirstHalf(t *testing.T) {
	h := newHarness(t, 1, nil)
	// The first issue fails, so the start's listing comes first and the
	// retry is due in under a second: the channel keeps its assertion.
	h.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Status: 500, Times: 1})
	h.start()
	first := h.assertions("issue_v2.1")
	if len(first) != 1 || h.current(0) != "" {
		t.Fatalf("%d issue requests and token %v before the retry, want 1 failed", len(first), h.current(0) != "")
	}
	if kids := h.assertions("kids_v2.1"); len(kids) != 1 || kids[0] != first[0] {
		t.Fatal("the start's listing did not reuse the failed issue's assertion")
	}
	// The retry runs 4 minutes late: past half of the 5-minute lifetime,
	// though the assertion has not expired yet.
	h.clock.Advance(4 * time.Minute)
	h.settle()
	issues := h.assertions("issue_v2.1")
	if h.current(0) == "" || len(issues) != 2 {
		t.Fatalf("%d issue requests after the late retry, want 2, the second answered", len(issues))
	}
	if issues[1] == first[0] {
		t.Error("the late retry reused an assertion with less than half its lifetime left")
	}
}

// TestBurst: many steps in progress at once (a start with many channels)
// make one Burst(true), and one Burst(false) once all have finished; a
// quiet start (fewer steps than BurstSteps) makes no call.
func TestBurst(t *testing.T) {
	for _, tt := range []struct {
		burstSteps int
		want       []bool
	}{{3, []bool{true, false}}, {100, nil}} {
		h := newHarness(t, 8, nil)
		var (
			mu    sync.Mutex
			calls []bool
		)
		h.opts.MaxInFlight = 1 // the 8 first steps queue for one LINE slot
		h.opts.BurstSteps = tt.burstSteps
		h.opts.Burst = func(on bool) {
			mu.Lock()
			calls = append(calls, on)
			mu.Unlock()
		}
		h.start() // returns once every first step has finished
		h.stop()
		mu.Lock()
		if !slices.Equal(calls, tt.want) {
			t.Errorf("BurstSteps %d: Burst calls %v; want %v", tt.burstSteps, calls, tt.want)
		}
		mu.Unlock()
	}
}

// gatedLINE holds the first issue call until gate returns: before LINE
// answers it, or with after, once LINE has answered it.
type gatedLINE struct {
	LINE
	once  sync.Once
	gate  func()
	after bool
}

func (g *gatedLINE) IssueChannelAccessTokenV2_1(ctx context.Context, a string) (*oauth.Token, error) {
	if !g.after {
		g.once.Do(g.gate)
	}
	tok, err := g.LINE.IssueChannelAccessTokenV2_1(ctx, a)
	if g.after {
		g.once.Do(g.gate)
	}
	return tok, err
}

// TestAssertionSignedWhenSent: a step that waits for a LINE slot signs its
// assertion when its call goes out, not when the step began. Here the one
// slot is held for longer than an assertion lives (5 minutes) while the
// other channel's step waits for it: an assertion dated from the step's
// start would reach LINE expired, be refused as a bad client ("Invalid
// exp") and park the channel for 30 minutes.
func TestAssertionSignedWhenSent(t *testing.T) {
	const n = 2
	h := newHarness(t, n, func(_ int, ch *Channel) { ch.Outputs = ch.Outputs[:1] })
	h.opts.MaxInFlight = 1
	h.opts.LINE = &gatedLINE{LINE: h.line, after: true, gate: func() {
		deadline := time.Now().Add(10 * time.Second)
		for h.rot.running.Load() < n && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		h.clock.Advance(oauth.DefaultAssertionLifetime + time.Minute)
	}}
	h.start()
	if got := h.sim.Count("issue_v2.1"); got != n {
		t.Fatalf("%d issue calls, want %d", got, n)
	}
	for i := range n {
		if h.current(i) == "" {
			t.Errorf("%s holds no token after the start", h.chans[i].Name)
		}
	}
	// The one that waited is dated from when its call went out, as a
	// listing judges its age by that (listingGrace).
	var last time.Time
	for _, st := range h.rot.Status() {
		if st.IssuedAt.After(last) {
			last = st.IssuedAt
		}
	}
	if want := t0.Add(oauth.DefaultAssertionLifetime + time.Minute); last.Before(want) {
		t.Errorf("the waiting channel's token issued at %s, want from when its call went out, %s", last, want)
	}
	if got := h.logCount("issue token failed"); got > 0 {
		t.Errorf("%d issues failed, want none: %v", got, h.logs.FilterMessage("issue token failed").All()[0].ContextMap())
	}
}

// listGate holds the first key-ID listing made once armed, after LINE has
// answered it, until gate returns.
type listGate struct {
	LINE
	armed atomic.Bool
	once  sync.Once
	gate  func()
}

func (g *listGate) GetChannelAccessTokenKeyIDsV2_1(ctx context.Context, a string) ([]string, error) {
	kids, err := g.LINE.GetChannelAccessTokenKeyIDsV2_1(ctx, a)
	if g.armed.Load() {
		g.once.Do(g.gate)
	}
	return kids, err
}

// TestListingAssertionSignedWhenSent: the same for a reconcile's key-ID
// listing, which would otherwise fail and leave the channel unreconciled.
func TestListingAssertionSignedWhenSent(t *testing.T) {
	const n = 2
	h := newHarness(t, n, func(_ int, ch *Channel) { ch.Outputs = ch.Outputs[:1]; ch.Jitter = 0 })
	h.opts.MaxInFlight = 1
	waited := false
	lg := &listGate{LINE: h.line}
	lg.gate = func() {
		deadline := time.Now().Add(10 * time.Second)
		for h.rot.running.Load() < n && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		waited = h.rot.running.Load() >= n
		h.clock.Advance(oauth.DefaultAssertionLifetime + time.Minute)
	}
	h.opts.LINE = lg
	h.start()
	listed := h.sim.Count("kids_v2.1")
	lg.armed.Store(true)
	h.clock.Advance(h.nextEvent().Sub(h.clock.Now())) // both reconciles due at once
	h.settle()
	if !waited {
		t.Fatal("the second channel's reconcile never waited for the held listing's slot")
	}
	if got := h.sim.Count("kids_v2.1") - listed; got != n {
		t.Errorf("%d key-ID listings at the reconcile, want %d", got, n)
	}
	if got := h.logCount("reconcile failed"); got > 0 {
		t.Errorf("%d reconciles failed, want none: %v", got, h.logs.FilterMessage("reconcile failed").All()[0].ContextMap())
	}
}

// TestColdStartIssuesBeforeListing: at a cold start every channel's issue
// call goes before any start-up key-ID listing, and every channel is still
// reconciled at start.
func TestColdStartIssuesBeforeListing(t *testing.T) {
	const n = 40
	h := newHarness(t, n, nil)
	h.opts.MaxInFlight = 1
	h.opts.LINE = &gatedLINE{LINE: h.line, gate: func() {
		// Hold the first issue until every channel's step has begun.
		deadline := time.Now().Add(10 * time.Second)
		for h.rot.running.Load() < n && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
	}}
	h.start()
	var order []string
	for _, r := range h.sim.Requests() {
		order = append(order, r.Endpoint)
	}
	lastIssue := slices.Index(order, "issue_v2.1")
	for i, ep := range order {
		if ep == "issue_v2.1" {
			lastIssue = i
		}
	}
	early := 0
	for _, ep := range order[:lastIssue] {
		if ep == "kids_v2.1" {
			early++
		}
	}
	if got := h.sim.Count("issue_v2.1"); got != n {
		t.Fatalf("%d issue calls, want %d", got, n)
	}
	if got := h.sim.Count("kids_v2.1"); got != n {
		t.Fatalf("%d key-ID listings at start, want %d (one per channel)", got, n)
	}
	if early > 0 {
		t.Errorf("%d of %d key-ID listings came before the last channel's issue; want issues first", early, n)
	}
}

// TokenBody serves what Render makes of the current token, renders it
// once per token, follows rotations, and serves nothing once it expired.
func TestTokenBodyFollowsTheToken(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.start()
	ch := h.chans[0]
	check := func() []byte {
		t.Helper()
		tok, _, _ := h.rot.Token(ch.ID)
		for _, format := range []string{output.FormatJSON, output.FormatRaw, output.FormatEnv} {
			want, err := output.Render(format, tok)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{ch.ID, ch.Name} {
				got, found, err := h.rot.TokenBody(key, format)
				if !found || err != nil || string(got) != string(want) {
					t.Fatalf("TokenBody(%s, %s): found %v, err %v, body differs from Render: %v", key, format, found, err, string(got) != string(want))
				}
				got, found, err = h.rot.TokenBodyBytes([]byte(key), format)
				if !found || err != nil || string(got) != string(want) {
					t.Fatalf("TokenBodyBytes(%s, %s): found %v, err %v, body differs from Render: %v", key, format, found, err, string(got) != string(want))
				}
			}
		}
		a, _, _ := h.rot.TokenBody(ch.ID, output.FormatJSON)
		b, _, _ := h.rot.TokenBody(ch.Name, output.FormatJSON)
		if &a[0] != &b[0] {
			t.Fatal("the JSON body was rendered again for the same token")
		}
		return a
	}
	first := string(check())
	h.advance(25*24*time.Hour, nil) // past the rotation window
	if second := string(check()); second == first {
		t.Fatal("the body did not follow the rotation")
	}
	if body, found, err := h.rot.TokenBody("no-such-bot", output.FormatJSON); found || body != nil || err != nil {
		t.Fatalf("unknown channel: found %v, body %v, err %v", found, body != nil, err)
	}
	if body, found, err := h.rot.TokenBodyBytes([]byte("no-such-bot"), output.FormatJSON); found || body != nil || err != nil {
		t.Fatalf("TokenBodyBytes, unknown channel: found %v, body %v, err %v", found, body != nil, err)
	}
	tok, _, _ := h.rot.Token(ch.ID)
	if _, _, err := h.rot.TokenBody(ch.ID, "yaml"); err == nil || strings.Contains(err.Error(), tok.AccessToken) {
		t.Fatalf("unknown format: %v", err)
	}
	h.stop() // nothing rotates it now
	h.clock.Advance(tok.ExpiresAt.Sub(h.clock.Now()) - time.Nanosecond)
	if body, _, _ := h.rot.TokenBody(ch.ID, output.FormatRaw); string(body) != tok.AccessToken {
		t.Fatal("the token is not served in its last nanosecond")
	}
	h.clock.Advance(time.Nanosecond) // its expires_at, the first instant it is invalid
	if body, found, err := h.rot.TokenBody(ch.ID, output.FormatJSON); !found || body != nil || err != nil {
		t.Fatalf("expired token: found %v, body %v, err %v", found, body != nil, err)
	}
}

// TestReloadDropsTheOldKeysAssertion: a channel holding a signed
// assertion (here after a failed issue) whose key changes in a reload
// signs with the new key from then on.
func TestReloadDropsTheOldKeysAssertion(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Status: 500, Times: 1})
	h.start()
	if h.current(0) != "" {
		t.Fatal("the first issue did not fail")
	}
	ch := h.chans[0]
	ch.KeyID = "c8f1a7e2-0000-4000-8000-000000000002"
	h.sim.RegisterKey(ch.ID, ch.KeyID, &sharedKey(t).PublicKey)
	if err := h.rot.Reload([]Channel{ch}); err != nil {
		t.Fatal(err)
	}
	h.chans = []Channel{ch}
	h.advance(time.Second, nil) // past the failed issue's retry
	if h.current(0) == "" {
		t.Fatal("no token after the reload")
	}
	var kids []string
	for _, a := range h.assertions("issue_v2.1") {
		head, _, _ := strings.Cut(a, ".")
		raw, err := base64.RawURLEncoding.DecodeString(head)
		var hdr struct{ Kid string }
		if err != nil || json.Unmarshal(raw, &hdr) != nil {
			t.Fatal("an issue request's assertion has no readable header")
		}
		kids = append(kids, hdr.Kid)
	}
	if want := []string{testKID, ch.KeyID}; !slices.Equal(kids, want) {
		t.Errorf("issue requests signed with key IDs %v, want %v", kids, want)
	}
}

// TestChannelFormatsWithoutSecrets: a Channel printed with any verb, alone,
// through a pointer or in a slice, shows neither the channel secret nor
// the private key.
func TestChannelFormatsWithoutSecrets(t *testing.T) {
	key := sharedKey(t)
	ch := Channel{ID: "1657000001", Name: "bot", Kind: KindV21, KeyID: "kid", Key: key, Secret: "SECRET-chan"}
	leaks := []string{"SECRET-chan", hex.EncodeToString([]byte("SECRET-chan")), key.D.String(), key.D.Text(16), key.Primes[0].String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{ch, &ch, []Channel{ch}, []*Channel{&ch}} {
			got := fmt.Sprintf(verb, v)
			for _, l := range leaks {
				if strings.Contains(got, l) {
					t.Fatalf("Sprintf(%q, %T) shows the channel secret or the private key", verb, v)
				}
			}
		}
	}
	if got, want := ch.String(), "channel{id=1657000001 name=bot kind=v2.1}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestFillKeepsANewerToken: a read renders the token it loaded, but if a
// newer one was published meanwhile the read's body must not go back into
// the slot, or the socket would serve the old token until the next publish.
func TestFillKeepsANewerToken(t *testing.T) {
	at := func(tok string) *served {
		return &served{expires: t0.Add(time.Hour).UnixNano(), token: output.Token{
			ChannelID: "1657000000", AccessToken: tok, TokenType: "Bearer", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour),
		}}
	}
	old, newer := at("old-token"), at("new-token")
	var slot atomic.Pointer[served]
	slot.Store(newer)
	body, err := fill(&slot, old, output.FormatRaw) // loaded before newer was published
	if err != nil || string(body) != "old-token" {
		t.Fatalf("the late read did not get its own token (error %v)", err)
	}
	if got := slot.Load(); got != newer || got.raw != nil {
		t.Fatalf("after a late read the slot holds the older token %v, or a filled copy of the newer one %v; want the newer untouched", got == old || got.token.AccessToken == "old-token", got != newer)
	}
	if _, err := fill(&slot, newer, output.FormatRaw); err != nil {
		t.Fatal(err)
	}
	if got := slot.Load(); got.token.AccessToken != "new-token" || string(got.raw) != "new-token" {
		t.Fatal("a read of the current token did not fill the slot")
	}
}

// Concurrent first reads of a token render it, each serves the same
// bytes, and the slot ends up holding both bodies: later reads share them.
func TestTokenBodyConcurrentFirstReads(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.start()
	defer h.stop()
	ch := h.chans[0]
	tok, _, _ := h.rot.Token(ch.ID)
	want := map[string]string{}
	for _, f := range []string{output.FormatJSON, output.FormatRaw} {
		b, err := output.Render(f, tok)
		if err != nil {
			t.Fatal(err)
		}
		want[f] = string(b)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 32 {
		wg.Go(func() {
			f := output.FormatJSON
			if i%2 == 1 {
				f = output.FormatRaw
			}
			got, found, err := h.rot.TokenBody(ch.Name, f)
			if !found || err != nil || string(got) != want[f] {
				errs <- fmt.Sprintf("%s: found %v, err %v, body as Render's %v", f, found, err, string(got) == want[f])
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for f := range want {
		a, _, _ := h.rot.TokenBody(ch.ID, f)
		b, _, _ := h.rot.TokenBody(ch.Name, f)
		if &a[0] != &b[0] {
			t.Errorf("%s: rendered again after the first reads", f)
		}
	}
}

// TestStartWhileLocksAreTaken: while a start's first steps run, another
// goroutine takes the rotator's lock and then channel locks (the harness's
// settle does, as Reload and arming do), while steps waiting for a LINE
// slot hold their channel's lock. None may wait for the others for good.
// Repeated: the window is narrow.
func TestStartWhileLocksAreTaken(t *testing.T) {
	for i := range 30 {
		h := newHarness(t, 32, nil)
		h.opts.MaxInFlight = 2
		h.start() // settles: polls the rotator's and every channel's lock
		if got := h.sim.Count("issue_v2.1"); got != 32 {
			t.Fatalf("start %d: %d issue calls, want 32", i, got)
		}
		h.stop()
	}
}

// TestKindChangeRevokesOldToken: a channel switched from v2.1 to
// short-lived (here across a restart, whose first step reconciles before
// anything else) supersedes its v2.1 token and revokes it after
// revoke_after. Before, the short-lived reconcile asked LINE's verify
// endpoint about the v2.1 token, took its 400 for "revoked elsewhere" and
// recorded it revoked without a revoke call: valid at LINE for up to 30
// more days, one of the channel's 30.
func TestKindChangeRevokesOldToken(t *testing.T) {
	h := newHarness(t, 1, func(_ int, ch *Channel) { ch.Jitter = 0 })
	h.start()
	old := h.current(0)
	h.stop()
	ch := h.chans[0]
	ch.Kind, ch.Key, ch.KeyID = KindShortLived, nil, ""
	h.chans[0] = ch
	h.start()
	if h.current(0) == old {
		t.Fatal("the v2.1 token is still current after the switch to short-lived")
	}
	if got := h.logCount("current token is no longer valid at LINE; replacing it"); got > 0 {
		t.Errorf("the v2.1 token was judged by the short-lived verify endpoint (%d times)", got)
	}
	h.advance(ch.RevokeAfter+time.Hour, nil)
	if h.sim.IsValid(old) {
		t.Errorf("the superseded v2.1 token is still valid at LINE %s after the switch", ch.RevokeAfter+time.Hour)
	}
}
