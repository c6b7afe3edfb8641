package rotator

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/hooks"
	"github.com/tokend/tokend/internal/metrics"
	"github.com/tokend/tokend/internal/store"
)

// commitFailStore fails every Put that holds a record of channel id while
// failing is set, as a store whose commits fail at run time would (a full
// disk, an I/O error).
type commitFailStore struct {
	Store
	id      string
	failing atomic.Bool
	fails   atomic.Int64
}

// failCommits makes the harness's store fail every commit of channel id
// from now on, until its failing is cleared.
func (h *harness) failCommits(id string) *commitFailStore {
	st := &commitFailStore{Store: h.store, id: id}
	st.failing.Store(true)
	h.store, h.opts.Store = st, st
	return st
}

func (s *commitFailStore) Put(recs ...store.Record) error {
	if s.failing.Load() {
		for _, r := range recs {
			if r.ChannelID == s.id {
				s.fails.Add(1)
				return errors.New("store: put: commit: input/output error")
			}
		}
	}
	return s.Store.Put(recs...)
}

// TestStoreCommitFailure: a token tokend could not record is never
// published (DESIGN: every change committed before it is published), and
// not thrown away either: each later try records it instead of asking LINE
// for another, which would count against LINE's limit of 30 until it
// expired (before, three hours of failing commits used up all 30). While
// bot-1's commits fail it has no file and no token on the socket (or, at
// a rotation, keeps serving its old one), tokend is not ready, the
// failure is logged without the token, and bot-2 is served as usual. Once
// the store recovers, the retry records the same token, then publishes it.
func TestStoreCommitFailure(t *testing.T) {
	h := newHarness(t, 2, func(_ int, ch *Channel) { ch.Jitter = 0 })
	bot1 := h.chans[0]
	st := h.failCommits(bot1.ID)
	h.start()
	h.advance(3*time.Hour, nil)

	issued := h.sim.Tokens(bot1.ID)
	if n := st.fails.Load(); n < 10 || len(issued) != 1 {
		t.Fatalf("in 3 h of failing commits: %d commits tried, %d tokens issued at LINE; want 10 or more, and 1", n, len(issued))
	}
	for _, o := range bot1.Outputs {
		if _, err := os.Stat(o.Path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: stat error %v, want none written: a token was published without being recorded", o.Path, err)
		}
	}
	if body, found, err := h.rot.TokenBody(bot1.Name, "raw"); !found || body != nil || err != nil {
		t.Errorf("the socket's answer for bot-1: %d bytes, found %v, error %v; want no token", len(body), found, err)
	}
	if h.rot.Ready() {
		t.Error("ready although bot-1 holds no recorded token")
	}
	if h.current(1) == "" {
		t.Error("bot-2 holds no token: one channel's failing commits held up another")
	}
	const msg = "cannot record issued token; keeping it to record at the next try"
	logs := h.logs.FilterMessage(msg).All()
	if int64(len(logs)) != st.fails.Load() {
		t.Errorf("%d log lines %q for %d failed commits", len(logs), msg, st.fails.Load())
	}
	for _, l := range logs {
		f := l.ContextMap()
		line := fmt.Sprint(f)
		if f["channel"] != bot1.Name || !strings.Contains(line, "input/output error") {
			t.Errorf("log line %v: want channel %s and the store's error", f, bot1.Name)
		}
		if strings.Contains(line, issued[0].AccessToken) {
			t.Fatal("the log line holds the token")
		}
	}
	if n := h.logs.FilterMessageSnippet("orphans").Len(); n != 0 {
		t.Errorf("%d log lines about orphans: the token tokend keeps is not one", n)
	}

	// The store recovers: the same token is recorded, then published.
	st.failing.Store(false)
	h.advance(10*time.Minute, nil)
	tok := recorded(t, h, st, 0)
	if tok != issued[0].AccessToken || len(h.sim.Tokens(bot1.ID)) != 1 {
		t.Fatal("bot-1 did not record and serve the token LINE issued while its commits failed")
	}

	// Its rotation (at 20 days) while the commits fail again: the old
	// token stays served and in the files, and LINE issues one new token.
	st.failing.Store(true)
	h.advance(20*24*time.Hour+3*time.Hour-h.clock.Since(t0), nil)
	if got := h.current(0); got != tok {
		t.Fatal("bot-1 stopped serving its valid token while its rotation could not be recorded")
	}
	if got := h.readFile(bot1.Outputs[0].Path); got != tok {
		t.Fatal("bot-1's file lost its valid token while its rotation could not be recorded")
	}
	if n := len(h.sim.Tokens(bot1.ID)); n != 2 {
		t.Fatalf("%d tokens issued at LINE for bot-1, want 2: one per rotation, however many commits fail", n)
	}
	st.failing.Store(false)
	h.advance(10*time.Minute, nil)
	if next := recorded(t, h, st, 0); next == tok || next != h.sim.Tokens(bot1.ID)[1].AccessToken {
		t.Fatal("bot-1 did not record and serve its rotated token once the store recovered")
	}
}

