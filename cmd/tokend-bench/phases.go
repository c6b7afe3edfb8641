package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/socket"
)

// runResult holds one run's figures.
type runResult struct {
	cold, signPar, signOne time.Duration
	signBefore, signAfter  time.Duration // signPar is their mean
	coldLogLines           int
	coldCPU, coldSimCPU    time.Duration // CPU used during the cold start by tokend, and by this process (the simulator)
	coldSysCPU             time.Duration // of coldCPU, in the kernel
	coldPhases             string        // when LINE saw the key-ID listings and the issues

	warm, warmNotify, warmSocket time.Duration
	warmIssues, warmRewrites     int

	idleCPU  float64 // fraction of one core
	idleRSS  int64
	loadRSS  int64         // resident after the socket loads (for reference; the target is idle)
	idleWait time.Duration // startup reconcile before the idle window

	sockTokend, sockBare   loadResult
	warmTokend, warmBare   loadResult // -warmup before the saturated turns, not counted
	pacedTokend, pacedBare loadResult // at -paced-rate

	storm stormResult
}

type loadResult struct {
	reqs, errs int
	dur        time.Duration
	cpu        time.Duration // the server's CPU time during the load (0: not measured)
	p50, p99   time.Duration
	lats       []time.Duration // every answer's latency
}

func (l loadResult) rps() float64 { return float64(l.reqs) / l.dur.Seconds() }

type stormResult struct {
	ran                 bool
	issueSpread         time.Duration // first to last initial issuance: how close together rotations fall due
	rotated             int
	duration            time.Duration // first rotation to every channel rotated
	maxConcurrent       int
	lapses, samples     int
	issueCalls, revokes int
}

