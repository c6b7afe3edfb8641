package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for tokend-bench in its hidden
// child mode (the bare socket server), as the bench execs itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-bare-socket" {
		if err := bareServe(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "tokend-bench bare:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke runs every phase of the bench once with a few channels, short
// windows and an early storm: the code must work; its figures are not
// checked (speed targets are what `make bench` prints, not test failures).
func TestSmoke(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tokend")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tokend")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tokend: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := options{
		failShare: 1, pacedClient: "c", // the default: the C generator, compiled with cc
		channels: 50, keys: 1, runs: 1, idle: time.Second, socketFor: 200 * time.Millisecond, warmup: 50 * time.Millisecond,
		clients: 8, pacedRate: 1000, maxInFlight: 4, logLevel: "warn",
		storm: true, stormTimeout: time.Minute, stormLead: 2 * time.Second,
		tokendBin:  bin,
		outputs:    t.TempDir(), // token files apart from the store, as by default
		stallProbe: 100 * time.Millisecond,
	}
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	// The quick modes for targets 1 and 4, and the outage (also flapping); one with a key per few channels
	// (the simulator must know which key signs each channel's assertions).
	for _, mode := range []func(*options){
		func(o *options) { o.coldOnly, o.keys = true, 3 },
		func(o *options) { o.socketOnly = true },
		func(o *options) { o.socketOnly, o.pacedClient = true, "go" },
		func(o *options) { o.outage = 3 * time.Second },
		func(o *options) { o.outage, o.flap = 3*time.Second, 500*time.Millisecond },
		func(o *options) { o.outage, o.failShare = 3*time.Second, 0.5 },
	} {
		m := o
		mode(&m)
		if err := run(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckRefusesFlags: flag values the bench cannot run with are refused
// with a message naming the flag, not ignored.
func TestCheckRefusesFlags(t *testing.T) {
	ok := options{channels: 10, keys: 1, runs: 1, clients: 1, pacedRate: 1, stormLead: 10 * time.Second, failShare: 1, pacedClient: "go"}
	if err := ok.check(); err != nil {
		t.Fatalf("check(defaults) = %v", err)
	}
	for _, c := range []struct {
		flag string
		set  func(*options)
	}{
		{"-channels", func(o *options) { o.channels = 0 }},
		{"-storm-lead", func(o *options) { o.stormLead = 2 * time.Minute }},
		{"-keys", func(o *options) { o.keys = 11 }},
		{"-stall-probe", func(o *options) { o.stallProbe = -time.Second }},
		{"-sim-procs", func(o *options) { o.simProcs = -1 }},
		{"-paced-client", func(o *options) { o.pacedClient = "rust" }},
		{"-outage", func(o *options) { o.outage = -time.Second }},
		{"-flap", func(o *options) { o.flap = time.Second }},
		{"-fail-share", func(o *options) { o.outage, o.failShare = time.Minute, 0 }},
		{"-fail-share", func(o *options) { o.outage, o.failShare = time.Minute, 1.5 }},
		{"-fail-share", func(o *options) { o.failShare = 0.5 }}, // without -outage
	} {
		o := ok
		c.set(&o)
		if err := o.check(); err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%s: check() = %v, want an error naming %s", c.flag, err, c.flag)
		}
	}
	o := ok
	o.outage, o.flap, o.failShare = time.Minute, time.Second, 0.5
	if err := o.check(); err != nil {
		t.Errorf("-outage with -flap and -fail-share: check() = %v", err)
	}
}

// TestSimPs: a cold start's simulator runs on -sim-procs Ps, and every
// CPU comes back for what follows (the signing baseline, the loads), also
// when restore is called twice (explicitly, then deferred).
func TestSimPs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // as on the bench's machine, whatever this one has
	all := 2
	restore := options{simProcs: 1}.simPs()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("during the cold start GOMAXPROCS = %d, want 1", got)
	}
	restore()
	restore()
	if got := runtime.GOMAXPROCS(0); got != all {
		t.Errorf("after restore GOMAXPROCS = %d, want %d", got, all)
	}
	options{simProcs: 0}.simPs()()
	if got := runtime.GOMAXPROCS(0); got != all {
		t.Errorf("-sim-procs 0: GOMAXPROCS = %d, want %d (unchanged)", got, all)
	}
}