// recorded returns the token channel i serves after checking it is valid
// at LINE, its current record in the store, in its raw output, and that
// tokend is ready.
func recorded(t *testing.T, h *harness, st *commitFailStore, i int) string {
	t.Helper()
	ch := h.chans[i]
	tok := h.current(i)
	if tok == "" || !h.sim.IsValid(tok) {
		t.Fatalf("%s holds no valid token", ch.Name)
	}
	recs, err := st.Store.Channel(ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	current := 0
	for _, r := range recs {
		if r.State == store.StateCurrent {
			current++
			if r.AccessToken != tok {
				t.Errorf("%s serves a token that is not its current record", ch.Name)
			}
		}
	}
	if current != 1 {
		t.Errorf("%s has %d current records, want 1", ch.Name, current)
	}
	if got := h.readFile(ch.Outputs[0].Path); got != tok {
		t.Errorf("%s's raw output does not hold the token it serves", ch.Name)
	}
	if !h.rot.Ready() {
		t.Error("not ready after the store recovered")
	}
	return tok
}

// TestUnrecordedRevokedAtEnd: a token LINE issued whose commit failed is
// revoked when the run ends, by run -once or by a stop: the process would
// lose it, and it would count toward the channel's 30 valid tokens until
// it expired, one more at each run from cron while the store cannot
// commit (three runs left three valid at LINE before). The other channel's
// token, recorded, is not touched.
func TestUnrecordedRevokedAtEnd(t *testing.T) {
	for _, once := range []bool{true, false} {
		t.Run(map[bool]string{true: "run -once", false: "stop"}[once], func(t *testing.T) {
			h := newHarness(t, 2, func(_ int, ch *Channel) { ch.Jitter = 0 })
			bot1, bot2 := h.chans[0], h.chans[1]
			st := &commitFailStore{Store: h.store, id: bot1.ID}
			st.failing.Store(true)
			h.store, h.opts.Store = st, st
			for run := 1; run <= 3; run++ {
				if once {
					rot, err := New(h.chans, h.opts)
					if err != nil {
						t.Fatal(err)
					}
					if err := rot.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), bot1.Name) {
						t.Fatalf("run %d: RunOnce error %v, want it to name %s", run, err, bot1.Name)
					}
				} else {
					h.start()
					h.stop()
				}
				if valid := h.sim.ValidKeyIDs(bot1.ID); len(valid) != 0 {
					t.Fatalf("run %d: %d of bot-1's tokens valid at LINE after the run ended, want 0", run, len(valid))
				}
			}
			if n := len(h.sim.Tokens(bot1.ID)); n != 3 {
				t.Errorf("%d tokens issued for bot-1 in 3 runs, want 3", n)
			}
			if valid := h.sim.ValidKeyIDs(bot2.ID); len(valid) != 1 {
				t.Errorf("%d of bot-2's tokens valid at LINE, want its one recorded token", len(valid))
			}
			const msg = "revoked a token tokend could not record before it stopped (its commit failed)"
			if got := h.logCount(msg); got != 3 {
				t.Errorf("%d log lines %q, want 3", got, msg)
			}
		})
	}
}

