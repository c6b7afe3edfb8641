package main

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// A virtual machine's CPUs are not always there: the host takes one away
// for its own work and gives it back milliseconds later. Nothing the guest
// runs can see it coming or avoid it, and every request in flight on that
// CPU waits it out, with those queued behind it. On the bench machine on
// 2026-12-06 a C thread spinning on each CPU at real-time priority 99
// (nothing in the guest could preempt it) still lost its CPU for over 1 ms
// about once a second, for up to 7 ms. Target 4's p99 of 1 ms at 10,000
// requests a second allows 100 slow answers a second, so the header
// measures how often this happens, before the runs, for a run's p99 to be
// read with it. The probe spins at normal priority: a busy process beside
// the bench counts as stalls too (the bench runs nothing while it spins).

// stallSlow is a gap that a request in flight would feel as a slow answer
// (target 4's p99 line); stallTick is a gap longer than a clock read plus
// the guest's own timer tick, which is where lost time starts to count.
const (
	stallSlow = time.Millisecond
	stallTick = 20 * time.Microsecond
)

// stalls is what one spinning thread saw.
type stalls struct {
	spun    time.Duration // how long it spun
	slow    int           // gaps over stallSlow
	longest time.Duration
	lost    time.Duration // the gaps over stallTick, together
}

// spin reads the clock in a loop for d and records the gaps between
// consecutive reads: a gap is time the thread did not run.
func spin(d time.Duration, now func() time.Time) stalls {
	start := now()
	prev := start
	var s stalls
	for {
		t := now()
		if g := t.Sub(prev); g > stallTick {
			s.lost += g
			s.longest = max(s.longest, g)
			if g > stallSlow {
				s.slow++
			}
		}
		prev = t
		if s.spun = t.Sub(start); s.spun >= d {
			return s
		}
	}
}

// probeStalls spins one thread per CPU Go uses for d, all at once, so that
// no CPU is left for anything else of the guest's to run on.
func probeStalls(d time.Duration) []stalls {
	rs := make([]stalls, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			rs[i] = spin(d, time.Now)
		})
	}
	wg.Wait()
	return rs
}

// stallLine is the header line for a probe's results: per CPU, on average.
func stallLine(rs []stalls) string {
	var spun, lost, longest time.Duration
	slow := 0
	for _, s := range rs {
		spun += s.spun
		lost += s.lost
		slow += s.slow
		longest = max(longest, s.longest)
	}
	if spun <= 0 {
		return "# machine: stalls not measured"
	}
	return fmt.Sprintf("# machine: a thread spinning on each of %d CPUs for %s lost its CPU for over %v %.1f times a second (longest %.1f ms), and gaps over %v took %.1f %% of its time (the VM's host, or any other process: README, Performance)",
		len(rs), secs(rs[0].spun), stallSlow, float64(slow)/spun.Seconds(), float64(longest)/1e6, stallTick, 100*float64(lost)/float64(spun))
}
