package rotator

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/metrics"
	"github.com/tokend/tokend/internal/oauth"
)

// faultWindow is the simulated time over which the LINE fault tests count
// issue attempts, starting one minute before the rotation is due.
const faultWindow = time.Hour

// faultEnv is a harness whose LINE client has its own transport (so a test
// can close its keep-alive connections before checking for leaked
// goroutines), a chosen timeout, real Prometheus metrics and seeded retry
// jitter.
type faultEnv struct {
	*harness
	m  *metrics.Metrics
	tr *http.Transport
}

func newFaultEnv(t *testing.T, n int, timeout time.Duration, seed uint64, mutate func(int, *Channel)) *faultEnv {
	t.Helper()
	h := newHarness(t, n, mutate)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	line, err := oauth.NewClient(oauth.Options{
		BaseURL: h.srv.URL,
		Timeout: timeout,
		HTTPClient: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.line = line
	h.opts.LINE = line
	m := metrics.New()
	h.opts.Metrics = m
	h.opts.Rand = seededRand(seed)
	return &faultEnv{harness: h, m: m, tr: tr}
}

// seededRand is a deterministic jitter source that, unlike the harness's
// constant 0.5, exercises the whole [0,1) range the policy allows.
func seededRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// shutdown stops the rotator and the simulator and drops idle client
// connections, so that goleak sees only what would really leak.
func (e *faultEnv) shutdown() {
	e.stop()
	e.srv.Close()
	e.tr.CloseIdleConnections()
}

// series returns every sample of the metric family name whose labels
// include want, keyed by the labels want does not fix ("result=http_500").
func series(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) map[string]float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			var rest []string
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
				if _, fixed := want[lp.GetName()]; !fixed {
					rest = append(rest, lp.GetName()+"="+lp.GetValue())
				}
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			sort.Strings(rest)
			v := m.GetCounter().GetValue()
			if m.Gauge != nil {
				v = m.GetGauge().GetValue()
			}
			out[strings.Join(rest, ",")] = v
		}
	}
	return out
}

// retryBounds is the range of delays DefaultRetry allows after the k-th
// consecutive failure (k from 1), restated from the documented policy
// rather than computed by the code under test: retryable errors wait
// between half and all of min(Base·2^(k-1), Max), never less than
// Retry-After (capped at MaxRetryAfter); errors retrying cannot fix wait
// Slow ±10%.
func retryBounds(p Retry, k int, slow bool, retryAfter time.Duration) (lo, hi time.Duration) {
	if slow {
		return p.Slow * 9 / 10, p.Slow * 11 / 10
	}
	d := p.Max
	if k <= 30 && p.Base<<(k-1) < p.Max {
		d = p.Base << (k - 1)
	}
	lo, hi = d/2, d
	if ra := min(retryAfter, p.MaxRetryAfter); ra > 0 {
		lo, hi = max(lo, ra), max(hi, ra)
	}
	return lo, hi
}

// attemptRange is how many attempts the policy allows in [first, end] when
// the first one is at first: from always waiting the longest allowed delay
// to always waiting the shortest.
func attemptRange(p Retry, first, end time.Time, slow bool, retryAfter time.Duration) (fewest, most int) {
	count := func(pick func(lo, hi time.Duration) time.Duration) int {
		n := 0
		for t, k := first, 1; !t.After(end); k++ {
			n++
			t = t.Add(pick(retryBounds(p, k, slow, retryAfter)))
		}
		return n
	}
	return count(func(_, hi time.Duration) time.Duration { return hi }),
		count(func(lo, _ time.Duration) time.Duration { return lo })
}

// lineFault is one row of TestLINEFaults: what goes wrong at LINE's issue
// endpoint when the channel's rotation is due, and how tokend must react.
type lineFault struct {
	name       string
	cause      string        // oauth.Cause label in metrics and logs
	slow       bool          // an error retrying cannot fix: retried every ~Slow
	unknown    bool          // LINE may have issued a token whose answer was lost: retried every ~Slow too, without a fix
	retryAfter time.Duration // the Retry-After LINE sends, if any
	timeout    time.Duration // the client's line.timeout; 0: 2s
	inject     func(t *testing.T, e *faultEnv)
	clear      func(t *testing.T, e *faultEnv)
}

// onIssue makes the issue endpoint answer with f until the fault clears.
func onIssue(f linefake.Fault) (func(*testing.T, *faultEnv), func(*testing.T, *faultEnv)) {
	return func(_ *testing.T, e *faultEnv) { e.sim.SetFault(linefake.EndpointIssueV21, f) },
		func(_ *testing.T, e *faultEnv) { e.sim.ClearFaults() }
}