// TestUnrecordedRevokedAtRemoval: a channel removed by a reload while it
// holds a token LINE issued whose commit failed has that token revoked:
// no one would record it any more, and it would count toward the channel's
// 30 valid tokens until it expired.
func TestUnrecordedRevokedAtRemoval(t *testing.T) {
	h := newHarness(t, 2, func(_ int, ch *Channel) { ch.Jitter = 0 })
	bot1 := h.chans[0]
	h.failCommits(bot1.ID)
	h.start()
	if n := len(h.sim.ValidKeyIDs(bot1.ID)); n != 1 {
		t.Fatalf("%d of bot-1's tokens valid at LINE before the reload, want the 1 it could not record", n)
	}
	if err := h.rot.Reload(h.chans[1:]); err != nil {
		t.Fatal(err)
	}
	h.chans = h.chans[1:]
	if n := len(h.sim.ValidKeyIDs(bot1.ID)); n != 0 {
		t.Errorf("%d of the removed bot-1's tokens valid at LINE after the reload, want 0", n)
	}
	const msg = "revoked a token tokend could not record before its channel was removed (its commit failed)"
	if got := h.logCount(msg); got != 1 {
		t.Errorf("%d log lines %q, want 1", got, msg)
	}
}

// TestUnrecordedRevokedBesideHooks: at a stop, a token whose commit failed
// is revoked while another channel's hook still runs, not after it: a stop
// waits for the longer of the two, not their sum (the hook may run until
// it is killed, line.timeout + 5 s after the stop).
func TestUnrecordedRevokedBesideHooks(t *testing.T) {
	h := newHarness(t, 2, func(_ int, ch *Channel) { ch.Jitter = 0 })
	bot1, bot2 := h.chans[0], h.chans[1]
	h.chans[1].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	h.failCommits(bot1.ID)
	h.opts.StopTimeout = 2 * time.Second
	started := make(chan struct{})
	var validAtHookEnd atomic.Int64
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, ev hooks.Event, _ *zap.Logger) error {
		if ev.ChannelID != bot2.ID {
			return nil
		}
		close(started)
		<-ctx.Done() // a hook that runs until it is killed
		validAtHookEnd.Store(int64(len(h.sim.ValidKeyIDs(bot1.ID))))
		return ctx.Err()
	}
	h.run()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("bot-2's hook did not start")
	}
	h.stop()
	if n := validAtHookEnd.Load(); n != 0 {
		t.Errorf("%d of bot-1's unrecorded tokens still valid at LINE when bot-2's hook was killed: revoked after the hooks, not beside them", n)
	}
	if n := len(h.sim.ValidKeyIDs(bot1.ID)); n != 0 {
		t.Errorf("%d of bot-1's tokens valid at LINE after the stop, want 0", n)
	}
}

// stuckListing blocks the key-ID listings of channel id, once armed, until
// release is closed: a step that outlives the scheduler's stop.
type stuckListing struct {
	LINE
	id      string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *stuckListing) GetChannelAccessTokenKeyIDsV2_1(ctx context.Context, a string) ([]string, error) {
	if forChannel(a, s.id) && s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		<-s.release
	}
	return s.LINE.GetChannelAccessTokenKeyIDsV2_1(ctx, a)
}

// TestUnrecordedRevokedPastAStuckStep: a step still under way when the
// scheduler's stop gives up (its channel stays locked) does not keep other
// channels' unrecorded tokens from being revoked: each channel is tried
// on its own, and a busy one is skipped. Waited for in turn, the stuck one
// used up the time, and the others' tokens stayed valid at LINE.
func TestUnrecordedRevokedPastAStuckStep(t *testing.T) {
	h, _ := stopPastAStuckStep(t, func(h *harness) { h.opts.StopTimeout = 500 * time.Millisecond })
	if n := len(h.sim.ValidKeyIDs(h.chans[1].ID)); n != 0 {
		t.Errorf("%d of bot-2's unrecorded tokens valid at LINE after the stop, want 0", n)
	}
}

