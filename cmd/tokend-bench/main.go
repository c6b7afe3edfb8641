// Command tokend-bench measures tokend at scale against the in-repo LINE
// simulator on loopback and prints one line per figure with its same-run
// baseline and target:
//
//	cold_start      empty store, N channels: exec to READY=1 (every output
//	                written), against signing N assertions in this process
//	warm_restart    N valid tokens in the store: exec to READY=1, with no
//	                issue call and no output rewritten
//	idle            CPU share and resident memory of the idle daemon
//	socket          64 keep-alive clients over the Unix socket, against a
//	                bare net/http server (a child process too)
//	storm           every channel due for rotation within one minute
//
// -outage D measures only an outage instead: LINE unreachable for D from a
// cold start, then back (what it costs, the recovery, the shutdown).
//
// tokend runs as a child process built from ./cmd/tokend (run from the
// module root: `make bench`), so its CPU time and memory are its own.
// Figures are medians over -runs runs. -profile DIR adds one cold start
// and one socket load under a CPU profile (an in-process equivalent of
// `tokend run`: the same daemon package, started by this binary).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	channels     int
	keys         int
	runs         int
	idle         time.Duration
	socketFor    time.Duration
	warmup       time.Duration
	clients      int
	pacedRate    float64
	maxInFlight  int
	logLevel     string
	infoRun      bool
	storm        bool
	profileDir   string
	tokendBin    string
	keep         bool
	outputs      string
	stormTimeout time.Duration
	stormLead    time.Duration
	coldOnly     bool
	socketOnly   bool
	outage       time.Duration
	flap         time.Duration
	failShare    float64
	stallProbe   time.Duration
	pacedClient  string // "c" or "go"
	pacedBin     string // the C generator, built by run for -paced-client c
	simProcs     int    // GOMAXPROCS of this process (the simulator) during cold starts; 0: unchanged
}

