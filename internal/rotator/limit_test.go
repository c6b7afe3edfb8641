package rotator

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
)

// lostAnswers lets LINE issue every v2.1 token but, while losing is set,
// loses the answer: the client sees a timeout, as when a network drops
// answers but not requests.
type lostAnswers struct {
	LINE
	losing atomic.Bool
}

func (l *lostAnswers) IssueChannelAccessTokenV2_1(ctx context.Context, a string) (*oauth.Token, error) {
	tok, err := l.LINE.IssueChannelAccessTokenV2_1(ctx, a)
	if err == nil && l.losing.Load() {
		return nil, &oauth.RequestError{Endpoint: "POST /oauth2/v2.1/token", Kind: oauth.KindTimeout, Err: context.DeadlineExceeded}
	}
	return tok, err
}

// TestLostAnswersRetrySlowly: when the answers to a rotation's issue calls
// are lost, each call may still have issued a token the channel can neither
// use nor revoke, one of its 30 until it expires. While it serves a valid
// token with time to spare, tokend retries such a failure slowly (every
// ~30 minutes), so 4 hours of lost answers cost about 8 tokens, not the
// channel's whole limit (every 5 minutes before: 30 in under 3 hours, then
// no rotation at all). When answers come back, the next try rotates.
func TestLostAnswersRetrySlowly(t *testing.T) {
	h := newHarness(t, 1, func(_ int, ch *Channel) { ch.Jitter = 0; ch.Outputs = ch.Outputs[:1] })
	lost := &lostAnswers{LINE: h.line}
	h.opts.LINE = lost
	h.start()
	ch := h.chans[0]
	old := h.current(0)
	_, st, _ := h.rot.Token(ch.ID)
	h.advance(st.NextRotation.Sub(h.clock.Now())-time.Minute, nil)
	lost.losing.Store(true)
	h.advance(4*time.Hour, func() {
		if h.current(0) != old {
			t.Fatalf("served token changed at %s while answers were lost", h.clock.Now())
		}
	})
	issued := len(h.sim.Tokens(ch.ID)) - 1
	if issued < 7 || issued > 10 {
		t.Errorf("%d tokens issued at LINE in 4 h of lost answers, want 7 to 10 (one every 27-33 minutes)", issued)
	}
	if got := h.rot.Status()[0].LastError; !strings.Contains(got, "retrying slowly") {
		t.Errorf("status last_error %q: want it to say the retries are slow, and why", got)
	}
	lost.losing.Store(false)
	h.advance(DefaultRetry.Slow*11/10+time.Second, nil)
	if got := h.current(0); got == old || !h.sim.IsValid(got) {
		t.Fatal("no new valid token once answers came back")
	}
}

