package rotator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/hooks"
	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/metrics"
	"github.com/tokend/tokend/internal/store"
)

// TestHookOutputRedacted: a hook that prints the channel's tokens (here a
// cat of its output, before and after a rotation) and secret is logged
// with each of them as [redacted].
func TestHookOutputRedacted(t *testing.T) {
	h := newHarness(t, 1, nil)
	ch := &h.chans[0]
	ch.Hooks = []hooks.Spec{{Exec: []string{"/bin/sh", "-c", "cat \"$TOKEND_OUTPUT_0\"; echo; echo " + ch.Secret + "; cat \"$TOKEND_OUTPUT_0.old\" 2>/dev/null; cp \"$TOKEND_OUTPUT_0\" \"$TOKEND_OUTPUT_0.old\""}}}
	h.start()
	defer h.stop()
	h.rot.hooksWG.Wait()
	h.advance(ch.TokenTTL-ch.RotateBefore+time.Hour, nil) // one rotation: the hook also prints the superseded token
	h.rot.hooksWG.Wait()

	ran := h.logs.FilterMessage("hook ran").All()
	if len(ran) != 2 {
		t.Fatalf("%d hook runs logged; want 2 (the first token, the rotation)", len(ran))
	}
	if out, _ := ran[1].ContextMap()["stdout"].(string); out != "[redacted]\n[redacted]\n[redacted]" {
		t.Errorf("the rotation's hook logged stdout %q, want the new token, the secret and the old token redacted", out)
	}
	secrets := []string{ch.Secret}
	for _, s := range h.sim.Tokens(ch.ID) {
		secrets = append(secrets, s.AccessToken)
	}
	for _, e := range h.logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Fatalf("a log line holds a secret: %s", e.Message)
			}
		}
	}
}

// TestStopKillsHooks: a stop waits for a hook still running no longer than
// StopTimeout, then ends its context (an exec hook's process group is
// killed): not up to the hook's own timeout, which would outlast a
// service manager's stop grace.
func TestStopKillsHooks(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.chans[0].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	started, ended := make(chan struct{}), make(chan error, 1)
	h.opts.StopTimeout = 200 * time.Millisecond
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		close(started)
		<-ctx.Done() // a hook that would run far longer
		ended <- ctx.Err()
		return ctx.Err()
	}
	h.run()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the hook did not start")
	}
	h.stop() // fails unless Run returns within 10s
	select {
	case err := <-ended:
		if err == nil {
			t.Error("the hook's context did not end")
		}
	default:
		t.Error("Run returned before the hook ended")
	}
}

// TestRunOnceStopKillsHooks: the same for run -once stopped by a signal.
func TestRunOnceStopKillsHooks(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.chans[0].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	started := make(chan struct{})
	h.opts.StopTimeout = 200 * time.Millisecond
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	rot, err := New(h.chans, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rot.RunOnce(ctx) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the hook did not start")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunOnce still waiting for the hook 10s after its context ended")
	}
}

// TestHooksRunAfterRestartCompletesOutputs: a token recorded by a process
// that stopped before every output had it (here an output directory was
// missing) gets its hooks from the next process, once that one has written
// it everywhere; a restart whose outputs already hold the token runs none.
func TestHooksRunAfterRestartCompletesOutputs(t *testing.T) {
	h := newHarness(t, 1, nil)
	ch := &h.chans[0]
	later := t.TempDir() + "/later"
	ch.Outputs = append(ch.Outputs, Output{Path: later + "/bot.token", Format: "raw", Mode: 0o600})
	ch.Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	var mu sync.Mutex
	var runs []time.Time // each hook run: the token's expiry
	h.opts.Hooks = func(_ context.Context, _ []hooks.Spec, ev hooks.Event, _ *zap.Logger) error {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, ev.ExpiresAt)
		return nil
	}
	count := func() int {
		h.rot.hooksWG.Wait()
		mu.Lock()
		defer mu.Unlock()
		return len(runs)
	}

	h.start() // issues; the output in later/ fails
	if n := count(); n != 0 {
		t.Fatalf("%d hook runs with an output unwritten; want 0", n)
	}
	h.stop()
	if err := os.Mkdir(later, 0o700); err != nil {
		t.Fatal(err)
	}
	h.start() // the recorded token, written to later/ at last
	if n := count(); n != 1 {
		t.Fatalf("%d hook runs after the restart wrote the missing output; want 1", n)
	}
	if n := h.sim.Count(linefake.EndpointIssueV21); n != 1 {
		t.Errorf("%d issue calls; want the recorded token reused", n)
	}
	h.stop()
	h.start() // every output holds the token already
	if n := count(); n != 1 {
		t.Errorf("%d hook runs after a restart that wrote nothing; want still 1", n)
	}
	h.stop()
}