func lineFaultRows() []lineFault {
	row := func(name, cause string, f linefake.Fault) lineFault {
		in, out := onIssue(f)
		return lineFault{name: name, cause: cause, inject: in, clear: out}
	}
	// An answer lost or unreadable: LINE may have issued a token, one of
	// the channel's 30, so a channel still serving a valid one retries
	// slowly (errMaybeIssued).
	unknown := func(r lineFault) lineFault { r.unknown = true; return r }
	rows := []lineFault{
		row("500", "http_500", linefake.Fault{Status: 500}),
		row("502", "http_502", linefake.Fault{Status: 502, Body: "<html>Bad Gateway</html>", ContentType: "text/html"}),
		row("503", "http_503", linefake.Fault{Status: 503}),
		func() lineFault {
			r := row("429 with Retry-After", "http_429", linefake.Fault{Status: 429, RetryAfter: "600"})
			r.retryAfter = 10 * time.Minute // above the 5 min backoff cap: LINE's word wins
			return r
		}(),
		row("429 without Retry-After", "http_429", linefake.Fault{Status: 429}),
		func() lineFault {
			// Slower than line.timeout: the client gives up after 200ms of
			// real time; the simulator then drops the request unprocessed.
			r := row("slower than line.timeout", "timeout", linefake.Fault{Delay: 500 * time.Millisecond})
			r.timeout = 200 * time.Millisecond
			r.unknown = true
			return r
		}(),
		unknown(row("connection reset", "network", linefake.Fault{Drop: true})),
		unknown(row("malformed JSON", "malformed", linefake.Fault{Malformed: true})),
		unknown(row("10 MiB body", "too_large", linefake.Fault{BodySize: 10 << 20})),
		unknown(row("200 text/html", "malformed", linefake.Fault{Status: 200, ContentType: "text/html",
			Body: "<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>"})),
		func() lineFault {
			r := row("404 unknown kid", "key_not_found", linefake.Fault{Status: 404,
				Body: `{"message":"Cannot find channel key that satisfies the conditions"}`})
			r.slow = true
			return r
		}(),
		{
			// The real thing: the public key registered at LINE for the
			// channel's kid was replaced, so the signature no longer verifies.
			name: "400 invalid_client", cause: "invalid_client", slow: true,
			inject: func(t *testing.T, e *faultEnv) {
				other, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					t.Fatal(err)
				}
				e.sim.RegisterKey(e.chans[0].ID, testKID, &other.PublicKey)
			},
			clear: func(t *testing.T, e *faultEnv) {
				e.sim.RegisterKey(e.chans[0].ID, testKID, &sharedKey(t).PublicKey)
			},
		},
	}
	return rows
}

