package rotator

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/hooks"
	"github.com/tokend/tokend/internal/linefake"
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
