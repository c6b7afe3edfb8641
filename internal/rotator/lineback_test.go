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

// TestLINEBackSkipsBusyChannels: a channel whose step is under way (its
// lock held here, as by a step waiting in a long LINE queue) does not hold
// up the wake of the others; it retries in its own step.
func TestLINEBackSkipsBusyChannels(t *testing.T) {
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
	for deadline := time.Now().Add(10 * time.Second); h.logCount("LINE answers again; channels that could not reach it retry now") == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			busy.mu.Unlock()
			t.Fatal("no wake within 10s while one channel was busy: the wake waited for it")
		}
	}
	busy.mu.Unlock()
	h.settle()
	for i := range n {
		tok, _, _ := h.rot.Token(h.chans[i].ID)
		if got := tok.AccessToken != ""; got == (h.chans[i].ID == busy.cfg.ID) {
			t.Errorf("channel %s (busy: %v) holds a token: %v", h.chans[i].ID, h.chans[i].ID == busy.cfg.ID, got)
		}
	}
}