// TestLINEFaults makes LINE's issue endpoint misbehave in every way the
// client tells apart, at the moment a channel holding a valid token is due
// for rotation, and checks that tokend keeps serving that token, retries
// exactly as the policy says, names the cause in metrics and logs, leaks
// nothing, and rotates as soon as LINE recovers.
func TestLINEFaults(t *testing.T) {
	for i, tt := range lineFaultRows() {
		t.Run(tt.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			e := newFaultEnv(t, 1, timeout, uint64(i+1), func(_ int, ch *Channel) {
				// Rotation due 14h after issuance; the token lives 10h more.
				ch.TokenTTL, ch.RotateBefore, ch.Jitter = 24*time.Hour, 10*time.Hour, 0
			})
			e.start()
			ch := e.chans[0]
			old := e.current(0)
			oldTok, st, _ := e.rot.Token(ch.ID)
			rotateAt := st.NextRotation

			e.advance(rotateAt.Sub(e.clock.Now())-time.Minute, nil)
			tt.inject(t, e)
			e.sim.ResetRequests()
			windowEnd := e.clock.Now().Add(faultWindow)
			e.advance(faultWindow, func() {
				if got := e.current(0); got != old {
					t.Fatalf("served token changed at %s during the fault", e.clock.Now())
				}
				if got := e.readFile(ch.Outputs[0].Path); got != old {
					t.Fatalf("raw output lost the valid token at %s", e.clock.Now())
				}
				var js struct {
					AccessToken string `json:"access_token"`
				}
				if err := json.Unmarshal([]byte(e.readFile(ch.Outputs[1].Path)), &js); err != nil || js.AccessToken != old {
					t.Fatalf("json output lost the valid token at %s (%v)", e.clock.Now(), err)
				}
			})
			if !e.sim.IsValid(old) {
				t.Fatal("the served token is no longer valid at LINE")
			}

			// Retries follow the policy. An attempt whose client gave up
			// (the timeout case) is logged by the simulator only when it
			// notices: wait for that, in real time, bounded.
			for deadline := time.Now().Add(10 * time.Second); e.sim.InFlight() > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the simulator still serves %d requests", e.sim.InFlight())
				}
			}
			var at []time.Time
			for _, r := range e.sim.Requests() {
				if r.Endpoint == linefake.EndpointIssueV21 {
					at = append(at, r.Time)
				}
			}
			n := len(at)
			if n == 0 {
				t.Fatal("no issue attempt during the fault window")
			}
			if !at[0].Equal(rotateAt) {
				t.Errorf("first attempt at %s, want the rotation time %s", at[0], rotateAt)
			}
			for k := 1; k < n; k++ {
				lo, hi := retryBounds(DefaultRetry, k, tt.slow || tt.unknown, tt.retryAfter)
				if gap := at[k].Sub(at[k-1]); gap < lo || gap > hi {
					t.Errorf("delay after failure %d = %s, want within [%s, %s]", k, gap, lo, hi)
				}
			}
			fewest, most := attemptRange(DefaultRetry, rotateAt, windowEnd, tt.slow || tt.unknown, tt.retryAfter)
			if n < fewest || n > most {
				t.Errorf("%d issue attempts in the %s window; the policy allows %d..%d", n, faultWindow, fewest, most)
			}
			t.Logf("%s: %d issue attempts in %s (policy allows %d..%d), cause %s", tt.name, n, faultWindow, fewest, most, tt.cause)

			// The cause is named in the metrics...
			rot := series(t, e.m.Registry(), "tokend_rotations_total", map[string]string{"channel": ch.Name})
			if want := map[string]float64{"result=ok": 1, "result=" + tt.cause: float64(n)}; !maps.Equal(rot, want) {
				t.Errorf("tokend_rotations_total{channel=%q} = %v, want %v", ch.Name, rot, want)
			}
			reqs := series(t, e.m.Registry(), "tokend_line_requests_total", map[string]string{"endpoint": "issue_v2.1"})
			if want := map[string]float64{"result=ok": 1, "result=" + tt.cause: float64(n)}; !maps.Equal(reqs, want) {
				t.Errorf(`tokend_line_requests_total{endpoint="issue_v2.1"} = %v, want %v`, reqs, want)
			}
			// ...and in one log line per attempt.
			logs := e.logs.FilterMessage("issue token failed").All()
			if len(logs) != n {
				t.Errorf("%d \"issue token failed\" log lines for %d attempts", len(logs), n)
			}
			for _, l := range logs {
				f := l.ContextMap()
				fix, _ := f["fix"].(string)
				msg, _ := f["error"].(string)
				switch {
				case f["cause"] != tt.cause || f["channel"] != ch.Name:
					t.Errorf("log line cause=%v channel=%v, want %s %s", f["cause"], f["channel"], tt.cause, ch.Name)
				case tt.slow != (fix != "") || tt.slow != (l.Level == zapcore.ErrorLevel):
					t.Errorf("log line level %s fix %q: want error level with a fix exactly for errors retrying cannot fix", l.Level, fix)
				case tt.unknown != strings.Contains(msg, "retrying slowly"):
					t.Errorf("log line error %q: want it to say the retries are slow exactly when LINE may have issued a token", msg)
				case strings.Contains(msg, old):
					t.Error("log line contains the token")
				default:
					continue
				}
				break // one bad line says it
			}

			// LINE recovers: a new token before the old one expires, at the
			// next attempt the policy schedules.
			tt.clear(t, e)
			_, hi := retryBounds(DefaultRetry, n, tt.slow || tt.unknown, tt.retryAfter)
			e.advance(hi+time.Second, nil)
			got := e.current(0)
			if got == old || !e.sim.IsValid(got) {
				t.Fatalf("no new valid token within %s of LINE recovering", hi)
			}
			if !e.clock.Now().Before(oldTok.ExpiresAt) {
				t.Fatalf("recovered at %s, after the old token expired at %s", e.clock.Now(), oldTok.ExpiresAt)
			}
			if e.readFile(ch.Outputs[0].Path) != got {
				t.Fatal("new token not published")
			}
			if !e.rot.Ready() {
				t.Error("not ready after recovery")
			}
			if rot := series(t, e.m.Registry(), "tokend_rotations_total", map[string]string{"channel": ch.Name, "result": "ok"}); rot[""] != 2 {
				t.Errorf("tokend_rotations_total{result=ok} = %v after recovery, want 2", rot[""])
			}

			// A gocron job that panicked would never re-arm and advance
			// would have failed to settle; what remains is leaks.
			e.shutdown()
			goleak.VerifyNone(t, ignore)
		})
	}
}
