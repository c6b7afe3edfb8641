package main

import (
	"fmt"
	"time"
)

const (
	targetColdRatio = 1.5
	targetWarm      = 2 * time.Second
	targetIdleCPU   = 0.01
	targetIdleRSS   = 150 << 20
	targetSockRatio = 0.8
	targetSockP99   = time.Millisecond
)

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r runResult) print(indent string) {
	r.printCold(indent)
	fmt.Printf("%swarm_restart %s (READY=1 %s, socket %s)  issues %d  rewrites %d\n", indent, secs(r.warm), secs(r.warmNotify), secs(r.warmSocket), r.warmIssues, r.warmRewrites)
	fmt.Printf("%sidle cpu %.3f%% of a core  rss %s  (start-up reconcile took %s before the window)\n", indent, 100*r.idleCPU, mib(r.idleRSS), secs(r.idleWait))
	r.printSocket(indent)
	r.printPaced(indent)
	fmt.Printf("%srss after the socket loads %s\n", indent, mib(r.loadRSS))
	if st := r.storm; st.ran {
		fmt.Printf("%sstorm rotated %d in %s (due within %s)  max concurrent %d  lapses %d in %d samples  issue calls %d  revokes %d\n", indent,
			st.rotated, secs(st.duration), secs(st.issueSpread), st.maxConcurrent, st.lapses, st.samples, st.issueCalls, st.revokes)
	}
}

// printSocket prints the saturated socket loads: throughput, latency and
// each server's CPU per request.
func (r runResult) printSocket(indent string) {
	fmt.Printf("%ssocket tokend %.0f req/s p50 %v p99 %v errs %d cpu %.1fµs/req | bare %.0f req/s p50 %v p99 %v errs %d cpu %.1fµs/req  ratio %.3f\n", indent,
		r.sockTokend.rps(), r.sockTokend.p50, r.sockTokend.p99, r.sockTokend.errs, us(r.sockTokend.cpuPerReq()),
		r.sockBare.rps(), r.sockBare.p50, r.sockBare.p99, r.sockBare.errs, us(r.sockBare.cpuPerReq()), r.sockRatio())
	if w := r.warmTokend; w.reqs > 0 {
		fmt.Printf("%s  (warm-up, not counted: tokend %.0f req/s cpu %.1fµs/req | bare %.0f req/s cpu %.1fµs/req  ratio %.3f)\n", indent,
			w.rps(), us(w.cpuPerReq()), r.warmBare.rps(), us(r.warmBare.cpuPerReq()), r.warmRatio())
	}
}

// warmRatio is the throughput ratio of the -warmup loads (for reference).
func (r runResult) warmRatio() float64 { return r.warmTokend.rps() / r.warmBare.rps() }

// printPaced prints the loads at -paced-rate: target 4's latency.
func (r runResult) printPaced(indent string) {
	fmt.Printf("%ssocket paced tokend %.0f req/s p50 %v p99 %v errs %d | bare %.0f req/s p50 %v p99 %v\n", indent,
		r.pacedTokend.rps(), r.pacedTokend.p50, r.pacedTokend.p99, r.pacedTokend.errs, r.pacedBare.rps(), r.pacedBare.p50, r.pacedBare.p99)
}

// sockRatio is target 4's throughput figure.
func (r runResult) sockRatio() float64 { return r.sockTokend.rps() / r.sockBare.rps() }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// coldRatio is target 1's figure: the cold start against its baseline.
func (r runResult) coldRatio() float64 { return r.cold.Seconds() / r.signPar.Seconds() }

func (r runResult) printCold(indent string) {
	fmt.Printf("%scold_start %s  sign@%d %s (%s before, %s after)  ratio %.2f  (%d log lines; LINE saw%s)\n", indent, secs(r.cold), gomaxprocs(), secs(r.signPar),
		secs(r.signBefore), secs(r.signAfter), r.coldRatio(), r.coldLogLines, r.coldPhases)
	fmt.Printf("%scold_start_cpu tokend %s (kernel %s)  simulator %s  (of %s on %d cores)\n", indent, secs(r.coldCPU), secs(r.coldSysCPU), secs(r.coldSimCPU),
		secs(time.Duration(gomaxprocs())*r.cold), gomaxprocs())
}