// hooksDue reads whether the store's current record for channel 0 has its
// hooks due.
func (h *harness) hooksDue() bool {
	h.t.Helper()
	recs, err := h.store.Channel(h.chans[0].ID)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range recs {
		if r.State == store.StateCurrent {
			return r.HooksDue
		}
	}
	h.t.Fatal("no current record")
	return false
}

// hooksDueCount counts the channels whose current record has hooks due.
func (h *harness) hooksDueCount() int {
	h.t.Helper()
	due := 0
	for _, ch := range h.chans {
		recs, err := h.store.Channel(ch.ID)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.State == store.StateCurrent && rec.HooksDue {
				due++
			}
		}
	}
	return due
}

// TestHooksDueSurviveStop: hooks a stop cut short (here killed after
// StopTimeout; a process killed outright leaves the same record) run at
// the next start, although every output already holds the token; hooks
// that ran are recorded as such, and run no more.
func TestHooksDueSurviveStop(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.chans[0].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	h.opts.StopTimeout = 50 * time.Millisecond
	var mu sync.Mutex
	runs, block := 0, true
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		mu.Lock()
		runs++
		b := block
		mu.Unlock()
		if b {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	count := func() int {
		h.rot.hooksWG.Wait()
		mu.Lock()
		defer mu.Unlock()
		return runs
	}

	h.start()
	if !h.hooksDue() {
		t.Fatal("the token was recorded without its hooks due")
	}
	h.stop() // kills the hook
	if !h.hooksDue() {
		t.Fatal("hooks killed at a stop were recorded as run")
	}
	mu.Lock()
	block = false
	mu.Unlock()
	h.start() // every output holds the token: only the record says hooks are due
	if n := count(); n != 2 {
		t.Fatalf("%d hook runs after a restart with hooks due; want 2", n)
	}
	if h.hooksDue() {
		t.Error("hooks that ran are still recorded as due")
	}
	if n := h.sim.Count(linefake.EndpointIssueV21); n != 1 {
		t.Errorf("%d issue calls; want the recorded token reused", n)
	}
	h.stop()
	h.start()
	if n := count(); n != 2 {
		t.Errorf("%d hook runs after a restart with none due; want still 2", n)
	}
	h.stop()
}

// TestHooksDueClearedWithoutHooks: a token recorded with hooks due whose
// channel has none at the next start (a config change) is recorded as
// having none due, and a channel without hooks records none.
func TestHooksDueClearedWithoutHooks(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.chans[0].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	h.opts.StopTimeout = 50 * time.Millisecond
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		<-ctx.Done()
		return ctx.Err()
	}
	h.start()
	h.stop()
	if !h.hooksDue() {
		t.Fatal("hooks killed at a stop were recorded as run")
	}
	h.chans[0].Hooks = nil
	h.start()
	if h.hooksDue() {
		t.Error("hooks still due for a channel that has none")
	}
	h.stop()

	h = newHarness(t, 1, nil)
	h.start()
	if h.hooksDue() {
		t.Error("a channel without hooks recorded its token with hooks due")
	}
	h.stop()
}

// TestHooksDueOnRotation: a rotation records the new token with its hooks
// due and the superseded one without, even while the superseded token's
// hooks still run; the end of those does not clear the new token's record,
// the end of its own does.
func TestHooksDueOnRotation(t *testing.T) {
	h := newHarness(t, 1, nil)
	ch := &h.chans[0]
	ch.Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	release := holdHooks(h)
	h.start()
	defer h.stop()
	h.advance(ch.TokenTTL-ch.RotateBefore+time.Hour, nil) // the first token's hooks still running
	recs, err := h.store.Channel(ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records; want the superseded token and its successor", len(recs))
	}
	var old string
	for _, r := range recs {
		if want := r.State == store.StateCurrent; r.HooksDue != want {
			t.Errorf("%s record: HooksDue %t; want %t", r.State, r.HooksDue, want)
		}
		if r.State != store.StateCurrent {
			old = r.ID
		}
	}
	h.rot.hooksRan(h.rot.chans[ch.ID], old) // the superseded token's hooks end first
	if !h.hooksDue() {
		t.Error("the superseded token's hooks ending cleared its successor's")
	}
	close(release)
	h.rot.hooksWG.Wait()
	if h.hooksDue() {
		t.Error("the rotation's hooks ran and are still recorded as due")
	}
}