func main() {
	// Hidden child modes: the bare socket server and the profiled daemon.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-bare-socket":
			if err := bareServe(os.Args[2]); err != nil {
				fmt.Fprintln(os.Stderr, "tokend-bench bare:", err)
				os.Exit(1)
			}
			return
		case "-profiled-daemon":
			if err := profiledDaemon(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "tokend-bench profiled daemon:", err)
				os.Exit(1)
			}
			return
		}
	}
	var o options
	flag.IntVar(&o.channels, "channels", 10000, "channels to generate")
	flag.IntVar(&o.keys, "keys", 1, "distinct signing key files, channel i using key i mod -keys (each takes about 50 ms of a CPU to generate; 10000 takes minutes)")
	flag.IntVar(&o.runs, "runs", 3, "runs; figures are medians")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "idle measurement window")
	flag.DurationVar(&o.socketFor, "socket-duration", 5*time.Second, "socket load duration, for tokend and for the bare server each")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "before each server's measured socket turns, a load of this long, the same kind, not counted (printed for reference): it pays for each channel's first read and for the heap regrowing after the idle window; 0: none")
	flag.IntVar(&o.clients, "clients", 64, "concurrent socket clients")
	flag.Float64Var(&o.pacedRate, "paced-rate", 10000, "requests a second, all clients together, for the latency measurement (below saturation)")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 16, "line.max_in_flight")
	flag.StringVar(&o.logLevel, "log-level", "warn", "tokend log.level")
	flag.BoolVar(&o.infoRun, "info-run", true, "one extra cold start at log level info, to show what logging costs")
	flag.BoolVar(&o.storm, "storm", true, "run the rotation storm")
	flag.DurationVar(&o.stormTimeout, "storm-timeout", 5*time.Minute, "give up on a storm after this long")
	flag.DurationVar(&o.stormLead, "storm-lead", 10*time.Second, "in the storm, a token falls due for rotation this long after its issue")
	flag.StringVar(&o.profileDir, "profile", "", "also profile a cold start and a socket load (after the runs, also with -cold-only); CPU profiles and pprof -top go to this directory")
	flag.StringVar(&o.tokendBin, "tokend", "", "tokend binary (default: go build ./cmd/tokend into a temp dir)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp directory")
	flag.StringVar(&o.outputs, "outputs", "/dev/shm", "directory for the token files, as in the documented deployments (systemd: /run/tokend/tokens, compose: a tmpfs volume); \"\": in the temp directory, with the store")
	flag.BoolVar(&o.coldOnly, "cold-only", false, "measure only the cold start and its signing baseline, -runs times (quick work on target 1)")
	flag.BoolVar(&o.socketOnly, "socket-only", false, "measure only target 4: one cold start, then -runs rounds of alternating loads of tokend and the bare server, saturated (throughput) and at -paced-rate (latency) (quick work on target 4)")
	flag.DurationVar(&o.outage, "outage", 0, "measure only an outage: LINE closes every connection for this long from tokend's cold start, then answers; prints its cost, the recovery and the shutdown (-storm-timeout bounds the recovery)")
	flag.DurationVar(&o.flap, "flap", 0, "with -outage: LINE comes and goes during the outage, down for this long, then up for as long, and so on (a flapping network); prints how many outputs existed when the outage ended")
	flag.Float64Var(&o.failShare, "fail-share", 1, "with -outage: LINE drops only this share of the calls while it is down, spread evenly, and answers the rest (a LINE failing in part); 1: every call")
	flag.StringVar(&o.pacedClient, "paced-client", "c", "the paced loads' (target 4's latency) clients: c, one blocking C thread each, compiled with $CC (default cc) at the start; or go, goroutines in this process, which add their own scheduling to the latency")
	flag.DurationVar(&o.stallProbe, "stall-probe", 3*time.Second, "before the runs, spin a thread on every CPU for this long and print how often the machine took a CPU away for over 1 ms (a VM's host at work; it bounds target 4's p99); 0: skip")
	flag.IntVar(&o.simProcs, "sim-procs", 1, "GOMAXPROCS of this process, which serves the LINE simulator, during each cold start (the signing baselines keep every CPU): LINE's servers are not on tokend's machine, and on 2 Ps the simulator's scheduler took more of the CPUs tokend's start is timed on; 0: every CPU, as before 2026-12-06 afternoon")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "tokend-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "tokend-bench:", err)
		os.Exit(1)
	}
}

// check refuses flag values the bench cannot run with, saying which.
func (o options) check() error {
	switch {
	case o.channels < 1 || o.runs < 1 || o.clients < 1 || o.pacedRate <= 0 || o.stormLead < time.Second || o.stormLead > time.Minute:
		return errors.New("-channels, -runs, -clients and -paced-rate must be positive, -storm-lead from 1s to 1m")
	case o.keys < 1 || o.keys > o.channels:
		return errors.New("-keys must be from 1 to -channels")
	case o.pacedClient != "c" && o.pacedClient != "go":
		return errors.New(`-paced-client must be "c" or "go"`)
	case o.stallProbe < 0:
		return errors.New("-stall-probe must not be negative")
	case o.simProcs < 0:
		return errors.New("-sim-procs must not be negative")
	case o.outage < 0 || o.flap < 0:
		return errors.New("-outage and -flap must not be negative")
	case !(o.failShare > 0 && o.failShare <= 1):
		return errors.New("-fail-share must be over 0 and at most 1")
	case o.outage == 0 && (o.flap > 0 || o.failShare < 1):
		return errors.New("-flap and -fail-share need -outage")
	}
	return nil
}

// pacedLoads reports whether the run makes paced loads (target 4's
// latency): every mode but the outage and a cold-only run without profiles.
func (o options) pacedLoads() bool {
	return o.outage == 0 && (!o.coldOnly || o.profileDir != "")
}