func collect[T any](rs []runResult, f func(runResult) T) []T {
	out := make([]T, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// summaryPaced prints target 4's latency line: the medians of the
// runs' paced loads.
func summaryPaced(rs []runResult, o options) {
	pr := median(collect(rs, func(r runResult) float64 { return r.pacedTokend.rps() }))
	pp50 := median(collect(rs, func(r runResult) time.Duration { return r.pacedTokend.p50 }))
	pp99 := median(collect(rs, func(r runResult) time.Duration { return r.pacedTokend.p99 }))
	pbp99 := median(collect(rs, func(r runResult) time.Duration { return r.pacedBare.p99 }))
	perrs := slicesMax(collect(rs, func(r runResult) int { return r.pacedTokend.errs }))
	fmt.Printf("socket_latency: paced %.0f req/s (%d clients): p50 %v  p99 %v  (bare p99 %v)  non-200 %d  (target p99 <= %v) %s\n",
		pr, o.clients, pp50.Round(time.Microsecond), pp99.Round(time.Microsecond), pbp99.Round(time.Microsecond), perrs, targetSockP99,
		verdict(pp99 <= targetSockP99 && perrs == 0))
}

func summary(rs []runResult, o options) {
	n := o.channels
	cold := median(collect(rs, func(r runResult) time.Duration { return r.cold }))
	signPar := median(collect(rs, func(r runResult) time.Duration { return r.signPar }))
	ratio := median(collect(rs, runResult.coldRatio))
	fmt.Printf("cold_start: %s  baseline(sign %d @%d): %s  ratio %.2f (target <= %.1f) %s\n",
		secs(cold), n, gomaxprocs(), secs(signPar), ratio, targetColdRatio, verdict(ratio <= targetColdRatio))
	if one := rs[0].signOne; one > 0 {
		fmt.Printf("cold_start_vs_serial: %s  baseline(sign %d @1): %s  ratio %.2f (for reference)\n",
			secs(cold), n, secs(one), cold.Seconds()/one.Seconds())
	}

	warm := median(collect(rs, func(r runResult) time.Duration { return r.warm }))
	issues := slicesMax(collect(rs, func(r runResult) int { return r.warmIssues }))
	rewrites := slicesMax(collect(rs, func(r runResult) int { return r.warmRewrites }))
	fmt.Printf("warm_restart: %s  (READY=1 %s, socket %s)  issue calls %d  output rewrites %d  (target <= %s, 0, 0) %s\n",
		secs(warm), secs(median(collect(rs, func(r runResult) time.Duration { return r.warmNotify }))),
		secs(median(collect(rs, func(r runResult) time.Duration { return r.warmSocket }))),
		issues, rewrites, secs(targetWarm), verdict(warm <= targetWarm && issues == 0 && rewrites == 0))

	cpu := median(collect(rs, func(r runResult) float64 { return r.idleCPU }))
	rss := median(collect(rs, func(r runResult) int64 { return r.idleRSS }))
	fmt.Printf("idle_cpu: %.3f%% of one core over %s  (target <= %.0f%%) %s\n", 100*cpu, o.idle, 100*targetIdleCPU, verdict(cpu <= targetIdleCPU))
	fmt.Printf("idle_rss: %s  %.0f bytes/channel  (target <= %s) %s\n", mib(rss), float64(rss)/float64(n), mib(targetIdleRSS), verdict(rss <= targetIdleRSS))

	tr := median(collect(rs, func(r runResult) float64 { return r.sockTokend.rps() }))
	br := median(collect(rs, func(r runResult) float64 { return r.sockBare.rps() }))
	sr := median(collect(rs, func(r runResult) float64 { return r.sockRatio() }))
	tcpu := median(collect(rs, func(r runResult) time.Duration { return r.sockTokend.cpuPerReq() }))
	bcpu := median(collect(rs, func(r runResult) time.Duration { return r.sockBare.cpuPerReq() }))
	p50 := median(collect(rs, func(r runResult) time.Duration { return r.sockTokend.p50 }))
	p99 := median(collect(rs, func(r runResult) time.Duration { return r.sockTokend.p99 }))
	bp99 := median(collect(rs, func(r runResult) time.Duration { return r.sockBare.p99 }))
	errs := slicesMax(collect(rs, func(r runResult) int { return r.sockTokend.errs }))
	fmt.Printf("socket_throughput: %.0f req/s  baseline(bare net/http, %d clients): %.0f req/s  ratio %.2f (target >= %.1f) %s\n",
		tr, o.clients, br, sr, targetSockRatio, verdict(sr >= targetSockRatio && errs == 0))
	fmt.Printf("socket_cpu: server CPU per request, saturated: tokend %.1fµs  bare %.1fµs  (for reference: where the throughput goes)\n", us(tcpu), us(bcpu))
	if o.warmup > 0 {
		fmt.Printf("socket_warmup: the first %s of each server's load, not counted: ratio %.2f  tokend %.1fµs  bare %.1fµs a request  (for reference)\n", o.warmup,
			median(collect(rs, func(r runResult) float64 { return r.warmRatio() })),
			us(median(collect(rs, func(r runResult) time.Duration { return r.warmTokend.cpuPerReq() }))),
			us(median(collect(rs, func(r runResult) time.Duration { return r.warmBare.cpuPerReq() }))))
	}
	summaryPaced(rs, o)
	fmt.Printf("rss_after_load: %s  (after every socket load; for reference)\n", mib(median(collect(rs, func(r runResult) int64 { return r.loadRSS }))))
	fmt.Printf("socket_latency_saturated: p50 %v  p99 %v  (bare p99 %v)  non-200 %d  (queueing: %d clients / throughput; for reference)\n",
		p50.Round(time.Microsecond), p99.Round(time.Microsecond), bp99.Round(time.Microsecond), errs, o.clients)

	if rs[0].storm.ran {
		maxc := slicesMax(collect(rs, func(r runResult) int { return r.storm.maxConcurrent }))
		lapses := slicesMax(collect(rs, func(r runResult) int { return r.storm.lapses }))
		rotated := slicesMin(collect(rs, func(r runResult) int { return r.storm.rotated }))
		dur := median(collect(rs, func(r runResult) time.Duration { return r.storm.duration }))
		spread := median(collect(rs, func(r runResult) time.Duration { return r.storm.issueSpread }))
		fmt.Printf("storm: %d of %d rotated in %s (all due within %s)  LINE max concurrent %d (max_in_flight %d)  lapses %d  %s\n",
			rotated, n, secs(dur), secs(spread), maxc, o.maxInFlight, lapses,
			verdict(rotated == n && maxc <= o.maxInFlight && lapses == 0 && spread <= time.Minute))
	}
}

func slicesMax(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func slicesMin(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}
