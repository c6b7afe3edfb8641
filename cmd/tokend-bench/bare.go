package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/daemon"
)

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// bareBody is the bare server's constant answer, about the size of the
// JSON token tokend serves.
var bareBody = []byte(`{"channel_id":"1000000000","name":"b00000","access_token":"` + strings.Repeat("x", 170) +
	`","token_type":"Bearer","key_id":"0123456789abcdefghijkl","issued_at":"2025-01-01T00:00:00Z","expires_at":"2025-01-31T00:00:00Z"}`)

// bareServe is the hidden -bare-socket mode: a bare net/http server with
// one handler returning a constant, on a Unix socket, as a child process
// like tokend. It sends READY=1 once listening and stops on SIGTERM.
func bareServe(path string) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(bareBody)
	}), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// profiledDaemon is the hidden -profiled-daemon mode: `tokend run` done
// in this binary (the same daemon package) under a CPU profile. Each
// SIGUSR1 closes the current profile and starts the next file.
func profiledDaemon(args []string) error {
	fs := flag.NewFlagSet("profiled-daemon", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config")
	profiles := fs.String("profiles", "", "comma-separated CPU profile files, switched on SIGUSR1")
	heap := fs.String("heap", "", "heap profile written (after a GC) on SIGUSR2")
	block := fs.String("block", "", "block and mutex profiles (FILE, FILE.mutex) written on the first SIGUSR1: where the cold start waited")
	traceOut := fs.String("trace", "", "execution trace of the window after the last CPU profile, until the next SIGUSR1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *block != "" {
		runtime.SetBlockProfileRate(10_000) // one sample per 10µs blocked, on average
		runtime.SetMutexProfileFraction(10)
	}
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	go func() {
		for range usr2 {
			if *heap == "" {
				continue
			}
			runtime.GC()
			if f, err := os.Create(*heap); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}()
	files := strings.Split(*profiles, ",")
	startProfile := func(path string) (*os.File, error) {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		return f, pprof.StartCPUProfile(f)
	}
	cur, err := startProfile(files[0])
	if err != nil {
		return err
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for i := 1; ; i++ {
			<-usr1
			pprof.StopCPUProfile()
			cur.Close()
			if i == 1 && *block != "" {
				for path, name := range map[string]string{*block: "block", *block + ".mutex": "mutex"} {
					if f, err := os.Create(path); err == nil {
						_ = pprof.Lookup(name).WriteTo(f, 0)
						f.Close()
					}
				}
				runtime.SetBlockProfileRate(0)
				runtime.SetMutexProfileFraction(0)
			}
			if i == len(files) && *traceOut != "" {
				if f, err := os.Create(*traceOut); err == nil {
					if trace.Start(f) == nil {
						<-usr1
						trace.Stop()
					}
					f.Close()
				}
			}
			if i >= len(files) {
				cur = nil
				continue
			}
			cur, _ = startProfile(files[i])
		}
	}()
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d, err := daemon.New(cfg, daemon.Options{Version: "bench-profile", ConfigPath: *cfgPath})
	if err != nil {
		return err
	}
	defer d.Close()
	err = d.Run(ctx)
	pprof.StopCPUProfile()
	return err
}

// profileRun profiles one cold start and one socket load.
func profileRun(ctx context.Context, e *env, o options, self string) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(o.profileDir)
	if err != nil {
		return err
	}
	s, err := e.newSim()
	if err != nil {
		return err
	}
	defer s.close()
	in, err := e.newInstance("profile", s.url, o.logLevel, o.maxInFlight, steadyLifetimes)
	if err != nil {
		return err
	}
	coldProf, sockProf := filepath.Join(dir, "cold.pprof"), filepath.Join(dir, "socket.pprof")
	reconProf := filepath.Join(dir, "reconcile.pprof")
	heapProf, simProf := filepath.Join(dir, "heap.pprof"), filepath.Join(dir, "sim.pprof")
	blockProf, traceOut := filepath.Join(dir, "block.pprof"), filepath.Join(dir, "paced.trace")
	// The simulator runs in this process: profile its side of the cold start.
	sf, err := os.Create(simProf)
	if err != nil {
		return err
	}
	defer sf.Close()
	restore := o.simPs()
	defer restore()
	if err := pprof.StartCPUProfile(sf); err != nil {
		return err
	}
	c, err := startChild(in.dir, in.dir+"/profile.log", self, "-profiled-daemon", "-config", in.config,
		"-profiles", coldProf+","+reconProf+","+sockProf, "-heap", heapProf, "-block", blockProf, "-trace", traceOut)
	if err != nil {
		return err
	}
	defer c.stop()
	d, err := c.waitReady(ctx, 10*time.Minute)
	pprof.StopCPUProfile()
	restore()
	if err != nil {
		return err
	}
	_ = c.cmd.Process.Signal(syscall.SIGUSR1) // cold.pprof done
	// The start-up key-ID listings follow the issues: let them finish, so
	// nothing else runs during the socket load.
	waitListings(ctx, s, in.n)
	time.Sleep(500 * time.Millisecond)
	_ = c.cmd.Process.Signal(syscall.SIGUSR1) // reconcile.pprof done: the start-up listings
	targets := tokenTargets(in.n)
	lr := load(ctx, in.socket, o.clients, o.socketFor, targets, true, 0)
	_ = c.cmd.Process.Signal(syscall.SIGUSR1) // socket.pprof done, paced.trace starts
	paced := anyLoad(ctx, in.socket, o, o.socketFor, targets, true, o.pacedRate)
	_ = c.cmd.Process.Signal(syscall.SIGUSR1) // paced.trace done
	time.Sleep(200 * time.Millisecond)
	_ = c.cmd.Process.Signal(syscall.SIGUSR2) // heap.pprof
	time.Sleep(time.Second)
	rss, _ := c.rss()
	if err := c.stop(); err != nil {
		return err
	}
	fmt.Printf("# profile: cold start under CPU profile %s; socket %.0f req/s p99 %v; paced %.0f req/s p99 %v (execution trace: go tool trace %s); rss %s after the load\n",
		secs(d), lr.rps(), lr.p99, paced.rps(), paced.p99, traceOut, mib(rss))
	if sum, err := gcSummary(traceOut); err != nil {
		fmt.Println("# paced.trace:", err)
	} else {
		fmt.Println("# paced.trace:", sum)
	}
	for _, p := range []string{coldProf, simProf, reconProf, sockProf, heapProf} {
		args := []string{"tool", "pprof", "-top", "-nodecount", "35"}
		if p == heapProf {
			args = append(args, "-sample_index=inuse_space")
		}
		out, err := exec.Command("go", append(args, p)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pprof %s: %v: %s", p, err, out)
		}
		top := strings.TrimSuffix(p, ".pprof") + ".top.txt"
		_ = os.WriteFile(top, out, 0o644)
		fmt.Printf("# %s (full list in %s)\n", p, top)
		lines := strings.Split(string(out), "\n")
		for _, l := range lines[:min(len(lines), 22)] {
			fmt.Println("#   " + l)
		}
		cum, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount", "45", p).CombinedOutput()
		if err == nil {
			_ = os.WriteFile(strings.TrimSuffix(p, ".pprof")+".cum.txt", cum, 0o644)
		}
	}
	return nil
}