func run(ctx context.Context, o options) error {
	// Short paths: the sockets must fit in sun_path.
	tmp, err := os.MkdirTemp("", "tkb")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(tmp)
	} else {
		fmt.Println("# temp directory:", tmp)
	}
	if o.tokendBin == "" {
		o.tokendBin = filepath.Join(tmp, "tokend")
		if err := goBuild(o.tokendBin); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	keysAt := time.Now()
	env, err := newEnv(tmp, o.channels, o.keys)
	if err != nil {
		return err
	}
	keysTook := time.Since(keysAt)
	if o.outputs != "" {
		if env.outRoot, err = os.MkdirTemp(o.outputs, "tkb-out"); err != nil {
			return fmt.Errorf("-outputs: %w (-outputs '' keeps the token files with the store)", err)
		}
		if !o.keep {
			defer os.RemoveAll(env.outRoot)
		}
	}
	printMachine(o)
	if o.pacedClient == "c" && o.pacedLoads() {
		if o.pacedBin, err = buildPacedC(tmp); err != nil {
			return err
		}
	}
	outs := filepath.Join(tmp, "...")
	if env.outRoot != "" {
		outs = env.outRoot
	}
	fmt.Printf("# files: store and sockets in %s (%s), token files in %s (%s)\n", tmp, fsType(tmp), outs, fsType(filepath.Dir(outs)))
	fmt.Printf("# keys: %d distinct key files for %d channels (generated in %s)\n", o.keys, o.channels, secs(keysTook))

	if o.coldOnly {
		if err := coldRuns(ctx, env, o); err != nil || o.profileDir == "" {
			return err
		}
		return profileRun(ctx, env, o, self)
	}
	if o.socketOnly {
		return socketRuns(ctx, env, o, self)
	}
	if o.outage > 0 {
		return outageRun(ctx, env, o)
	}
	var results []runResult
	for i := range o.runs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Printf("# run %d/%d\n", i+1, o.runs)
		r, err := oneRun(ctx, env, o, self, i)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		r.print("  ")
		results = append(results, r)
	}
	if o.infoRun {
		fmt.Println("# one cold start at log level info (for comparison with " + o.logLevel + ")")
		d, lines, err := coldOnly(ctx, env, o, "info")
		if err != nil {
			return err
		}
		fmt.Printf("  cold_start@info: %s (%d log lines)\n", secs(d), lines)
	}
	fmt.Printf("# medians of %d runs, %d channels\n", o.runs, o.channels)
	summary(results, o)
	if o.profileDir != "" {
		if err := profileRun(ctx, env, o, self); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

func printMachine(o options) {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	fmt.Printf("# machine: %d cores (GOMAXPROCS %d), %s, %s %s/%s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	sc, now := callCosts()
	fmt.Printf("# machine: a system call costs %.2f µs, a clock read %.0f ns (the medians of 5 rounds of getppid(2) and time.Now)\n",
		us(sc), float64(now))
	if o.stallProbe > 0 {
		fmt.Println(stallLine(probeStalls(o.stallProbe)))
	}
	fmt.Printf("# command: tokend-bench %s\n", strings.Join(os.Args[1:], " "))
	sim := "every CPU"
	if o.simProcs > 0 {
		sim = fmt.Sprintf("GOMAXPROCS %d", o.simProcs)
	}
	fmt.Printf("# config: %d channels, one raw output each, max_in_flight %d, log level %s, %d socket clients (paced: %s client), simulator on %s in cold starts\n",
		o.channels, o.maxInFlight, o.logLevel, o.clients, map[string]string{"c": "C", "go": "Go"}[o.pacedClient], sim)
}

// callCosts measures what this machine charges for a system call that
// does nothing and for a clock read. Signing's cost, the baselines'
// measure, is arithmetic; most of tokend's other work is system calls and
// the thread wake-ups around them, so how the two compare moves targets 1
// and 4 from one kind of machine to another (README, Performance).
func callCosts() (sys, clock time.Duration) {
	const n = 20000
	var scs, nows []time.Duration
	for range 5 {
		start := time.Now()
		for range n {
			syscall.Getppid() // the kernel answers it without work
		}
		scs = append(scs, time.Since(start)/n)
		start = time.Now()
		for range n {
			_ = time.Now()
		}
		nows = append(nows, time.Since(start)/n)
	}
	return median(scs), median(nows)
}

func median[T int64 | float64 | time.Duration | int](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