// stopPastAStuckStep runs two channels, bot-2's commits failing (it holds
// an unrecorded token), with set applied to the options; sticks bot-1's next
// reconcile in its key-ID listing; stops the rotator; and returns once Run
// has (with "stop scheduler: timed out", the stuck step), and how long the
// stop took.
func stopPastAStuckStep(t *testing.T, set func(*harness)) (*harness, time.Duration) {
	t.Helper()
	h := newHarness(t, 2, func(_ int, ch *Channel) { ch.Jitter = 0 })
	bot1, bot2 := h.chans[0], h.chans[1]
	h.failCommits(bot2.ID)
	set(h)
	stuck := &stuckListing{LINE: h.line, id: bot1.ID, entered: make(chan struct{}), release: make(chan struct{})}
	h.opts.LINE = stuck
	h.start()
	t.Cleanup(func() { close(stuck.release) })
	stuck.armed.Store(true)
	h.clock.Advance(bot1.ReconcileEvery) // bot-1's reconcile lists, and sticks
	select {
	case <-stuck.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no listing got stuck")
	}
	stopAt := time.Now()
	h.cancel()
	h.cancel = nil
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s")
	}
	return h, time.Since(stopAt)
}

// forChannel reports whether assertion a is channel id's (its claims name
// it as the issuer).
func forChannel(a, id string) bool {
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		return false
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	return err == nil && strings.Contains(string(claims), `"iss":"`+id+`"`)
}

// TestStopWithinItsGrace: a stop with a step stuck past the scheduler's
// stop, holding the only LINE slot, and an unrecorded token to revoke ends
// about StopTimeout after the signal (plus a second at most for the
// revocations), not twice StopTimeout: the revocations' deadline counts
// from the stop, and their LINE calls end with it. With the defaults that
// was 15 + 15 s and more, past systemd's 30 s grace.
func TestStopWithinItsGrace(t *testing.T) {
	const stopTimeout = 3 * time.Second
	_, d := stopPastAStuckStep(t, func(h *harness) { h.opts.MaxInFlight, h.opts.StopTimeout = 1, stopTimeout })
	if d > stopTimeout+2*time.Second {
		t.Errorf("the stop took %s; want about StopTimeout (%s) and a second at most", d.Round(10*time.Millisecond), stopTimeout)
	}
}

// TestRemovedChannelMetricsForgotten: the revocation of a removed channel's
// unrecorded token counts in a series under its label, which is then
// forgotten, also when a channel the reload adds has that label as its ID
// (the lookup holds IDs and names alike; only a channel with the same
// label keeps the series).
func TestRemovedChannelMetricsForgotten(t *testing.T) {
	h := newHarness(t, 1, func(_ int, ch *Channel) { ch.Jitter = 0; ch.Name = "1699999999" })
	m := metrics.New()
	h.opts.Metrics = m
	old := h.chans[0]
	h.failCommits(old.ID)
	h.start()
	added := old
	added.ID, added.Name = "1699999999", "new-bot"
	h.sim.AddChannel(added.ID, added.Secret)
	h.sim.RegisterKey(added.ID, testKID, &sharedKey(t).PublicKey)
	if err := h.rot.Reload([]Channel{added}); err != nil {
		t.Fatal(err)
	}
	h.chans = []Channel{added}
	if len(h.sim.ValidKeyIDs(old.ID)) != 0 {
		t.Fatal("the removed channel's unrecorded token is still valid at LINE")
	}
	if got := series(t, m.Registry(), "tokend_revocations_total", map[string]string{"channel": old.Label()}); len(got) != 0 {
		t.Errorf("tokend_revocations_total{channel=%q} = %v after the channel was removed, want no series", old.Label(), got)
	}
}