// TestRotationHeldNearLimit: a channel whose last key-ID listing showed 25
// or more valid tokens at LINE does not rotate while its current token has
// more than half of rotate_before left: it keeps serving that token, says
// why (an error log with a fix, the status's last_error), and issues no
// token that would leave nothing for the issue that must go through. Then
// it rotates anyway.
func TestRotationHeldNearLimit(t *testing.T) {
	h := newHarness(t, 1, rotatingAt14h) // held until 19 h (5 h left)
	h.start()
	ch := h.chans[0]
	old := h.current(0)
	oldTok, st, _ := h.rot.Token(ch.ID)
	for range nearLimit - 1 { // someone else's tokens: 25 valid in all
		a := linefake.Assertion(ch.ID, testKID, sharedKey(t), h.clock.Now(), 30*day)
		if _, err := h.line.IssueChannelAccessTokenV2_1(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	until := oldTok.ExpiresAt.Add(-ch.RotateBefore / 2)
	h.advance(st.NextRotation.Sub(h.clock.Now())-time.Hour, nil) // a listing sees the 25
	h.sim.ResetRequests()
	h.advance(until.Sub(h.clock.Now())-time.Minute, func() {
		if h.current(0) != old {
			t.Fatalf("rotated at %s with 25 valid tokens at LINE", h.clock.Now())
		}
	})
	if n := h.sim.Count(linefake.EndpointIssueV21); n != 0 {
		t.Errorf("%d issue calls while the rotation was held, want 0", n)
	}
	held := h.logs.FilterMessageSnippet("rotation held").All()
	if len(held) == 0 {
		t.Fatal("no log line says the rotation is held")
	}
	if l := held[0]; l.Level != zapcore.ErrorLevel || l.ContextMap()["fix"] == nil || l.ContextMap()["valid_at_line"] != int64(nearLimit) {
		t.Errorf("log line %s %v: want error level, a fix and valid_at_line %d", l.Level, l.ContextMap(), nearLimit)
	}
	if got := h.rot.Status()[0].LastError; !strings.Contains(got, "rotation held") {
		t.Errorf("status last_error %q: want it to say the rotation is held", got)
	}
	h.advance(2*time.Minute, nil)
	if got := h.current(0); got == old || !h.sim.IsValid(got) {
		t.Fatalf("not rotated at %s, past the hold's end %s", h.clock.Now(), until)
	}
}

// lostRequests fails every v2.1 issue with a timeout, while on, without
// LINE seeing it: a request lost on the way, which tokend cannot tell from
// an answer lost on the way back.
type lostRequests struct {
	LINE
	on    atomic.Bool
	calls atomic.Int64
}

func (l *lostRequests) IssueChannelAccessTokenV2_1(ctx context.Context, a string) (*oauth.Token, error) {
	if l.on.Load() {
		l.calls.Add(1)
		return nil, &oauth.RequestError{Endpoint: "POST /oauth2/v2.1/token", Kind: oauth.KindTimeout, Err: context.DeadlineExceeded}
	}
	return l.LINE.IssueChannelAccessTokenV2_1(ctx, a)
}

// TestHoldListsBeforeHolding: issues with unknown outcomes count toward
// the hold (the last listing's 20 plus 5 that may have been issued), but
// a channel lists again before holding, and a listing that shows room
// (here LINE never saw those requests) lets the retries go on.
func TestHoldListsBeforeHolding(t *testing.T) {
	h := newHarness(t, 1, func(i int, ch *Channel) { rotatingAt14h(i, ch); ch.ReconcileEvery = 12 * time.Hour })
	lost := &lostRequests{LINE: h.line}
	h.opts.LINE = lost
	h.start()
	ch := h.chans[0]
	for range nearLimit - 6 { // 20 valid in all
		a := linefake.Assertion(ch.ID, testKID, sharedKey(t), h.clock.Now(), 30*day)
		if _, err := h.line.IssueChannelAccessTokenV2_1(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	_, st, _ := h.rot.Token(ch.ID)
	h.advance(st.NextRotation.Sub(h.clock.Now())-time.Minute, nil) // the 12 h listing sees the 20
	lost.on.Store(true)
	listed := h.sim.Count(linefake.EndpointKeyIDsV21)
	h.advance(4*time.Hour, nil)
	if n := lost.calls.Load(); n < 7 {
		t.Errorf("%d issue attempts in 4 h, want 7 or more (every ~30 minutes)", n)
	}
	if h.sim.Count(linefake.EndpointKeyIDsV21) == listed {
		t.Error("no key-ID listing once 20 + 5 tokens may have been valid at LINE")
	}
	if n := h.logs.FilterMessageSnippet("rotation held").Len(); n != 0 {
		t.Errorf("%d log lines say the rotation is held; the listing showed room", n)
	}
}

// laggingList leaves out of every key-ID listing the key IDs it was told
// to hide: a LINE whose list lags its issues.
type laggingList struct {
	LINE
	mu     sync.Mutex
	hidden map[string]bool
}

func (l *laggingList) GetChannelAccessTokenKeyIDsV2_1(ctx context.Context, a string) ([]string, error) {
	kids, err := l.LINE.GetChannelAccessTokenKeyIDsV2_1(ctx, a)
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.DeleteFunc(kids, func(k string) bool { return l.hidden[k] }), err
}

func (l *laggingList) IssueChannelAccessTokenV2_1(ctx context.Context, a string) (*oauth.Token, error) {
	tok, err := l.LINE.IssueChannelAccessTokenV2_1(ctx, a)
	if err == nil {
		l.mu.Lock()
		l.hidden[tok.KeyID] = true
		l.mu.Unlock()
	}
	return tok, err
}

// TestFreshTokenNotJudgedByListing: the listing right after a start's
// issue does not have the new token yet (LINE's list lags): the token is
// not taken for revoked elsewhere, so no second token is issued. A listing
// that still lacks it once it is older than listingGrace (the next
// reconcile, an hour later) does replace it.
func TestFreshTokenNotJudgedByListing(t *testing.T) {
	h := newHarness(t, 1, func(_ int, ch *Channel) { ch.Outputs = ch.Outputs[:1] })
	h.opts.LINE = &laggingList{LINE: h.line, hidden: map[string]bool{}}
	h.start()
	if n := h.sim.Count(linefake.EndpointIssueV21); n != 1 || h.sim.Count(linefake.EndpointKeyIDsV21) != 1 {
		t.Fatalf("%d issues and %d listings at start, want 1 of each", n, h.sim.Count(linefake.EndpointKeyIDsV21))
	}
	h.advance(time.Hour+time.Minute, nil)
	if n := h.sim.Count(linefake.EndpointIssueV21); n != 2 {
		t.Errorf("%d issues after a listing an hour later still lacked the token, want 2 (it is replaced)", n)
	}
}

// TestHoldRecordsAnIssuedToken: a rotation held near LINE's limit still
// records a token LINE already issued (its commit failed): that costs
// nothing at LINE, and held, the token stayed unpublished until half of
// rotate_before was left, counting as one of the 25 that held it.
func TestHoldRecordsAnIssuedToken(t *testing.T) {
	h := newHarness(t, 1, rotatingAt14h)
	ch := h.chans[0]
	st := &commitFailStore{Store: h.store, id: ch.ID}
	h.store, h.opts.Store = st, st
	h.start()
	for range nearLimit - 2 { // someone else's: 24 valid with tokend's
		a := linefake.Assertion(ch.ID, testKID, sharedKey(t), h.clock.Now(), 30*day)
		if _, err := h.line.IssueChannelAccessTokenV2_1(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	_, status, _ := h.rot.Token(ch.ID)
	st.failing.Store(true)
	h.advance(status.NextRotation.Sub(h.clock.Now())+90*time.Minute, nil) // the rotation's commit fails; a listing sees 25
	issued := h.sim.Tokens(ch.ID)
	if len(issued) != nearLimit {
		t.Fatalf("%d tokens at LINE, want %d", len(issued), nearLimit)
	}
	st.failing.Store(false)
	h.advance(10*time.Minute, nil)
	if got, want := h.current(0), issued[len(issued)-1].AccessToken; got != want {
		t.Error("the token LINE issued at the rotation is not recorded and served 10 minutes after the store recovered")
	}
	if n := len(h.sim.Tokens(ch.ID)); n != nearLimit {
		t.Errorf("%d tokens at LINE, want %d: recording the issued token asks LINE for nothing", n, nearLimit)
	}
}