// TestHooksRanUnrecorded: when the store cannot record that the hooks ran,
// that is logged (without the token) and they stay due, for the next start.
func TestHooksRanUnrecorded(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.chans[0].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	release := holdHooks(h)
	st := &commitFailStore{Store: h.store, id: h.chans[0].ID}
	h.opts.Store = st
	h.start()
	defer h.stop()
	st.failing.Store(true)
	close(release)
	h.rot.hooksWG.Wait()
	const msg = "cannot record that the hooks ran; the next start runs them again"
	logs := h.logs.FilterMessage(msg).All()
	if len(logs) != 1 || st.fails.Load() != 1 {
		t.Fatalf("%d log lines %q for %d failed commits; want 1 and 1", len(logs), msg, st.fails.Load())
	}
	if !h.hooksDue() {
		t.Error("hooks recorded as run although the commit failed")
	}
	tok := h.current(0)
	for _, e := range h.logs.All() {
		if strings.Contains(e.Message+" "+fmt.Sprint(e.ContextMap()), tok) {
			t.Fatalf("a log line holds the token: %s", e.Message)
		}
	}
}

// holdHooks makes h's hook runs wait until release is closed (or sent on,
// once per run) or their context ends.
func holdHooks(h *harness) (release chan struct{}) {
	release = make(chan struct{})
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	return release
}

// TestHooksBounded: channels' hooks run MaxHooksInFlight at a time; the
// rest wait their turn and run as slots free, every one of them. At a
// stop, hooks still waiting are not started: their records keep them due
// for the next start.
func TestHooksBounded(t *testing.T) {
	const n, limit = 10, 3
	h := newHarness(t, n, func(_ int, ch *Channel) {
		ch.Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	})
	h.opts.MaxHooksInFlight = limit
	h.opts.StopTimeout = 50 * time.Millisecond
	var mu sync.Mutex
	running, most, ended := 0, 0, map[string]bool{}
	release := make(chan struct{})
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, ev hooks.Event, _ *zap.Logger) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		running--
		ended[ev.ChannelID] = true
		mu.Unlock()
		return ctx.Err()
	}
	state := func() (int, int, int) { // running, the most at once, ended
		mu.Lock()
		defer mu.Unlock()
		return running, most, len(ended)
	}
	h.start() // every channel's first token written: all n hooks due at once
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if r, _, _ := state(); r == limit {
			break
		}
		if time.Now().After(deadline) {
			r, _, _ := state()
			t.Fatalf("%d hooks running; want %d", r, limit)
		}
	}
	for range 4 { // four finish: four more start
		select {
		case release <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("no running hook took its release")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if r, _, done := state(); r == limit && done == 4 {
			break
		}
		if time.Now().After(deadline) {
			r, _, done := state()
			t.Fatalf("after four finished: %d running, %d done; want %d and 4", r, done, limit)
		}
	}
	h.stop() // three running are killed; the three still waiting never start
	r, m, done := state()
	if m != limit {
		t.Errorf("at most %d hooks ran at once; want %d", m, limit)
	}
	if r != 0 || done != 4+limit {
		t.Errorf("after the stop: %d running, %d started; want 0 and %d", r, done, 4+limit)
	}
	due := h.hooksDueCount()
	if due != n-4 {
		t.Errorf("%d channels' records have hooks due after the stop; want %d (killed or never started)", due, n-4)
	}
}

// TestHooksBoundDefault: without MaxHooksInFlight (the daemon sets none),
// DefaultMaxHooksInFlight channels' hooks run at once, as README says.
func TestHooksBoundDefault(t *testing.T) {
	h := newHarness(t, 1, nil)
	rot, err := New(h.chans, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cap(rot.hookSlots); got != DefaultMaxHooksInFlight || DefaultMaxHooksInFlight != 32 {
		t.Errorf("hooks run %d at once by default (DefaultMaxHooksInFlight %d); want 32", got, DefaultMaxHooksInFlight)
	}
}

// TestHooksWaitingAtStopDoNotStart: hooks waiting for a slot when a stop
// comes never start, even if the slot frees before the stop's kill: they
// stay due for the next start, and the stop does not wait for them.
func TestHooksWaitingAtStopDoNotStart(t *testing.T) {
	h := newHarness(t, 3, func(_ int, ch *Channel) {
		ch.Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	})
	h.opts.MaxHooksInFlight = 1
	h.opts.StopTimeout = time.Hour // a hook started at the stop would hold it that long
	var mu sync.Mutex
	starts := 0
	running, release := make(chan struct{}, 3), make(chan struct{})
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		mu.Lock()
		starts++
		mu.Unlock()
		running <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}
	h.start() // three first tokens: one channel's hooks run, two wait
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("no hook started")
	}
	cancel := h.cancel
	h.cancel = nil
	cancel()
	for deadline := time.Now().Add(10 * time.Second); h.rot.hookStop.Err() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stop did not reach the hooks")
		}
	}
	close(release) // the running hook ends within the stop's grace: its slot frees
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return: a hook waiting at the stop was started")
	}
	mu.Lock()
	defer mu.Unlock()
	if starts != 1 {
		t.Errorf("%d hook runs; want 1 (the two waiting at the stop never start)", starts)
	}
	due := h.hooksDueCount()
	if due != 2 {
		t.Errorf("%d channels have hooks due after the stop; want 2 (the ones that never started)", due)
	}
}

