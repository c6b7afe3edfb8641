package rotator

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/store"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

// sharedKey is one RSA key for every test channel: key generation is slow.
func sharedKey(t testing.TB) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

const testKID = "c8f1a7e2-0000-4000-8000-000000000001"

// rotatingAt14h gives a test channel a 24 h token rotated at 14 h (10 h
// before it expires, no jitter) and one output: a rotation that comes soon
// and leaves time to watch what happens before the token expires.
func rotatingAt14h(_ int, ch *Channel) {
	ch.TokenTTL, ch.RotateBefore, ch.Jitter = 24*time.Hour, 10*time.Hour, 0
	ch.Outputs = ch.Outputs[:1]
}

// harness runs a Rotator against the simulator over real HTTP, on a fake
// clock that the test moves from event to event.
type harness struct {
	t     *testing.T
	clock *clockwork.FakeClock
	sim   *linefake.Server
	srv   *httptest.Server
	line  *oauth.Client
	store Store
	dir   string
	chans []Channel
	opts  Options
	logs  *observer.ObservedLogs

	rot    *Rotator
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, n int, mutate func(i int, ch *Channel)) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		clock: clockwork.NewFakeClockAt(t0),
		dir:   t.TempDir(),
		store: store.NewMemory(),
	}
	h.sim = linefake.New(linefake.Options{Clock: h.clock})
	h.srv = httptest.NewServer(h.sim)
	t.Cleanup(h.srv.Close)
	var err error
	h.line, err = oauth.NewClient(oauth.Options{BaseURL: h.srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key := sharedKey(t)
	for i := range n {
		ch := Channel{
			ID:             fmt.Sprintf("16%08d", i+1),
			Name:           fmt.Sprintf("bot-%d", i+1),
			Kind:           KindV21,
			KeyID:          testKID,
			Key:            key,
			Secret:         fmt.Sprintf("secret-%d", i+1),
			TokenTTL:       30 * 24 * time.Hour,
			RotateBefore:   10 * 24 * time.Hour,
			RevokeAfter:    24 * time.Hour,
			ReconcileEvery: time.Hour,
			Jitter:         0.1,
		}
		ch.Outputs = []Output{
			{Path: filepath.Join(h.dir, ch.Name+".token"), Format: "raw", Mode: 0o600},
			{Path: filepath.Join(h.dir, ch.Name+".json"), Format: "json", Mode: 0o640},
		}
		if mutate != nil {
			mutate(i, &ch)
		}
		h.sim.AddChannel(ch.ID, ch.Secret)
		h.sim.RegisterKey(ch.ID, testKID, &key.PublicKey)
		h.chans = append(h.chans, ch)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	h.logs = logs
	h.opts = Options{
		LINE: h.line, Store: h.store, Clock: h.clock, Logger: zap.New(core),
		MaxInFlight: 4, Rand: func() float64 { return 0.5 },
	}
	return h
}

// start runs a new Rotator over the harness's store and channels and
// waits until it has done what is due.
func (h *harness) start() {
	h.t.Helper()
	h.run()
	h.settle()
}

// run starts a new Rotator over the harness's store and channels without
// waiting for it.
func (h *harness) run() {
	h.t.Helper()
	rot, err := New(h.chans, h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.rot, h.cancel, h.done = rot, cancel, make(chan error, 1)
	go func() { h.done <- rot.Run(ctx) }()
	h.t.Cleanup(func() { h.stop() })
}

// stop ends the running Rotator and checks it stopped cleanly.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not stop within 10s")
	}
}

// settle waits (in real time, briefly) until every channel has finished
// what was due at the fake clock's now and re-armed for later.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if h.idle() {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("rotator did not settle at %s", h.clock.Now())
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (h *harness) idle() bool {
	r := h.rot
	if r.running.Load() != 0 {
		return false
	}
	now := h.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.chans {
		if !nextOf(c).After(now) {
			return false
		}
	}
	return r.running.Load() == 0
}

// nextOf is when c's next step is due.
func nextOf(c *channel) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

// nextEvent is the earliest time any channel is due.
func (h *harness) nextEvent() time.Time {
	h.rot.mu.Lock()
	defer h.rot.mu.Unlock()
	var ts []time.Time
	for _, c := range h.rot.chans {
		c.mu.Lock()
		ts = append(ts, c.next)
		c.mu.Unlock()
	}
	return earliest(ts...)
}

// advance moves the clock by d, stopping at every event on the way so each
// step runs at the time it was due. visit, if set, runs after each event.
func (h *harness) advance(d time.Duration, visit func()) {
	h.t.Helper()
	target := h.clock.Now().Add(d)
	for {
		h.settle()
		if visit != nil {
			visit()
		}
		next := h.nextEvent()
		if next.IsZero() || next.After(target) {
			break
		}
		h.clock.Advance(next.Sub(h.clock.Now()))
	}
	if rest := target.Sub(h.clock.Now()); rest > 0 {
		h.clock.Advance(rest)
		h.settle()
	}
}

func (h *harness) readFile(path string) string {
	h.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// current returns the token the rotator serves for channel i.
func (h *harness) current(i int) string {
	tok, _, ok := h.rot.Token(h.chans[i].ID)
	if !ok {
		h.t.Fatalf("channel %s unknown", h.chans[i].ID)
	}
	return tok.AccessToken
}

// assertions returns the client assertions LINE received at endpoint, in
// order.
func (h *harness) assertions(endpoint string) []string {
	var out []string
	for _, r := range h.sim.Requests() {
		if r.Endpoint == endpoint {
			out = append(out, r.Form.Get("client_assertion"))
		}
	}
	return out
}

func (h *harness) logCount(msg string) int {
	return h.logs.FilterMessage(msg).Len()
}
