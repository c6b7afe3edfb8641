package rotator

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

const overdueMsg = "channel's step is overdue: scheduling it now"

// loseJob removes c's job from gocron behind the rotator's back, as a
// scheduler that lost it would.
func loseJob(t *testing.T, h *harness, c *channel) {
	t.Helper()
	h.rot.mu.Lock()
	defer h.rot.mu.Unlock()
	c.mu.Lock()
	id := c.jobID
	c.mu.Unlock()
	if id == uuid.Nil {
		t.Fatal("the channel has no job")
	}
	if err := h.rot.sched.RemoveJob(id); err != nil {
		t.Fatal(err)
	}
}

// TestSweepArmsALostJob: a channel whose job the scheduler lost is armed
// again by Run's sweep, with a warning, within two sweeps of being
// overdue, and then steps as before.
func TestSweepArmsALostJob(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.start()
	h.settle()
	h.rot.mu.Lock()
	c := h.rot.chans[h.chans[0].ID]
	h.rot.mu.Unlock()
	due := nextOf(c) // the hourly reconcile
	loseJob(t, h, c)
	h.clock.Advance(due.Sub(h.clock.Now()))
	time.Sleep(10 * time.Millisecond) // a job, had one been left, would step now
	if got := nextOf(c); !got.Equal(due) {
		t.Fatalf("the channel stepped without its job (next %s, was %s): the test needs a lost job", got, due)
	}
	for i := 0; h.logCount(overdueMsg) == 0; i++ {
		if i == 10 {
			t.Fatalf("no sweep armed the channel in 10 minutes after it was due at %s", due)
		}
		h.clock.Advance(sweepEvery)
		for deadline := time.Now().Add(100 * time.Millisecond); h.logCount(overdueMsg) == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	h.settle()
	if got := nextOf(c); !got.After(h.clock.Now().Add(30 * time.Minute)) {
		t.Fatalf("after the sweep the channel's next step is at %s, want its next reconcile, about an hour after %s", got, h.clock.Now())
	}
	e := h.logs.FilterMessage(overdueMsg).All()[0]
	if f := e.ContextMap(); f["channel"] != h.chans[0].Label() || f["overdue"] == nil {
		t.Fatalf("the warning names %v, overdue %v; want channel %s and how long", f["channel"], f["overdue"], h.chans[0].Label())
	}
}

// TestSweepLeavesStepsAlone: the sweep arms only a channel overdue by
// sweepEvery at two sweeps in a row with the same due time, and not in a
// step: one overdue for the first time may be waiting for a busy
// scheduler, and one in a step may be waiting in a long LINE queue.
func TestSweepLeavesStepsAlone(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.start()
	h.settle()
	h.rot.mu.Lock()
	a, b := h.rot.chans[h.chans[0].ID], h.rot.chans[h.chans[1].ID]
	h.rot.mu.Unlock()
	loseJob(t, h, a)
	loseJob(t, h, b)
	// Past both channels' due times by more than a sweep, without the
	// ticker: the test calls sweep itself.
	late := later(nextOf(a), nextOf(b)).Add(sweepEvery)
	b.mu.Lock() // b is in a step throughout
	h.clock.Advance(late.Sub(h.clock.Now()))
	overdue := h.rot.sweep(nil)
	if _, ok := overdue[a]; !ok || len(overdue) != 1 || h.logCount(overdueMsg) != 0 {
		t.Fatalf("first sweep: overdue %d channels (a: %v), %d warnings; want a alone, no warning", len(overdue), ok, h.logCount(overdueMsg))
	}
	overdue = h.rot.sweep(overdue)
	b.mu.Unlock()
	if len(overdue) != 0 || h.logCount(overdueMsg) != 1 {
		t.Fatalf("second sweep: %d still overdue, %d warnings; want a armed, with one warning, and b left alone", len(overdue), h.logCount(overdueMsg))
	}
	for deadline := time.Now().Add(10 * time.Second); !nextOf(a).After(h.clock.Now()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the armed channel did not step within 10s")
		}
	}
	if !nextOf(b).Before(h.clock.Now()) {
		t.Fatal("the channel in a step was armed")
	}
}
