package rotator

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/linefake"
)

// hookClock is the harness's fake clock, except that once at is set, the
// first read of it from within the gocron function named by at runs hook
// first: time passing, or a goroutine stopping, at that point in gocron.
type hookClock struct {
	*clockwork.FakeClock
	at   atomic.Pointer[string]
	hook func()
}

func (c *hookClock) Now() time.Time {
	if fn := c.at.Load(); fn != nil && calledFrom(*fn) && c.at.CompareAndSwap(fn, nil) {
		c.hook()
	}
	return c.FakeClock.Now()
}

// calledFrom reports whether a function whose name ends in fn is on the
// caller's stack.
func calledFrom(fn string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestArmWhenGocronIsLate arms a channel's step a second ahead while the
// clock moves on two seconds before gocron gets to the job: as it defines
// the job (which gocron checks against the clock), or as its scheduler
// goroutine takes it (which, with 10,000 channels retrying at once, came
// after their one-second retries). gocron v2.21.2's scheduler used to spin
// for ever on a one-time job whose only time had passed when it took it
// (go-co-op/gocron#943): arm never returned, and no channel stepped again.
// The step must run at once and re-arm, and nothing else may change.
func TestArmWhenGocronIsLate(t *testing.T) {
	for _, fn := range []string{"(*scheduler).addOrUpdateJob", "(*scheduler).selectNewJob"} {
		t.Run(fn, func(t *testing.T) {
			h := newHarness(t, 1, nil)
			clock := &hookClock{FakeClock: h.clock, hook: func() { h.clock.Advance(2 * time.Second) }}
			h.opts.Clock = clock
			h.start()
			h.rot.mu.Lock()
			c := h.rot.chans[h.chans[0].ID]
			h.rot.mu.Unlock()
			c.mu.Lock()
			due := c.next // the hourly reconcile
			c.mu.Unlock()
			if !due.After(h.clock.Now().Add(time.Minute)) {
				t.Fatalf("after the start the channel is due at %s, want its next step well after %s", due, h.clock.Now())
			}

			at := h.clock.Now().Add(time.Second)
			clock.at.Store(&fn)
			armed := make(chan struct{})
			go func() {
				defer close(armed)
				h.rot.mu.Lock()
				defer h.rot.mu.Unlock()
				c.mu.Lock()
				c.next = at
				c.mu.Unlock()
				h.rot.arm(c, at)
			}()
			select {
			case <-armed:
			case <-time.After(10 * time.Second):
				t.Fatal("arm did not return within 10s: gocron's scheduler is stuck on a job whose time passed before it took it")
			}
			if clock.at.Load() != nil {
				t.Fatalf("gocron did not read the clock in %s: the test did not make it late", fn)
			}
			if now := h.clock.Now(); !now.After(at) {
				t.Fatalf("clock %s, want past %s", now, at)
			}
			h.settle() // fails unless the step ran and re-armed
			next := nextOf(c)
			if !next.Equal(due) {
				t.Fatalf("after the late arm the channel is due at %s, want %s as before", next, due)
			}
			if n := h.sim.Count(linefake.EndpointIssueV21); n != 1 {
				t.Fatalf("LINE saw %d issue calls, want 1", n)
			}
		})
	}
}

// TestResponsive: Rotator.Responsive, the daemon's watchdog probe, comes
// back at once from a rotator that can schedule, and not while the
// rotator's lock is held or gocron's scheduler goroutine is stuck; then as
// soon as either is free again.
func TestResponsive(t *testing.T) {
	h := newHarness(t, 1, nil)
	fn := "(*scheduler).selectExecJobsOutForRescheduling"
	hit, release := make(chan struct{}), make(chan struct{})
	clock := &hookClock{FakeClock: h.clock, hook: func() {
		close(hit)
		<-release // the scheduler goroutine stops here
	}}
	h.opts.Clock = clock
	h.start()
	probe := func() <-chan struct{} {
		done := make(chan struct{})
		go func() {
			h.rot.Responsive()
			close(done)
		}()
		return done
	}
	answers := func(what string, p <-chan struct{}) {
		t.Helper()
		select {
		case <-p:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Responsive did not return within 10s", what)
		}
	}
	blocked := func(what string, p <-chan struct{}) {
		t.Helper()
		select {
		case <-p:
			t.Fatalf("%s: Responsive returned", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	answers("running", probe())

	h.rot.mu.Lock()
	p := probe()
	blocked("the rotator's lock held", p)
	h.rot.mu.Unlock()
	answers("the lock released", p)

	// The channel's job fires at its next step; gocron's scheduler goroutine
	// blocks on the clock as it reschedules the job, before the step runs.
	clock.at.Store(&fn)
	h.rot.mu.Lock()
	c := h.rot.chans[h.chans[0].ID]
	h.rot.mu.Unlock()
	due := nextOf(c)
	h.clock.Advance(due.Sub(h.clock.Now()))
	select {
	case <-hit:
	case <-time.After(10 * time.Second):
		t.Fatalf("gocron did not read the clock in %s: the test did not stop its scheduler", fn)
	}
	p = probe()
	blocked("the scheduler stuck", p)
	close(release)
	answers("the scheduler free", p)
	h.settle()
}

// bareRotator is a rotator with the real clock, a running scheduler and
// one channel, c, and nothing else: enough to arm c and see its job.
func bareRotator(t testing.TB) (*Rotator, *channel) {
	t.Helper()
	sched, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	sched.Start()
	t.Cleanup(func() { _ = sched.Shutdown() })
	r := &Rotator{clock: clockwork.NewRealClock(), log: zap.NewNop(), sched: sched}
	return r, &channel{cfg: Channel{ID: "1600000001"}}
}

// job is c's gocron job.
func job(t testing.TB, r *Rotator, c *channel) gocron.Job {
	t.Helper()
	for _, j := range r.sched.Jobs() {
		if j.ID() == c.jobID {
			return j
		}
	}
	t.Fatal("the channel has no job")
	return nil
}

// TestArmHandsGocronWallTimes: the times arm gives gocron carry no
// monotonic clock reading, so that arm and gocron compare them with the
// clock the same way, by the wall clock (see arm).
func TestArmHandsGocronWallTimes(t *testing.T) {
	r, c := bareRotator(t)
	at := time.Now().Add(time.Hour) // with a monotonic reading
	r.mu.Lock()
	r.arm(c, at)
	r.mu.Unlock()
	next, err := job(t, r, c).NextRun()
	if err != nil {
		t.Fatal(err)
	}
	if !next.Equal(at) || strings.Contains(next.String(), "m=") {
		t.Fatalf("the job runs at %s, want %s without a monotonic reading", next, at.Round(0))
	}
}

// BenchmarkArmUnderLoad arms a channel b.N times at times a few hundred
// microseconds ahead while other goroutines keep every CPU busy, and
// fails if any arm left the job with only its far run, never to run (see
// arm). It is a load test more than a benchmark: with `at`'s monotonic
// reading kept it lost 1 of 400,000 arms on a 2-core machine (a plainer
// loop, calling gocron directly, 8 to 14 in 20 s), so run it long:
//
//	go test -run '^$' -bench ArmUnderLoad -benchtime 400000x ./internal/rotator
func BenchmarkArmUnderLoad(b *testing.B) {
	r, c := bareRotator(b)
	stop := make(chan struct{})
	var burners sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		burners.Go(func() {
			for x := 0; ; x++ {
				if x%1000 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		})
	}
	defer func() {
		close(stop)
		burners.Wait()
	}()
	var j gocron.Job
	lost := 0
	for b.Loop() {
		r.mu.Lock()
		r.arm(c, time.Now().Add(time.Duration(rand.IntN(300))*time.Microsecond))
		r.mu.Unlock()
		if j == nil || j.ID() != c.jobID {
			j = job(b, r, c)
		}
		next, _ := j.NextRun()
		last, _ := j.LastRunStartedAt() // the job's lastRun: set when a run starts
		if next.After(time.Now().Add(farAhead/2)) && last.IsZero() {
			lost++
		}
	}
	b.ReportMetric(float64(lost), "lost")
	if lost > 0 {
		b.Fatalf("%d of %d arms left the job with only its far run", lost, b.N)
	}
}