// TestCLoad: the C generator sends the paced requests for the bench's
// channel names, and its figures come back whole: every answer's latency,
// and with check the answers that are not 200 as errors.
func TestCLoad(t *testing.T) {
	bin, err := buildPacedC(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path != "/v1/channels/b00000/token" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(`{"access_token":"x"}`))
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	defer srv.Close()

	const rate, d = 400.0, time.Second
	for _, check := range []bool{false, true} {
		l := cLoad(context.Background(), bin, sock, 4, d, 2, check, rate)
		if l.reqs < 300 || l.reqs > 420 || len(l.lats) != l.reqs || l.p99 <= 0 || l.p50 > l.p99 {
			t.Errorf("check %v: %d answers, %d latencies, p50 %v p99 %v; want about %v at %v a second", check, l.reqs, len(l.lats), l.p50, l.p99, d, rate)
		}
		if wantErrs := 0; !check && l.errs != wantErrs {
			t.Errorf("without check: %d errors", l.errs)
		}
		if check && (l.errs < l.reqs/4 || l.errs > 3*l.reqs/4) {
			t.Errorf("with check: %d errors of %d answers, half of them 503", l.errs, l.reqs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen["/v1/channels/b00000/token"] == 0 || seen["/v1/channels/b00001/token"] == 0 {
		t.Errorf("paths requested: %v; want the two channels' token paths", seen)
	}
	// A generator that cannot reach its server is an error, never figures.
	if l := cLoad(context.Background(), bin, filepath.Join(t.TempDir(), "none.sock"), 2, 100*time.Millisecond, 2, true, 100); l.errs == 0 {
		t.Errorf("no server: %+v, want errors", l)
	}
}

// TestSpinCountsGaps: the stall probe counts each gap between clock reads
// by its length: over 1 ms a slow one, over 20 µs lost time, shorter ones
// (a clock read, a timer tick) nothing. A clock that jumps stands in for a
// CPU taken away.
func TestSpinCountsGaps(t *testing.T) {
	base := time.Unix(0, 0)
	steps := []time.Duration{
		0, 1 * time.Microsecond, 2 * time.Microsecond, // reads
		22 * time.Microsecond,   // a 20 µs gap: not lost
		52 * time.Microsecond,   // 30 µs: lost
		2052 * time.Microsecond, // 2 ms: lost and slow
		3052 * time.Microsecond, // 1 ms exactly: lost, not slow
		8052 * time.Microsecond, // 5 ms: lost, slow, the longest
		8053 * time.Microsecond,
		10 * time.Millisecond, // 1.947 ms: lost, slow; past d, the last read
	}
	i := 0
	now := func() time.Time {
		if i >= len(steps) {
			t.Fatal("spin read the clock after it had spun for d")
		}
		i++
		return base.Add(steps[i-1])
	}
	got := spin(9*time.Millisecond, now)
	want := stalls{
		spun: 10 * time.Millisecond, slow: 3, longest: 5 * time.Millisecond,
		lost: 30*time.Microsecond + 2*time.Millisecond + time.Millisecond + 5*time.Millisecond + (10*time.Millisecond - 8053*time.Microsecond),
	}
	if got != want {
		t.Errorf("spin = %+v, want %+v", got, want)
	}
	line := stallLine([]stalls{got, {spun: 10 * time.Millisecond}})
	for _, w := range []string{"each of 2 CPUs", "150.0 times a second", "longest 5.0 ms", "49.9 %"} {
		if !strings.Contains(line, w) {
			t.Errorf("stallLine = %q, want it to contain %q", line, w)
		}
	}
}

// TestRawGetAllocatesNothing: the load generator's request allocates
// nothing, so the bench process does not collect garbage in a load window
// and stall its clients (the server being measured runs in a child).
func TestRawGetAllocatesNothing(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "bare.sock")
	srv := exec.Command(os.Args[0], "-bare-socket", sock)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	cl := dialRaw(sock)
	defer cl.close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := cl.get("/v1/channels/b00000/token"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("bare server not answering: %v", err)
		}
	}
	target := "/v1/channels/b00001/token"
	allocs := testing.AllocsPerRun(200, func() {
		if status, err := cl.get(target); err != nil || status != 200 {
			t.Fatalf("get: %d %v", status, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a request allocates %.1f times, want 0", allocs)
	}
}

// TestLoadConnectsBeforeWindow: every client connects before the load's
// window opens, not at its first request: paced at one request a second
// per client, the 8 clients' first requests are spread over a second, and
// so would their connects be.
func TestLoadConnectsBeforeWindow(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accepts []time.Time
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("t")) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				accepts = append(accepts, time.Now())
				mu.Unlock()
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const clients = 8
	res := load(context.Background(), sock, clients, time.Second, []string{"/t"}, true, clients)
	if res.errs != 0 || res.reqs == 0 {
		t.Fatalf("load: %d requests, %d errors", res.reqs, res.errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(accepts) != clients {
		t.Fatalf("%d connections; want %d, one a client", len(accepts), clients)
	}
	slices.SortFunc(accepts, time.Time.Compare)
	if spread := accepts[clients-1].Sub(accepts[0]); spread > 300*time.Millisecond {
		t.Fatalf("the clients connected over %v: at their first requests, inside the window", spread)
	}
}
