package rotator

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
)

// outageHarness is a harness of n channels whose retry jitter is random
// (seeded), so their retries spread out as in production, with fault on
// the issue and key-ID endpoints.
func outageHarness(t *testing.T, n int, seed uint64, fault linefake.Fault) *harness {
	h := newHarness(t, n, nil)
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(seed, seed+1))
	h.opts.Rand = func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return rnd.Float64()
	}
	setFaults(h, fault)
	return h
}

func setFaults(h *harness, f linefake.Fault) {
	for _, ep := range []string{linefake.EndpointIssueV21, linefake.EndpointKeyIDsV21} {
		h.sim.SetFault(ep, f)
	}
}

// TestLINEBackWakesChannels: 20 channels start while LINE cannot be
// reached (or, in the second case, answers 503) and keep failing for 10
// minutes, so their retries lie up to 5 minutes apart. Then LINE is back.
// Unreachable: the first call that goes through wakes every other channel,
// and all hold tokens at that same instant, one issue each. 503: LINE was
// there and asked for backoff, so each channel waits out its own.
func TestLINEBackWakesChannels(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault linefake.Fault
		wake  bool
	}{
		{"unreachable", linefake.Fault{Drop: true}, true},
		{"503", linefake.Fault{Status: 503}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20
			h := outageHarness(t, n, 1, tc.fault)
			h.start()
			h.advance(10*time.Minute, nil)
			held := func() int {
				k := 0
				for i := range n {
					if tok, _, _ := h.rot.Token(h.chans[i].ID); tok.AccessToken != "" {
						k++
					}
				}
				return k
			}
			if k := held(); k != 0 {
				t.Fatalf("%d channels hold a token while LINE is down", k)
			}
			issues := h.sim.Count(linefake.EndpointIssueV21)
			h.sim.ClearFaults()
			back := h.nextEvent()
			h.clock.Advance(back.Sub(h.clock.Now()))
			h.settle()
			const woke = "LINE answers again; channels that could not reach it retry now"
			if tc.wake {
				// The wake runs on a goroutine of its own; its steps then settle.
				for deadline := time.Now().Add(10 * time.Second); h.logCount(woke) == 0; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no wake within 10s of LINE's first answer (%s)", back)
					}
				}
			} else {
				time.Sleep(100 * time.Millisecond) // a wrong wake would have come
			}
			h.settle()
			k := held()
			if tc.wake {
				if k != n {
					t.Fatalf("at LINE's first answer (%s) %d of %d channels hold a token, want all", back, k, n)
				}
				if got := h.sim.Count(linefake.EndpointIssueV21) - issues; got != n {
					t.Fatalf("%d issue calls after LINE came back, want %d", got, n)
				}
				if c := h.logCount(woke); c != 1 {
					t.Fatalf("%d logs of a wake, want 1", c)
				}
			} else if k == n || h.logCount(woke) != 0 {
				t.Fatalf("after a 503 outage all %d channels held a token at the first answer: backoffs were not honoured", n)
			}
			h.advance(6*time.Minute, nil)
			if k := held(); k != n {
				t.Fatalf("6 minutes after LINE came back %d of %d channels hold a token", k, n)
			}
		})
	}
}

// TestLINEBackWakesOnlyUnreachable: after 10 minutes unreachable, LINE
// answers 503 for 2 more, so some channels' last failure is a 503 when it
// is back. The wake retries only the channels whose last failure was LINE
// being unreachable; the others wait out the backoff LINE asked for.
func TestLINEBackWakesOnlyUnreachable(t *testing.T) {
	const n = 20
	h := outageHarness(t, n, 3, linefake.Fault{Drop: true})
	h.start()
	h.advance(10*time.Minute, nil)
	setFaults(h, linefake.Fault{Status: 503})
	h.advance(2*time.Minute, nil)
	h.sim.ClearFaults()
	woken := map[string]bool{} // channels whose last failure was LINE unreachable
	h.rot.mu.Lock()
	for id, c := range h.rot.chans {
		c.mu.Lock()
		woken[id] = c.issue.unreachable
		c.mu.Unlock()
	}
	h.rot.mu.Unlock()
	nw := 0
	for _, w := range woken {
		if w {
			nw++
		}
	}
	if nw == 0 || nw == n {
		t.Fatalf("%d of %d channels last failed unreachable: the test needs some of each", nw, n)
	}
	back := h.nextEvent()
	h.clock.Advance(back.Sub(h.clock.Now()))
	for deadline := time.Now().Add(10 * time.Second); h.logCount("LINE answers again; channels that could not reach it retry now") == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no wake within 10s of LINE's first answer (%s)", back)
		}
	}
	h.settle()
	for id, w := range woken {
		if tok, _, _ := h.rot.Token(id); w && tok.AccessToken == "" {
			t.Errorf("channel %s last failed unreachable and holds no token after the wake", id)
		}
	}
	got := 0
	for id, w := range woken {
		if tok, _, _ := h.rot.Token(id); !w && tok.AccessToken != "" {
			got++
		}
	}
	if got > 1 { // one may be the retry that found LINE back
		t.Fatalf("%d channels whose last failure was a 503 hold a token at LINE's first answer: the wake did not honour their backoff", got)
	}
}

