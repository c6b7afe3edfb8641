package rotator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/store"
)

// heldIssue holds the first issue call made after arm is set until
// release is closed.
type heldIssue struct {
	LINE
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *heldIssue) IssueChannelAccessTokenV2_1(ctx context.Context, a string) (*oauth.Token, error) {
	if h.armed.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.release
	}
	return h.LINE.IssueChannelAccessTokenV2_1(ctx, a)
}

// rotateIntoHold moves the clock to channel id's rotation and returns once
// its issue call waits in held.
func (h *harness) rotateIntoHold(held *heldIssue, id string) {
	h.t.Helper()
	c := h.rot.chans[id]
	c.mu.Lock()
	at := h.rot.rotateAt(c)
	c.mu.Unlock()
	held.armed.Store(true)
	h.clock.Advance(at.Sub(h.clock.Now()))
	select {
	case <-held.entered:
	case <-time.After(time.Minute): // a hang guard
		h.t.Fatalf("channel %s's rotation did not reach LINE", id)
	}
}

// published reports whether channel id has written its token under its
// current settings.
func (h *harness) published(id string) bool {
	h.rot.mu.Lock()
	c := h.rot.chans[id]
	h.rot.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.published
}

// TestReloadMovesOutputMidRotation: a reload that moves an output from a
// channel whose rotation is waiting on LINE to another channel leaves the
// output with the other channel's token. Reload used to update channels one
// at a time, in map order: when the receiving channel came first it wrote
// the output, then the rotating channel's step, still on its old settings,
// wrote its own new token there, and the receiving channel counted as
// published until its next rotation. The order is random, so the case is
// run several times (without the fix about half the runs fail).
func TestReloadMovesOutputMidRotation(t *testing.T) {
	for run := range 8 {
		h := newHarness(t, 2, func(i int, ch *Channel) {
			if i == 1 {
				ch.RotateBefore = 5 * 24 * time.Hour // B rotates after A
			}
			ch.ReconcileEvery = 365 * 24 * time.Hour // only A's rotation is due in the jump
			ch.Outputs = ch.Outputs[:1]
		})
		held := &heldIssue{LINE: h.line, entered: make(chan struct{}), release: make(chan struct{})}
		h.opts.LINE = held
		h.start()
		a, b := h.chans[0], h.chans[1]
		x, y := a.Outputs[0].Path, b.Outputs[0].Path
		h.rotateIntoHold(held, a.ID)
		// Swap the outputs while A's rotation waits on LINE.
		a.Outputs, b.Outputs = []Output{{Path: y, Format: "raw", Mode: 0o600}}, []Output{{Path: x, Format: "raw", Mode: 0o600}}
		done := make(chan error, 1)
		go func() { done <- h.rot.Reload([]Channel{a, b}) }()
		time.Sleep(20 * time.Millisecond) // let the reload reach the channels (either order)
		close(held.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		h.chans = []Channel{a, b}
		// The reload arms both channels to publish under their new
		// settings at once. A's step, which ends during the reload, re-arms
		// A after it for a second later (a step never re-arms sooner): the
		// fake clock is moved on when nothing happens for a while.
		for deadline, nudge := time.Now().Add(time.Minute), time.Now().Add(500*time.Millisecond); !h.published(a.ID) || !h.published(b.ID); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) { // a hang guard
				t.Fatal("the channels did not publish after the reload")
			}
			if time.Now().After(nudge) {
				h.clock.Advance(time.Second)
				nudge = time.Now().Add(500 * time.Millisecond)
			}
		}
		h.settle()
		if got, want := h.readFile(x), h.current(1); got != want {
			t.Errorf("run %d: %s, channel B's output after the reload, holds %s; want B's token", run, x, map[bool]string{true: "A's token", false: "another token"}[got == h.current(0)])
		}
		if got := h.readFile(y); got != h.current(0) {
			t.Errorf("run %d: %s, channel A's output after the reload, does not hold A's token", run, y)
		}
		h.stop()
	}
}

