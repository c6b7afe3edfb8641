package rotator

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// signPool runs signatures on at most max goroutines; max 0 (the
// rotator's) means one per P, GOMAXPROCS as work arrives. Workers start
// when work arrives and end when none is waiting, so an idle rotator holds
// none.
//
// A burst has many steps under way, each on a goroutine of its own (a
// start's few hundred workers; in a storm, one per channel due; at first,
// 10,000 at a cold start). Signing on them grew every one's stack for RSA's
// arithmetic, which the collector then shrank while they waited and
// scanned each cycle; and up to max_in_flight of them signed at once on
// the burst's extra Ps, so the kernel switched between more threads than
// CPUs. A few long-lived workers keep their grown stacks and sign no more
// at once than there are Ps.
//
// One per P, not one per CPU: a burst runs with more Ps than CPUs (the
// daemon's burst), and with a worker per CPU the CPUs still idled in a
// cold start while signatures waited, whenever a worker's thread was off
// its CPU (a P handed on after a system call, a wake-up between threads).
// With 2 CPUs, 3 Ps and 3 workers instead of 2, tokend and the simulator
// kept the CPUs busy 95.2-97.2 % of a 10,000-channel cold start, against
// 91.2-94.2 %, and the ratio's median was 1.44 against 1.53
// (tokend-bench -cold-only, 9 alternating runs each, 2026-12-06,
// 18:10-18:20 UTC; 4 workers: 95.8-96.1 % in 4). Outside bursts
// GOMAXPROCS is the CPUs Go uses, as before.
type signPool struct {
	mu      sync.Mutex
	queue   []*signJob
	workers int
	max     int
	done    atomic.Int64 // jobs run: with a frozen test clock a signature made twice looks the same
}

type signJob struct {
	fn   func()
	done chan struct{}
}

func newSignPool(n int) *signPool { return &signPool{max: max(n, 0)} }

// limit is how many workers may run now.
func (p *signPool) limit() int {
	if p.max > 0 {
		return p.max
	}
	return runtime.GOMAXPROCS(0)
}

// do runs fn on one of the pool's workers and returns when it has.
func (p *signPool) do(fn func()) {
	j := &signJob{fn: fn, done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, j)
	if p.workers < p.limit() {
		p.workers++
		go p.work()
	}
	p.mu.Unlock()
	<-j.done
}

func (p *signPool) work() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		j := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		j.fn()
		p.done.Add(1)
		close(j.done)
		// Run the step just woken on this P, now: closing done put it
		// next in this P's queue and woke an idle thread to steal it,
		// which sleeps 3 us before stealing a P's next goroutine. Each
		// wake-up, sleep and steal is a context switch, and on a VM whose
		// system calls cost 2.7 us an expensive one: in a cold start of
		// 10,000 channels (perf record -e context-switches) 3.8 % of
		// the switches were wake-ups from here and 9.6 % the stealers'
		// sleeps (from this chain and any other). With the yield, tokend
		// switched 5-33 % less in five alternating cold starts
		// (tokend-bench -cold-only under perf stat; 30,551-54,042
		// against 45,333-58,084), ratio median 1.60 against 1.77.
		runtime.Gosched()
	}
}