// TestLINEBackWakesBusyChannelsLast: a channel whose step is under way
// (its lock held here, as by a step waiting in a long LINE queue) does not
// hold up the wake of the others, and is woken once its lock is free: its
// last failure, before LINE was back, still says unreachable.
func TestLINEBackWakesBusyChannelsLast(t *testing.T) {
	const n = 5
	h := outageHarness(t, n, 5, linefake.Fault{Drop: true})
	h.start()
	h.advance(10*time.Minute, nil)
	h.sim.ClearFaults()
	back := h.nextEvent()
	var busy *channel
	h.rot.mu.Lock()
	for _, c := range h.rot.chans {
		c.mu.Lock()
		if c.next.After(back) && busy == nil {
			busy = c
		}
		c.mu.Unlock()
	}
	h.rot.mu.Unlock()
	if busy == nil {
		t.Fatal("every channel retries at LINE's return: the test needs one that waits")
	}
	busy.mu.Lock()
	h.clock.Advance(back.Sub(h.clock.Now()))
	const woke = "LINE answers again; channels that could not reach it retry now"
	for deadline := time.Now().Add(10 * time.Second); h.logCount(woke) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			busy.mu.Unlock()
			t.Fatal("no wake within 10s while one channel was busy: the wake waited for it")
		}
	}
	// h.settle would wait for busy's lock: wait for the others' tokens.
	held := func() (others int, b bool) {
		for i := range n {
			tok, _, _ := h.rot.Token(h.chans[i].ID)
			switch {
			case tok.AccessToken == "":
			case h.chans[i].ID == busy.cfg.ID:
				b = true
			default:
				others++
			}
		}
		return others, b
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if others, _ := held(); others == n-1 || time.Now().After(deadline) {
			break
		}
	}
	others, b := held()
	busy.mu.Unlock() // the wake, waiting for it, has it now; the clock stays
	if others != n-1 || b {
		t.Fatalf("while one channel was busy: %d of the %d others hold a token (want all), the busy one: %v (want none)", others, n-1, b)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, b := held(); b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s holds no token 10s after its lock was free: the wake skipped it", busy.cfg.ID)
		}
	}
}

// TestRearmAfterWake: a wake that comes between a step's end and the arm
// of the channel's next step (the step has let go of the channel, the arm
// waits for the rotator's lock) is honoured: the channel is armed from its
// state at the arm, not as the step left it.
func TestRearmAfterWake(t *testing.T) {
	h := outageHarness(t, 3, 7, linefake.Fault{Drop: true})
	clock := &hookClock{FakeClock: h.clock}
	h.opts.Clock = clock
	h.start()
	h.advance(10*time.Minute, nil)
	var c *channel
	h.rot.mu.Lock()
	for _, ch := range h.rot.channelList() {
		ch.mu.Lock()
		if ch.issue.unreachable && ch.next.After(h.clock.Now().Add(time.Minute)) && c == nil {
			c = ch
		}
		ch.mu.Unlock()
	}
	h.rot.mu.Unlock()
	if c == nil {
		t.Fatal("no channel waits more than a minute to retry: the test needs one")
	}
	clock.hook = func() { // in the arm, before it takes c's lock
		c.mu.Lock()
		wakeAttempts(c, h.clock.Now())
		c.mu.Unlock()
	}
	rearm := "(*Rotator).rearm"
	clock.at.Store(&rearm)
	h.rot.countedStep(*h.rot.runCtx.Load(), c, true)
	if clock.at.Load() != nil {
		t.Fatal("the arm did not read the clock")
	}
	next := nextOf(c)
	if want := h.clock.Now().Add(time.Second); next.After(want) {
		t.Fatalf("after a wake during its arm the channel steps at %s, want by %s", next, want)
	}
}