// TestStatusDuringReload: Status, which the socket serves without taking
// any channel's lock, reads nothing a reload writes (under -race: it read
// c.cfg while Reload replaced it).
func TestStatusDuringReload(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.start()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, st := range h.rot.Status() {
				if st.ID == "" {
					t.Error("a status without its channel ID")
				}
			}
		}
	}()
	for i := range 50 {
		chans := slices.Clone(h.chans)
		for j := range chans {
			chans[j].Name = fmt.Sprintf("bot-%d-%d", j+1, i)
		}
		if err := h.rot.Reload(chans); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	h.stop()
}

// TestReloadWaitDoesNotHoldTheRotator: while a reload waits for a channel
// whose step waits on LINE, the watchdog's probe (Responsive) and the
// rotator's lock stay free: Reload used to wait under r.mu, and in a
// rotation storm with LINE slow, systemd's watchdog killed tokend.
func TestReloadWaitDoesNotHoldTheRotator(t *testing.T) {
	h := newHarness(t, 2, func(_ int, ch *Channel) { ch.Outputs = ch.Outputs[:1] })
	held := &heldIssue{LINE: h.line, entered: make(chan struct{}), release: make(chan struct{})}
	h.opts.LINE = held
	h.start()
	h.rotateIntoHold(held, h.chans[0].ID)
	chans := slices.Clone(h.chans)
	chans[1].Name = "renamed"
	done := make(chan error, 1)
	go func() { done <- h.rot.Reload(chans) }()
	probed := make(chan struct{})
	go func() {
		time.Sleep(20 * time.Millisecond) // let the reload reach A
		h.rot.Responsive()                // takes the rotator's lock
		close(probed)
	}()
	select {
	case <-probed:
	case <-time.After(5 * time.Second):
		t.Error("the watchdog's probe and the rotator's lock waited for the reload, which waits for A's LINE call")
	}
	select {
	case err := <-done:
		t.Fatalf("the reload returned (%v) while A's step still held A", err)
	default:
	}
	close(held.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.chans = chans
}

// failChannelStore fails Channel for one channel ID.
type failChannelStore struct {
	Store
	id string
}

func (s failChannelStore) Channel(id string) ([]store.Record, error) {
	if id == s.id {
		return nil, errors.New("store: read: input/output error")
	}
	return s.Store.Channel(id)
}

// TestReloadAllOrNothing: a reload whose new channel's records cannot be
// read fails without changing anything: it used to have removed and
// renamed channels already when it failed, and the daemon, told the
// reload was rejected, kept the old config beside a half-new rotator.
func TestReloadAllOrNothing(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.start()
	added := h.chans[1]
	added.ID, added.Name = "1699999999", "new-bot"
	h.rot.o.Store = failChannelStore{Store: h.store, id: added.ID}
	renamed := h.chans[0]
	renamed.Name = "renamed"
	if err := h.rot.Reload([]Channel{renamed, added}); err == nil || !strings.Contains(err.Error(), "new-bot") {
		t.Fatalf("Reload: %v, want the new channel's store error", err)
	}
	var names []string
	for _, st := range h.rot.Status() {
		names = append(names, st.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"bot-1", "bot-2"}) {
		t.Errorf("channels after a failed reload: %v, want bot-1 and bot-2 unchanged", names)
	}
}

// TestReloadNotStarvedBySteps: a reload goes through while steps keep
// coming and each holds its channel a moment (a rotation storm, every step
// waiting its turn for a LINE slot): new steps wait for it. A reload that
// waited for a moment when no channel was busy was put off for as long as
// the storm lasted.
func TestReloadNotStarvedBySteps(t *testing.T) {
	h := newHarness(t, 8, nil)
	h.start()
	h.rot.mu.Lock()
	chans := slices.Collect(maps.Values(h.rot.chans))
	h.rot.mu.Unlock()
	var slot sync.Mutex // one LINE slot for all
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range chans {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h.rot.steps.RLock() // as step does
				c.mu.Lock()
				slot.Lock()
				time.Sleep(2 * time.Millisecond) // the LINE call
				slot.Unlock()
				c.mu.Unlock()
				h.rot.steps.RUnlock()
				time.Sleep(time.Duration(5+i) * time.Millisecond)
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(50 * time.Millisecond) // the storm under way
	renamed := slices.Clone(h.chans)
	renamed[0].Name = "renamed"
	done := make(chan error, 1)
	go func() { done <- h.rot.Reload(renamed) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reload did not go through in 5s of steps that keep some channel busy")
	}
	h.chans = renamed
}