func oneRun(ctx context.Context, e *env, o options, self string, idx int) (runResult, error) {
	var r runResult
	s, err := e.newSim()
	if err != nil {
		return r, err
	}
	defer s.close()

	if idx == 0 {
		r.signOne = signBaseline(e, 1)
	}

	// 1. Cold start, between two measurements of its baseline.
	in, err := coldStart(ctx, e, o, s, &r)
	if err != nil {
		return r, err
	}

	// 2. Warm restart on the same store and outputs.
	before, err := in.snapshot()
	if err != nil {
		return r, err
	}
	issues0 := s.Count(linefake.EndpointIssueV21)
	kids0 := s.Count(linefake.EndpointKeyIDsV21)
	c, err := startChild(in.dir, in.dir+"/warm.log", o.tokendBin, "run", "-config", in.config)
	if err != nil {
		return r, err
	}
	defer c.stop()
	sockUp := make(chan time.Duration, 1)
	go func() { sockUp <- waitSocket(ctx, in.socket, c.start) }()
	r.warmNotify, err = c.waitReady(ctx, 2*time.Minute)
	if err != nil {
		return r, err
	}
	r.warmSocket = <-sockUp
	r.warm = max(r.warmNotify, r.warmSocket)
	if missing := in.missingOutputs(); missing > 0 {
		return r, fmt.Errorf("warm restart: READY=1 with %d of %d outputs missing", missing, in.n)
	}

	// 3. Idle: first let the start-up reconcile (one key-ID listing per
	// channel) finish, then measure.
	t0 := time.Now()
	waitListings(ctx, s, kids0+in.n)
	time.Sleep(2 * time.Second)
	r.idleWait = time.Since(t0)
	cpu0, err := c.cpuTime()
	if err != nil {
		return r, err
	}
	w0 := time.Now()
	select {
	case <-time.After(o.idle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	cpu1, err := c.cpuTime()
	if err != nil {
		return r, err
	}
	r.idleCPU = float64(cpu1-cpu0) / float64(time.Since(w0))
	if r.idleRSS, err = c.rss(); err != nil {
		return r, err
	}
	r.warmIssues = s.Count(linefake.EndpointIssueV21) - issues0
	after, err := in.snapshot()
	if err != nil {
		return r, err
	}
	r.warmRewrites = before.changed(after)

	// 4. Socket reads: tokend and a bare server, same load generator:
	// saturated (throughput), then paced at -paced-rate (latency).
	bareSock := in.dir + "/bare.sock"
	bc, err := startBare(ctx, in, self, bareSock)
	if err != nil {
		return r, err
	}
	targets := tokenTargets(in.n)
	r.sockTokend, r.sockBare, r.warmTokend, r.warmBare = alternate(ctx, c, bc, in.socket, bareSock, o, targets, 0)
	r.pacedTokend, r.pacedBare, _, _ = alternate(ctx, c, bc, in.socket, bareSock, o, targets, o.pacedRate)
	if r.loadRSS, err = c.rss(); err != nil {
		return r, err
	}
	if err := bc.stop(); err != nil {
		return r, err
	}
	if err := c.stop(); err != nil {
		return r, err
	}

	// 5. Rotation storm.
	if o.storm {
		r.storm, err = storm(ctx, e, o)
		if err != nil {
			return r, fmt.Errorf("storm: %w", err)
		}
	}
	return r, nil
}

// coldStart starts tokend on an empty store and records the cold-start
// figures in r; tokend has stopped when it returns.
//
// Its baseline, the same signatures in this process on GOMAXPROCS
// goroutines, is measured just before and just after, and signPar is the
// mean: on a shared machine the speed drifts, and a baseline taken on one
// side only may fall in a faster or slower spell than the start itself.
func coldStart(ctx context.Context, e *env, o options, s *sim, r *runResult) (*instance, error) {
	r.signBefore = signBaseline(e, runtime.GOMAXPROCS(0))
	in, err := e.newInstance("steady", s.url, o.logLevel, o.maxInFlight, steadyLifetimes)
	if err != nil {
		return nil, err
	}
	settle() // startChild settles too, but here before the simulator's CPU is read
	restore := o.simPs()
	defer restore()
	sim0 := selfCPU()
	c, err := startChild(in.dir, in.dir+"/cold.log", o.tokendBin, "run", "-config", in.config)
	if err != nil {
		return nil, err
	}
	r.cold, err = c.waitReady(ctx, 10*time.Minute)
	if err != nil {
		c.stop()
		return nil, err
	}
	r.coldSimCPU = selfCPU() - sim0
	user, sys, err := c.cpuTimes()
	if err != nil {
		c.stop()
		return nil, err
	}
	r.coldCPU, r.coldSysCPU = user+sys, sys
	if missing := in.missingOutputs(); missing > 0 {
		c.stop()
		return nil, fmt.Errorf("cold start: READY=1 with %d of %d outputs missing", missing, in.n)
	}
	if err := c.stop(); err != nil {
		return nil, err
	}
	r.coldLogLines = c.logLines()
	r.coldPhases = callPhases(s.Requests(), c.start, r.cold)
	restore()
	r.signAfter = signBaseline(e, runtime.GOMAXPROCS(0))
	r.signPar = (r.signBefore + r.signAfter) / 2
	return in, nil
}

// coldRuns is -cold-only: the signing baseline and a cold start, -runs
// times, for quick work on target 1.
func coldRuns(ctx context.Context, e *env, o options) error {
	var ratios []float64
	for i := range o.runs {
		fmt.Printf("# run %d/%d\n", i+1, o.runs)
		var r runResult
		s, err := e.newSim()
		if err != nil {
			return err
		}
		_, err = coldStart(ctx, e, o, s, &r)
		s.close()
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		r.printCold("  ")
		ratios = append(ratios, r.coldRatio())
	}
	fmt.Printf("cold_start ratio median %.2f of %d runs (target <= 1.5)\n", median(ratios), o.runs)
	return nil
}

// callPhases says when, after start, LINE saw the first and last key-ID
// listing and issue, and how many of each came before ready: where a cold
// start's time goes.
func callPhases(reqs []linefake.Request, start time.Time, ready time.Duration) string {
	type span struct {
		first, last time.Time
		before      int
	}
	spans := map[string]*span{}
	for _, rq := range reqs {
		sp := spans[rq.Endpoint]
		if sp == nil {
			sp = &span{first: rq.Time}
			spans[rq.Endpoint] = sp
		}
		sp.last = rq.Time
		if rq.Time.Sub(start) <= ready {
			sp.before++
		}
	}
	out := ""
	for _, ep := range []string{linefake.EndpointKeyIDsV21, linefake.EndpointIssueV21} {
		if sp := spans[ep]; sp != nil {
			out += fmt.Sprintf(" %s %.2f..%.2fs (%d before READY=1)", ep, sp.first.Sub(start).Seconds(), sp.last.Sub(start).Seconds(), sp.before)
		}
	}
	return out
}

// coldOnly is one cold start at the given log level.
func coldOnly(ctx context.Context, e *env, o options, level string) (time.Duration, int, error) {
	s, err := e.newSim()
	if err != nil {
		return 0, 0, err
	}
	defer s.close()
	in, err := e.newInstance("cold-"+level, s.url, level, o.maxInFlight, steadyLifetimes)
	if err != nil {
		return 0, 0, err
	}
	defer o.simPs()()
	c, err := startChild(in.dir, in.dir+"/cold.log", o.tokendBin, "run", "-config", in.config)
	if err != nil {
		return 0, 0, err
	}
	d, err := c.waitReady(ctx, 10*time.Minute)
	if serr := c.stop(); err == nil {
		err = serr
	}
	return d, c.logLines(), err
}

// settle collects this process's garbage and returns its free memory to
// the OS before a timed phase. Generating 10,000 channels' config and
// signing the baseline leave tens of megabytes behind; left alone, the
// collector and the background scavenger release them during the next
// phase, on the CPUs tokend is being timed on (in one profiled cold start
// at 07:51 UTC on 2026-12-05 the scavenger's madvise calls were 13 % of
// this process's samples).
func settle() { debug.FreeOSMemory() }

// simPs gives this process, which serves the LINE simulator, -sim-procs
// Ps for a cold start, and returns the call (idempotent) that gives them
// back: the signing baselines and the socket loads' Go clients run on
// every CPU. In production LINE's servers are not on tokend's machine;
// here they share its 2 CPUs, and on 2 Ps the simulator's idle Ps woke
// and spun for each request. In four alternating cold starts on
// 2026-12-06 (13:40 UTC) the simulator took 1.43-2.03 CPU-seconds on one P
// against 2.10-2.71 on two, tokend's kernel time fell by a quarter, and the
// ratio was 1.51-1.55 against 1.64-1.85.
func (o options) simPs() (restore func()) {
	if o.simProcs <= 0 || o.simProcs == runtime.GOMAXPROCS(0) {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(o.simProcs)
	return sync.OnceFunc(func() { runtime.GOMAXPROCS(prev) })
}

// signBaseline signs one assertion per channel, as tokend's cold start
// does (one per channel, shared by its key-ID listing and its issue), on
// the given number of goroutines.
func signBaseline(e *env, workers int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	now := time.Now()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= e.channels {
					return
				}
				key, _ := e.key(i)
				sg := oauth.Signer{ChannelID: channelID(i), KeyID: benchKID, Key: key}
				if _, err := sg.Sign(now, 30*24*time.Hour); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func (in *instance) missingOutputs() int {
	n := 0
	for i := range in.n {
		if fi, err := os.Stat(in.outPath(i)); err != nil || fi.Size() == 0 {
			n++
		}
	}
	return n
}

type fileID struct {
	ino   uint64
	mtime int64
}

type snapshot []fileID

func (in *instance) snapshot() (snapshot, error) {
	s := make(snapshot, in.n)
	for i := range in.n {
		fi, err := os.Stat(in.outPath(i))
		if err != nil {
			return nil, err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s[i] = fileID{st.Ino, fi.ModTime().UnixNano()}
	}
	return s, nil
}

func (s snapshot) changed(t snapshot) int {
	n := 0
	for i := range s {
		if s[i] != t[i] {
			n++
		}
	}
	return n
}

// waitSocket returns how long after start the socket first served a token.
func waitSocket(ctx context.Context, path string, start time.Time) time.Duration {
	cl := socket.NewClient(path)
	for ctx.Err() == nil {
		if _, err := cl.Token(ctx, channelName(0)); err == nil {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0
}

// loadTurns is how many turns alternate gives each server.
const loadTurns = 5

// alternate loads tokend's socket and the bare server's in turns,
// loadTurns of -socket-duration/loadTurns each, so that a slowdown of the
// shared machine (a neighbour, a CPU frequency change) falls on both.
// Each side's result includes its server's CPU time during its turns.
//
// First each server gets -warmup of the same load, returned apart and not
// counted (but tokend's wrong answers in it are): the turns compare the
// two servers' steady states. Right after the idle window, tokend's first
// second costs it about half as much CPU a request again as its later ones
// (each channel's answer is rendered at its first read, and the heap given
// back to the OS while idle is faulted in again): in 4 runs on 2026-12-05,
// 42.7-51.4 µs against 28.9-37.4 µs, and a throughput ratio of 0.58-0.73.
func alternate(ctx context.Context, tc, bc *child, tokendSock, bareSock string, o options, targets []string, rate float64) (tokend, bare, warmTokend, warmBare loadResult) {
	if o.warmup > 0 {
		warmTokend = measuredLoad(ctx, tc, tokendSock, o, o.warmup, targets, true, rate)
		warmBare = measuredLoad(ctx, bc, bareSock, o, o.warmup, targets, false, rate)
	}
	turn := o.socketFor / loadTurns
	for range loadTurns {
		tokend = tokend.add(measuredLoad(ctx, tc, tokendSock, o, turn, targets, true, rate))
		bare = bare.add(measuredLoad(ctx, bc, bareSock, o, turn, targets, false, rate))
	}
	tokend.errs += warmTokend.errs // a wrong answer counts, warm-up or not
	return tokend.withPercentiles(), bare.withPercentiles(), warmTokend, warmBare
}

// measuredLoad is anyLoad, with the CPU time server c used meanwhile.
func measuredLoad(ctx context.Context, c *child, sock string, o options, d time.Duration, targets []string, check bool, rate float64) loadResult {
	cpu0, err0 := c.cpuTime()
	l := anyLoad(ctx, sock, o, d, targets, check, rate)
	cpu1, err1 := c.cpuTime()
	if err0 == nil && err1 == nil {
		l.cpu = cpu1 - cpu0
	}
	return l
}

// anyLoad is load, paced by the C generator when -paced-client c built
// one (cLoad).
func anyLoad(ctx context.Context, sock string, o options, d time.Duration, targets []string, check bool, rate float64) loadResult {
	if rate > 0 && o.pacedBin != "" {
		return cLoad(ctx, o.pacedBin, sock, o.clients, d, len(targets), check, rate)
	}
	return load(ctx, sock, o.clients, d, targets, check, rate)
}

// cpuPerReq is the server's CPU time per answered request (0: unknown).
func (l loadResult) cpuPerReq() time.Duration {
	if l.reqs == 0 {
		return 0
	}
	return l.cpu / time.Duration(l.reqs)
}

// add adds b's requests to l's; percentiles are left to withPercentiles.
func (l loadResult) add(b loadResult) loadResult {
	l.reqs += b.reqs
	l.errs += b.errs
	l.dur += b.dur
	l.cpu += b.cpu
	l.lats = append(l.lats, b.lats...)
	return l
}

// withPercentiles sets p50 and p99 from every latency.
func (l loadResult) withPercentiles() loadResult {
	l.p50, l.p99 = percentile(l.lats, 50), percentile(l.lats, 99)
	return l
}

// percentile sorts d and returns its pth percentile (0 for none).
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)*p/100]
}

// tokenTargets are the token paths of channels 0..n-1, made once for
// every load.
func tokenTargets(n int) []string {
	targets := make([]string, n)
	for i := range targets {
		targets[i] = "/v1/channels/" + channelName(i) + "/token"
	}
	return targets
}

// load runs clients keep-alive clients, each fetching random channels'
// tokens as JSON over the Unix socket for d. rate 0: each client sends its
// next request as soon as it has the answer (saturation: throughput, and a
// latency that is only queueing, concurrency / throughput). rate > 0: the
// clients together send rate requests a second on a fixed schedule, and a
// latency counts from when its request was due, not when it went out, so
// a stall is not hidden by the requests it delayed.
func load(ctx context.Context, sock string, clients int, d time.Duration, targets []string, check bool, rate float64) loadResult {
	// The generator must not measure itself. This process also holds the
	// simulator's 10,000 channels, and a collection of its heap stalls
	// the clients for milliseconds, which would count against the server.
	// So everything a client needs is made before the window (targets by
	// the caller), a request allocates nothing, and the collector runs
	// before the window, not in it.
	lats := make([][]time.Duration, clients)
	for g := range lats {
		c := 1 << 14
		if rate > 0 {
			c = int(rate*d.Seconds())/clients + 64
		}
		lats[g] = make([]time.Duration, 0, c)
	}
	errs := make([]int, clients)
	// Every client connects before the window opens, as a bot keeps its
	// connection open: the window times reads, not connects. (Alternating
	// with connecting at the first request, 4 runs each on 2026-12-05, the
	// p99s did not move beyond the machine's noise.) A connect that fails
	// counts as an error, and get dials again.
	conns := make([]*rawConn, clients)
	for g := range conns {
		conns[g] = dialRaw(sock)
		if err := conns[g].connect(); err != nil {
			errs[g]++
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := range clients {
		wg.Go(func() {
			cl := conns[g]
			defer cl.close()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			l := lats[g]
			var every time.Duration
			if rate > 0 {
				every = time.Duration(float64(clients) / rate * float64(time.Second))
			}
			due := start.Add(every * time.Duration(g) / time.Duration(clients)) // spread the clients over one interval
			for ctx.Err() == nil {
				t := time.Now()
				if every > 0 {
					// Latency counts from when the request was due if the
					// previous answer made this client late (no coordinated
					// omission), but from when it was sent if the client
					// slept: a sleep's overshoot (often 100µs or more on a
					// loaded machine) is the generator's, not the server's.
					if wait := due.Sub(t); wait > 0 {
						time.Sleep(wait)
						t = time.Now()
					} else {
						t = due
					}
					due = due.Add(every)
				}
				if t.After(deadline) {
					break
				}
				status, err := cl.get(targets[rng.IntN(len(targets))])
				if err != nil {
					errs[g]++
					continue
				}
				l = append(l, time.Since(t))
				if check && status != http.StatusOK {
					errs[g]++
				}
			}
			lats[g] = l
		})
	}
	wg.Wait()
	res := loadResult{dur: time.Since(start)}
	for g := range clients {
		res.lats = append(res.lats, lats[g]...)
		res.errs += errs[g]
	}
	res.reqs = len(res.lats)
	return res.withPercentiles()
}

// storm issues every channel a 2-minute token that falls due -storm-lead
// (10s) after issue (rotate_before 1m50s, revoke_after 1m, no jitter), so every rotation is due
// within the cold start's spread, then watches the rotations: LINE's
// concurrency, completion, and that every output always holds a token
// LINE considers valid.
func storm(ctx context.Context, e *env, o options) (stormResult, error) {
	res := stormResult{ran: true}
	s, err := e.newSim()
	if err != nil {
		return res, err
	}
	defer s.close()
	// revoke_after at most 10 rotations' worth: tokend refuses lifetimes
	// that would keep more than 15 of a channel's tokens valid at once
	// (config.HeldAtOnce), and with a -storm-lead of a few seconds a
	// minute's grace would.
	revokeAfter := min(time.Minute, 10*o.stormLead)
	lt := lifetimes{tokenTTL: "2m", rotateBefore: (2*time.Minute - o.stormLead).String(), revokeAfter: revokeAfter.String(), reconcileEvery: "1h", jitter: "0"}
	in, err := e.newInstance("storm", s.url, o.logLevel, o.maxInFlight, lt)
	if err != nil {
		return res, err
	}
	c, err := startChild(in.dir, in.dir+"/storm.log", o.tokendBin, "run", "-config", in.config)
	if err != nil {
		return res, err
	}
	defer c.stop()
	if _, err := c.waitReady(ctx, 10*time.Minute); err != nil {
		return res, err
	}
	// The initial issuance, from the simulator's log: every rotation falls
	// due 10s after its token's issue.
	var first, last time.Time
	for _, rq := range s.Requests() {
		if rq.Endpoint == linefake.EndpointIssueV21 {
			if first.IsZero() {
				first = rq.Time
			}
			last = rq.Time
		}
	}
	res.issueSpread = last.Sub(first)
	// Each channel's first token, as LINE issued it: a channel whose
	// rotation fell due before READY=1 (a cold start longer than 10s) may
	// already serve its second.
	initial := make([]string, in.n)
	for i := range in.n {
		if toks := s.Tokens(channelID(i)); len(toks) > 0 {
			initial[i] = toks[0].AccessToken
		}
	}
	rotated := make([]bool, in.n)
	var firstRot, doneAt time.Time
	deadline := time.Now().Add(o.stormTimeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		res.samples++
		for i := range in.n {
			b, err := os.ReadFile(in.outPath(i))
			tok := string(b)
			if err != nil || !s.IsValid(tok) {
				res.lapses++
				continue
			}
			if !rotated[i] && tok != initial[i] {
				rotated[i] = true
				res.rotated++
				if firstRot.IsZero() {
					firstRot = time.Now()
				}
			}
		}
		if res.rotated == in.n {
			doneAt = time.Now()
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !doneAt.IsZero() {
		res.duration = doneAt.Sub(firstRot)
	}
	res.maxConcurrent = s.MaxConcurrent()
	res.issueCalls = s.Count(linefake.EndpointIssueV21)
	res.revokes = s.Count(linefake.EndpointRevokeV21)
	if err := c.stop(); err != nil {
		return res, err
	}
	return res, nil
}

// socketRuns is -socket-only: one cold start, its start-up key-ID
// listings, then target 4's saturated loads of tokend and the bare server,
// -runs times, for quick work on target 4.
func socketRuns(ctx context.Context, e *env, o options, self string) error {
	s, err := e.newSim()
	if err != nil {
		return err
	}
	defer s.close()
	in, err := e.newInstance("socket", s.url, o.logLevel, o.maxInFlight, steadyLifetimes)
	if err != nil {
		return err
	}
	c, err := startChild(in.dir, in.dir+"/socket.log", o.tokendBin, "run", "-config", in.config)
	if err != nil {
		return err
	}
	defer c.stop()
	if _, err := c.waitReady(ctx, 10*time.Minute); err != nil {
		return err
	}
	waitListings(ctx, s, in.n)
	time.Sleep(2 * time.Second)
	bareSock := in.dir + "/bare.sock"
	bc, err := startBare(ctx, in, self, bareSock)
	if err != nil {
		return err
	}
	defer bc.stop()
	targets := tokenTargets(in.n)
	var rs []runResult
	for i := range o.runs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var r runResult
		r.sockTokend, r.sockBare, r.warmTokend, r.warmBare = alternate(ctx, c, bc, in.socket, bareSock, o, targets, 0)
		r.pacedTokend, r.pacedBare, _, _ = alternate(ctx, c, bc, in.socket, bareSock, o, targets, o.pacedRate)
		indent := fmt.Sprintf("  %d/%d ", i+1, o.runs)
		r.printSocket(indent)
		r.printPaced(indent)
		rs = append(rs, r)
	}
	fmt.Printf("socket_throughput ratio median %.3f of %d runs (target >= %.1f); server CPU per request: tokend %.1fµs, bare %.1fµs\n",
		median(collect(rs, func(r runResult) float64 { return r.sockRatio() })), o.runs, targetSockRatio,
		us(median(collect(rs, func(r runResult) time.Duration { return r.sockTokend.cpuPerReq() }))),
		us(median(collect(rs, func(r runResult) time.Duration { return r.sockBare.cpuPerReq() }))))
	summaryPaced(rs, o)
	return nil
}

// waitListings waits until the simulator has seen n key-ID listings in
// all (a start's reconcile lists each channel once), ctx is done, or 5
// minutes have passed.
func waitListings(ctx context.Context, s *sim, n int) {
	t0 := time.Now()
	for s.Count(linefake.EndpointKeyIDsV21) < n && ctx.Err() == nil && time.Since(t0) < 5*time.Minute {
		time.Sleep(50 * time.Millisecond)
	}
}

// startBare starts the bare socket server (-bare-socket) on sock, in
// in's directory, and waits for its READY=1.
func startBare(ctx context.Context, in *instance, self, sock string) (*child, error) {
	bc, err := startChild(in.dir, in.dir+"/bare.log", self, "-bare-socket", sock)
	if err != nil {
		return nil, err
	}
	if _, err := bc.waitReady(ctx, 30*time.Second); err != nil {
		bc.stop()
		return nil, err
	}
	return bc, nil
}
