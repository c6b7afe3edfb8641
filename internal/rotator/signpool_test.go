package rotator

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSignPool: work runs on at most max workers, all of them when there is
// enough, every call returns after its work ran, and no worker outlives the
// queue.
func TestSignPool(t *testing.T) {
	checkSignPool(t, newSignPool(3), 3)
}

// TestSignPoolPerP: the rotator's pool (max 0) runs one worker per P as
// GOMAXPROCS is when work arrives, so a burst's extra Ps sign too.
func TestSignPoolPerP(t *testing.T) {
	p := newSignPool(0)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(5))
	checkSignPool(t, p, 5)
	runtime.GOMAXPROCS(2)
	checkSignPool(t, p, 2)
}

func checkSignPool(t *testing.T, p *signPool, workers int32) {
	t.Helper()
	const calls = 40
	var running, peak, ran atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			p.do(func() {
				n := running.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				<-release
				running.Add(-1)
				ran.Add(1)
			})
		})
	}
	// Every worker takes a call (a hang guard, not a measurement)...
	for deadline := time.Now().Add(time.Minute); running.Load() < workers; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls running with %d queued; want %d", running.Load(), calls, workers)
		}
	}
	// ...then one release at a time frees one worker for the next.
	for range calls {
		release <- struct{}{}
	}
	wg.Wait()
	if got := ran.Load(); got != calls {
		t.Fatalf("%d of %d calls ran", got, calls)
	}
	if got := peak.Load(); got != workers {
		t.Fatalf("at most %d ran at once; want %d (the pool's size)", got, workers)
	}
	// Workers end once they find the queue empty, just after the last call
	// returned (a hang guard again).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		w, q := p.workers, len(p.queue)
		p.mu.Unlock()
		if w == 0 && q == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the work: %d workers, %d queued; want none", w, q)
		}
	}
}
