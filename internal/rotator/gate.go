package rotator

import (
	"context"
	"sync"
)

// gate bounds the LINE calls in flight. Urgent calls (those that get a
// channel with nothing to serve its token) go before all others waiting,
// so at a cold start or after an outage bots get tokens before tokend
// spends LINE slots on key-ID listings, rotations of tokens still valid
// and revocations. Within a priority, first come first served.
type gate struct {
	mu   sync.Mutex
	free int
	q    [2][]*waiter // [0] urgent, [1] the rest
}

type waiter struct {
	ch   chan struct{} // closed when the slot is granted
	gone bool          // the caller gave up; skip it
}

func newGate(n int) *gate { return &gate{free: n} }

// acquire waits for a slot; the caller must release it. It fails only
// with ctx's error, holding nothing.
func (g *gate) acquire(ctx context.Context, urgent bool) error {
	p := 1
	if urgent {
		p = 0
	}
	g.mu.Lock()
	if g.free > 0 && len(g.q[0]) == 0 && len(g.q[1]) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := &waiter{ch: make(chan struct{})}
	g.q[p] = append(g.q[p], w)
	g.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-w.ch: // granted while giving up: pass the slot on
		g.mu.Unlock()
		g.release()
	default:
		w.gone = true
		g.mu.Unlock()
	}
	return ctx.Err()
}

// release hands the slot to the first urgent waiter, else the first other
// one, else frees it.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range g.q {
		for len(g.q[p]) > 0 {
			w := g.q[p][0]
			g.q[p][0] = nil
			g.q[p] = g.q[p][1:]
			if !w.gone {
				close(w.ch)
				return
			}
		}
	}
	g.free++
}
