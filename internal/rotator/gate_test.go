package rotator

import (
	"context"
	"testing"
	"time"
)

// grant waits for acquire's result in real time (the gate does no
// clock work; this only bounds a hang).
func grant(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("acquire did not return")
		return nil
	}
}

func acquireAsync(g *gate, ctx context.Context, urgent bool) <-chan error {
	done := make(chan error, 1)
	go func() { done <- g.acquire(ctx, urgent) }()
	return done
}

// queued waits until the gate holds n live waiters.
func queued(t *testing.T, g *gate, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		live := 0
		for _, q := range g.q {
			for _, w := range q {
				if !w.gone {
					live++
				}
			}
		}
		g.mu.Unlock()
		if live == n {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Fatalf("gate never held %d waiters", n)
}

func TestGateUrgentFirstThenFIFO(t *testing.T) {
	g := newGate(1)
	ctx := context.Background()
	if err := g.acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	// Queue, in this order: other 0, other 1, urgent 2, urgent 3.
	var done []<-chan error
	for i, urgent := range []bool{false, false, true, true} {
		done = append(done, acquireAsync(g, ctx, urgent))
		queued(t, g, i+1)
	}
	for _, want := range []int{2, 3, 0, 1} {
		g.release()
		if err := grant(t, done[want]); err != nil {
			t.Fatal(err)
		}
		for i, d := range done {
			if i != want && len(d) > 0 {
				t.Fatalf("waiter %d granted out of turn (expected %d)", i, want)
			}
		}
		done[want] = nil
	}
	g.release()
	if g.free != 1 {
		t.Fatalf("free = %d after every release, want 1", g.free)
	}
}

func TestGateCancelledWaiterHoldsNothing(t *testing.T) {
	g := newGate(1)
	if err := g.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := acquireAsync(g, ctx, true)
	queued(t, g, 1)
	next := acquireAsync(g, context.Background(), false)
	queued(t, g, 2)
	cancel()
	if err := grant(t, gaveUp); err == nil {
		t.Fatal("cancelled acquire returned nil")
	}
	g.release() // skips the cancelled waiter
	if err := grant(t, next); err != nil {
		t.Fatal(err)
	}
	g.release()
	if g.free != 1 {
		t.Fatalf("free = %d, want 1: a cancelled waiter kept or lost a slot", g.free)
	}
}

// TestGateGrantRacingCancelKeepsSlot races a waiter's cancellation against
// the release that grants it its slot. When the waiter wakes for its
// cancellation but the grant reaches it before it takes the gate's lock,
// acquire must pass the slot on: a slot lost there would lower
// max_in_flight for good. Which comes first is up to the scheduler, so the
// race runs many times; the invariant is checked after each.
func TestGateGrantRacingCancelKeepsSlot(t *testing.T) {
	for i := range 200 {
		g := newGate(1)
		if err := g.acquire(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := acquireAsync(g, ctx, false)
		queued(t, g, 1)
		cancel()    // wakes the waiter for its cancellation...
		g.release() // ...and, as often as not, grants it the slot before it runs
		if err := grant(t, done); err == nil {
			g.release() // it won the slot; give it back
		}
		g.mu.Lock()
		free, waiting := g.free, len(g.q[0])+len(g.q[1])
		g.mu.Unlock()
		if free != 1 || waiting != 0 {
			t.Fatalf("race %d: free = %d with %d queued after the waiter returned, want 1 and 0", i, free, waiting)
		}
	}
}