// TestHooksSupersededWhileWaiting: hooks that waited for a slot while a
// newer token replaced theirs do not run for the old token; the newer
// token's hooks run, once.
func TestHooksSupersededWhileWaiting(t *testing.T) {
	h := newHarness(t, 2, func(_ int, ch *Channel) {
		ch.Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	})
	h.opts.MaxHooksInFlight = 1
	type run struct {
		channel string
		expires time.Time
	}
	var mu sync.Mutex
	var runs []run
	first, release := make(chan struct{}), make(chan struct{})
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, ev hooks.Event, _ *zap.Logger) error {
		mu.Lock()
		runs = append(runs, run{ev.ChannelID, ev.ExpiresAt})
		n := len(runs)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-release // holds the only slot until both channels have rotated
		}
		return nil
	}
	h.start()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no hook started")
	}
	ch := h.chans[0]
	h.advance(ch.TokenTTL-ch.RotateBefore+time.Hour, nil) // both channels rotate
	close(release)
	h.rot.hooksWG.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 3 {
		t.Fatalf("%d hook runs (%v); want 3: the one that held the slot, then each channel's new token", len(runs), runs)
	}
	for _, r := range runs[1:] {
		if r.channel == runs[0].channel && r.expires.Equal(runs[0].expires) || !r.expires.After(runs[0].expires) {
			t.Errorf("run %v after the slot freed is not for a new token (the first run was %v)", r, runs[0])
		}
	}
	if runs[1].channel == runs[2].channel {
		t.Errorf("runs %v: want one for each channel's new token", runs)
	}
	if n := h.hooksDueCount(); n != 0 {
		t.Errorf("%d channels' current tokens have hooks due; want 0 (they ran)", n)
	}
}

// TestHookTurnAfterStop: after a stop no hook gets its turn, even with a
// slot free (select would take it half the time), and none is taken.
func TestHookTurnAfterStop(t *testing.T) {
	h := newHarness(t, 1, nil)
	rot, err := New(h.chans, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	done, ok := rot.hookTurn()
	if !ok {
		t.Fatal("no turn before a stop")
	}
	done()
	rot.stopHooks()
	for range 200 {
		if _, ok := rot.hookTurn(); ok {
			t.Fatal("a hook got its turn after the stop")
		}
	}
	if n := len(rot.hookSlots); n != 0 {
		t.Errorf("%d slots held after the refused turns; want 0", n)
	}
}

// TestHookRunMetrics: tokend_hook_runs_total counts each channel's hook
// runs by result: ok, failed (a hook failed), killed (at a stop), every
// result's series there from the start.
func TestHookRunMetrics(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.chans[0].Hooks = []hooks.Spec{{Exec: []string{"/bin/true"}}}
	m := metrics.New()
	h.opts.Metrics = m
	h.opts.StopTimeout = 50 * time.Millisecond
	var mu sync.Mutex
	mode := "ok"
	h.opts.Hooks = func(ctx context.Context, _ []hooks.Spec, _ hooks.Event, _ *zap.Logger) error {
		mu.Lock()
		md := mode
		mu.Unlock()
		switch md {
		case "failed":
			return errors.New("hook 0 (exec): exit status 1")
		case "block":
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	set := func(md string) {
		mu.Lock()
		mode = md
		mu.Unlock()
	}
	runs := func() map[string]float64 {
		h.rot.hooksWG.Wait()
		return series(t, m.Registry(), "tokend_hook_runs_total", nil)
	}
	if got := series(t, m.Registry(), "tokend_hook_runs_total", nil); len(got) != 3 || got["result=ok"]+got["result=failed"]+got["result=killed"] != 0 {
		t.Fatalf("before any run: %v; want ok, failed and killed at 0", got)
	}
	h.start()
	if got := runs(); got["result=ok"] != 1 || got["result=failed"] != 0 || got["result=killed"] != 0 {
		t.Fatalf("after the first token's hooks: %v; want ok 1", got)
	}
	ch := h.chans[0]
	set("failed")
	h.advance(ch.TokenTTL-ch.RotateBefore+time.Hour, nil)
	if got := runs(); got["result=ok"] != 1 || got["result=failed"] != 1 || got["result=killed"] != 0 {
		t.Fatalf("after a rotation whose hook failed: %v; want ok 1, failed 1", got)
	}
	set("block")
	h.advance(ch.TokenTTL-ch.RotateBefore+time.Hour, nil)
	h.stop() // kills the blocked hook
	if got := runs(); got["result=ok"] != 1 || got["result=failed"] != 1 || got["result=killed"] != 1 {
		t.Fatalf("after a stop killed a hook: %v; want ok 1, failed 1, killed 1", got)
	}
}
