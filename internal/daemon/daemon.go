// Package daemon assembles tokend from its parts (config, keys, store, LINE
// client, rotator, socket, metrics, systemd notifications) and runs it: as
// the long-running service, or as one pass for cron.
package daemon

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/hooks"
	"github.com/tokend/tokend/internal/metrics"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/rotator"
	"github.com/tokend/tokend/internal/socket"
	"github.com/tokend/tokend/internal/store"
)

// SetupError is a problem with configuration or the environment found before
// the daemon starts (bad config, unreadable key, state_dir in use). The
// command line exits 2 for it.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

func setupErr(err error) error {
	if err == nil {
		return nil
	}
	return &SetupError{Err: err}
}

// Options are what the command line passes in besides the config.
type Options struct {
	Version    string
	Logger     *zap.Logger      // nil: built from the config's log section
	Level      *zap.AtomicLevel // with Logger: the level a reload may change
	Clock      clockwork.Clock  // nil: real clock
	HTTPClient *http.Client     // nil: oauth's default
	// Notify sends a systemd notification; nil: sd_notify to $NOTIFY_SOCKET.
	Notify func(state string)
	// Reload delivers reload requests (SIGHUP); nil: never reloads.
	Reload <-chan struct{}
	// ConfigPath is reloaded on each Reload signal.
	ConfigPath string
	Retry      rotator.Retry

	// selfUID is the uid socket.allowed_uids always lets in (tests: -1,
	// none); zero value: os.Getuid.
	selfUID func() int
}

// allowedUIDs is socket.allowed_uids as the socket enforces it: a list that
// is set always lets in tokend's own uid too. Its health checks (a
// container's HEALTHCHECK, a pod's probes: `tokend status`) run as that
// user, who can read the store and the outputs anyway.
func (d *Daemon) allowedUIDs(cfg *config.Config) []int {
	uids := cfg.Socket.AllowedUIDs
	self := os.Getuid()
	if d.opts.selfUID != nil {
		self = d.opts.selfUID()
	}
	if len(uids) == 0 || self < 0 || slices.Contains(uids, self) {
		return uids
	}
	return append(slices.Clone(uids), self)
}

// Daemon is a configured tokend ready to run.
type Daemon struct {
	cfg     *config.Config
	opts    Options
	log     *zap.Logger
	level   *zap.AtomicLevel
	store   *store.Store
	client  *oauth.Client
	metrics *metrics.Metrics
	rot     *rotator.Rotator
	ln      net.Listener    // the socket; nil without socket.path (set by Run)
	sock    *socket.Handler // its handler (set by Run)

	responsive func() // tests: stands in for rot.Responsive in the watchdog

	// started: READY=1 for the start has gone out. Until then a reload
	// tells systemd nothing, so that its READY=1 does not end the start
	// before every channel holds a token.
	started atomic.Bool
}

// NewLogger builds the zap logger described by the config's log section.
//
// It samples as zap's production logger does: of the lines with the same
// message and level, the first 100 in each second are written, then every
// 100th; m counts the others (tokend_log_lines_dropped_total). Only a
// flood reaches that: at 10,000 channels with LINE unreachable, each
// failed attempt's warning came 3,700 a second in the first 30 s, which
// journald's default rate limit (10,000 messages in 30 s) would have cut
// short anyway, and with them whatever else tokend logged meanwhile.
func NewLogger(l config.Log, m *metrics.Metrics) (*zap.Logger, *zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(l.Level)
	if err != nil {
		return nil, nil, fmt.Errorf("log.level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = level
	zc.Sampling = &zap.SamplingConfig{
		Initial:    100,
		Thereafter: 100,
		Hook: func(e zapcore.Entry, d zapcore.SamplingDecision) {
			if d&zapcore.LogDropped != 0 {
				m.LogDropped(e.Level.String())
			}
		},
	}
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.EncoderConfig.TimeKey = "time"
	zc.DisableStacktrace = true
	if l.Format == "console" {
		zc.Encoding = "console"
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	log, err := zc.Build()
	if err != nil {
		return nil, nil, err
	}
	return log, &level, nil
}

// New checks everything the daemon needs (keys, state directory, LINE base
// URL) and opens the store. Problems come back as *SetupError.
func New(cfg *config.Config, o Options) (*Daemon, error) {
	d := &Daemon{cfg: cfg, opts: o, log: o.Logger, level: o.Level, metrics: metrics.New()}
	steadyGC()
	if d.log == nil {
		log, level, err := NewLogger(cfg.Log, d.metrics)
		if err != nil {
			return nil, setupErr(err)
		}
		d.log, d.level = log, level
	}
	if o.Clock == nil {
		d.opts.Clock = clockwork.NewRealClock()
	}
	if o.Notify == nil {
		d.opts.Notify = func(state string) { _, _ = sddaemon.SdNotify(false, state) }
	}
	channels, err := Channels(cfg)
	if err != nil {
		return nil, setupErr(err)
	}
	client, err := oauth.NewClient(oauth.Options{
		BaseURL:    cfg.LINE.BaseURL,
		HTTPClient: o.HTTPClient,
		Timeout:    cfg.LINE.Timeout,
		UserAgent:  "tokend/" + o.Version,
		// One kept-alive connection per call LINE may see at once.
		MaxIdleConns: cfg.LINE.MaxInFlight,
	})
	if err != nil {
		return nil, setupErr(fmt.Errorf("line.base_url: %w", err))
	}
	d.client = client
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		return nil, setupErr(fmt.Errorf("state_dir: %w", err))
	}
	if st.FoundEmpty() {
		d.log.Warn("the store file was empty (0 bytes) and is now a new store: every channel gets a new token, and tokens issued before are not tracked (the first reconcile reports them as orphans); if an earlier tokend stopped during its first start, nothing was lost",
			zap.String("path", filepath.Join(cfg.StateDir, store.FileName)))
	}
	d.store = st
	d.removeStale()
	d.rot, err = rotator.New(channels, rotator.Options{
		LINE:        client,
		Store:       st,
		Clock:       d.opts.Clock,
		Logger:      d.log.Named("rotator"),
		Metrics:     d.metrics,
		MaxInFlight: cfg.LINE.MaxInFlight,
		Retry:       o.Retry,
		StopTimeout: cfg.LINE.Timeout + 5*time.Second,
		Burst:       burst,
	})
	if err != nil {
		st.Close()
		return nil, setupErr(err)
	}
	return d, nil
}

// burst is the rotator's Burst: thousands of steps at once (a start, a
// reload, a rotation storm).
//
// While it lasts, GOMAXPROCS is half as much again as the default (at
// least one more), unless the operator set it. The steps' fsyncs, creates
// and renames block in the kernel, each holding one of Go's Ps until the
// system monitor hands it on; with as many Ps as CPUs the CPUs then idled
// while signatures waited to run. A cold start of 10,000 channels on 2
// CPUs took 17.4-17.9 s with 2 Ps and 13.1-13.2 s with 3 or 4 (tokend-bench,
// one run each). Later, with the store's commits batched, 3 Ps looked
// better than 4 (tokend's CPU for the cold start: 13.5-13.7 s with 3,
// 14.1-14.6 s with 4; tokend-bench -cold-only, not alternated, and partly
// with stray processes on the machine). With signatures on one worker per
// CPU, 3 and 4 were alike (ratios 1.43, 1.44, 1.61 with 3 and 1.46, 1.39,
// 1.46 with 4, alternating); since 2026-12-06 they run on one worker per P
// (the rotator's signPool), so the third P signs too. Outside bursts the
// default stays: more Ps than CPUs let the GC's dedicated mark worker hold
// a CPU while socket requests wait, which raised the paced p99.
//
// While it lasts the collector also runs at Go's default GOGC (100), not
// tokend's steady 200 (see steadyGC): the burst's garbage is interleaved
// with the channel state it builds, and a bigger heap there leaves more
// partly used spans behind it for good.
//
// After it the GOMAXPROCS default is restored, and memory is returned to
// the OS: each of the burst's steps held a goroutine stack while it
// waited for a LINE slot (a start's few hundred workers; a storm's due
// channels, one job each), and without a GC while idle the resident
// memory would stay at the burst's peak.
func burst(on bool) {
	bursts.Lock()
	defer bursts.Unlock()
	if on {
		bursts.n++
	} else {
		bursts.n--
	}
	_, procsSet := os.LookupEnv("GOMAXPROCS")
	switch {
	case on && bursts.n == 1:
		if !procsSet {
			runtime.GOMAXPROCS(burstProcs(runtime.GOMAXPROCS(0)))
		}
		setGCPercent(burstGCPercent)
	case !on && bursts.n == 0:
		if !procsSet {
			runtime.SetDefaultGOMAXPROCS()
		}
		setGCPercent(steadyGCPercent)
	}
	if !on {
		go debug.FreeOSMemory()
	}
}

// burstProcs is GOMAXPROCS during a burst, for a default of n.
func burstProcs(n int) int { return n + max(1, n/2) }

// bursts counts the bursts under way in this process (tests run several
// daemons in one).
var bursts struct {
	sync.Mutex
	n int
}

// The collector's GOGC outside and during bursts, unless the operator set
// GOGC.
//
// Outside bursts tokend's heap is mostly long-lived channel state (about
// 40 MB at 10,000 channels; 50 MB when this was measured), and its garbage is the socket's, about 2.2 KB per
// request in net/http. At Go's default of 100 every 50 MB of requests
// marks the whole state again; while it is marked the collector takes the
// CPUs that requests wait for. At 200 a mark comes half as often. With
// 10,000 channels, 64 clients at 10,000 requests a second (tokend-bench
// -runs 1 -socket-duration 10s, alternating GOGC=100 in the environment
// with this): p99 1.15 and 1.29 ms at 100, 604 and 501 µs at 200. The
// price is heap: up to three times the live state between collections
// instead of twice (resident after the loads: 157-160 MiB at 100, 209 MiB
// at 200).
const (
	steadyGCPercent = 200
	burstGCPercent  = 100
)

// steadyGC sets the steady GOGC unless a burst is under way; New calls it.
func steadyGC() {
	bursts.Lock()
	defer bursts.Unlock()
	if bursts.n == 0 {
		setGCPercent(steadyGCPercent)
	}
}

// setGCPercent sets GOGC to p unless the environment sets it.
func setGCPercent(p int) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(p)
	}
}

// removeStale removes the temporary files a killed tokend left next to its
// outputs. Holding the store means no other tokend writes them now.
func (d *Daemon) removeStale() { d.removeStaleAt(outputPaths(d.cfg, nil)) }

// outputPaths lists cfg's output paths, but those in running (nil: none).
func outputPaths(cfg, running *config.Config) []string {
	skip := map[string]bool{}
	if running != nil {
		for _, p := range outputPaths(running, nil) {
			skip[p] = true
		}
	}
	var paths []string
	for _, ch := range cfg.Channels {
		for _, o := range ch.Outputs {
			if !skip[o.Path] {
				paths = append(paths, o.Path)
			}
		}
	}
	return paths
}

// removeStaleAt is removeStale for the given output paths, which no write
// may be under way to.
func (d *Daemon) removeStaleAt(paths []string) {
	removed, err := output.RemoveStaleAll(paths)
	for _, p := range paths {
		if n := removed[p]; n > 0 {
			d.log.Info("removed temporary files a crash left beside an output", zap.String("path", p), zap.Int("files", n))
			removed[p] = 0 // an output listed twice is reported once
		}
	}
	if err != nil {
		d.log.Warn("cannot remove a temporary file a crash left beside an output", zap.Error(err))
	}
}

// Channels turns the config's channels into the rotator's, loading every
// private key; all problems are reported together, in config order. A key
// file that several channels name is read and parsed once, and they share
// the key. Parsing checks the RSA key (about 0.2 ms), so distinct files are
// parsed on every CPU: 10,000 channels with a key each must not hold a
// start for seconds on one core.
func Channels(cfg *config.Config) ([]rotator.Channel, error) {
	keys := loadKeys(cfg.Channels)
	// Sized once: at 10,000 channels append's doublings copied 4 MB of
	// channels, each copy into freshly faulted pages, on the start's path.
	out := make([]rotator.Channel, 0, len(cfg.Channels))
	var errs []error
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		rc := rotator.Channel{
			ID: ch.ID, Name: ch.Name, Kind: string(ch.Kind), KeyID: ch.KeyID,
			Secret:   string(ch.ChannelSecret),
			TokenTTL: ch.TokenTTL, RotateBefore: ch.RotateBefore, RevokeAfter: ch.RevokeAfter,
			ReconcileEvery: ch.ReconcileEvery, Jitter: ch.Jitter,
		}
		if ch.PrivateKeyFile != "" {
			k := keys[ch.PrivateKeyFile]
			if k.err != nil {
				errs = append(errs, fmt.Errorf("channels[%d].private_key_file: %w", i, k.err))
			}
			rc.Key = k.key
		}
		if len(ch.Outputs) > 0 {
			rc.Outputs = make([]rotator.Output, 0, len(ch.Outputs))
		}
		for _, o := range ch.Outputs {
			rc.Outputs = append(rc.Outputs, rotator.Output{Path: o.Path, Format: o.Format, Mode: o.Mode})
		}
		for _, h := range ch.OnRotate {
			rc.Hooks = append(rc.Hooks, hooks.Spec{Exec: h.Exec, Signal: h.Signal, PIDFile: h.PIDFile, Timeout: h.Timeout})
		}
		out = append(out, rc)
	}
	return out, errors.Join(errs...)
}

type loadedKey struct {
	key *rsa.PrivateKey
	err error
}

// The key loaders; tests count their calls.
var (
	loadPrivateKey = oauth.LoadPrivateKey
	readPrivateKey = oauth.ReadPrivateKey
)

// loadKeys loads each distinct private_key_file of chs once, on up to
// GOMAXPROCS goroutines. A key that signs for one channel only is kept
// without its CRT values (oauth.ReadPrivateKey): it signs once per
// reconcile or rotation, so deriving them at each signature (about
// 0.15 ms) is a small price for 2.7 KB less a key (27 MB for 10,000
// channels with a key each) and for no derivation on the start's path. A
// shared key keeps them: at a cold start it signs for every channel naming
// it.
func loadKeys(chs []config.Channel) map[string]*loadedKey {
	users := map[string]int{}
	for _, ch := range chs {
		if ch.PrivateKeyFile != "" {
			users[ch.PrivateKeyFile]++
		}
	}
	keys := make(map[string]*loadedKey, len(users))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for path, n := range users {
		k := &loadedKey{}
		keys[path] = k
		load := readPrivateKey
		if n > 1 {
			load = loadPrivateKey
		}
		g.Go(func() error {
			k.key, k.err = load(path)
			return nil
		})
	}
	_ = g.Wait() // every result is in keys
	return keys
}

// Rotator returns the daemon's rotator (for tests and the socket).
func (d *Daemon) Rotator() *rotator.Rotator { return d.rot }

// Logger returns the daemon's logger.
func (d *Daemon) Logger() *zap.Logger { return d.log }

// Close releases the store.
func (d *Daemon) Close() error { return d.store.Close() }

// Once makes one pass (tokend run -once).
func (d *Daemon) Once(ctx context.Context) error {
	return d.rot.RunOnce(ctx)
}

// Run is the daemon: rotator, socket, metrics listener, systemd
// notifications and reloads, until ctx is done (then nil) or a part fails.
func (d *Daemon) Run(ctx context.Context) error {
	var ln net.Listener
	if d.cfg.Socket.Path != "" {
		var err error
		ln, err = socket.Listen(d.cfg.Socket.Path, d.cfg.Socket.Mode)
		if err != nil {
			return setupErr(fmt.Errorf("socket.path: %w", err))
		}
	}
	var mln net.Listener
	if d.cfg.MetricsListen != "" {
		var err error
		mln, err = net.Listen("tcp", d.cfg.MetricsListen)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			return setupErr(fmt.Errorf("metrics_listen: %w", err))
		}
	}
	log := d.log.Named("daemon")
	// Before any part runs: a reload replaces d.cfg.
	log.Info("tokend started", zap.String("version", d.opts.Version), zap.Int("channels", len(d.cfg.Channels)),
		zap.String("state_dir", d.cfg.StateDir), zap.String("socket", d.cfg.Socket.Path))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.rot.Run(ctx) })
	if ln != nil {
		d.ln = ln
		d.sock = socket.NewHandler(d.rot, socket.HandlerOptions{
			Metrics: d.metrics.Handler(), AllowedUIDs: d.allowedUIDs(d.cfg), Logger: d.log.Named("socket"),
		})
		g.Go(func() error { return socket.Serve(ctx, ln, d.sock) })
	}
	if mln != nil {
		g.Go(func() error { return socket.Serve(ctx, mln, socket.NewMetricsHandler(d.rot, d.metrics.Handler())) })
	}
	g.Go(func() error {
		select {
		case <-d.rot.ReadyC():
			log.Info("every channel holds a valid token; ready")
			d.opts.Notify(sddaemon.SdNotifyReady)
			d.started.Store(true)
		case <-ctx.Done():
		}
		return nil
	})
	if wd, err := sddaemon.SdWatchdogEnabled(false); err == nil && wd > 0 {
		g.Go(func() error { return d.watchdog(ctx, wd/2) })
	}
	g.Go(func() error { return d.reloads(ctx) })
	g.Go(func() error {
		<-ctx.Done() // a signal, or a part failed: tell systemd at once
		d.opts.Notify(sddaemon.SdNotifyStopping)
		return nil
	})
	err := g.Wait()
	log.Info("tokend stopped")
	return err
}

// watchdog pings systemd every `every` while the rotator answers. A probe
// (Rotator.Responsive) runs between two pings; one that has not come back
// by the next tick withholds the ping, so systemd kills and restarts a
// tokend whose scheduling is stuck (WatchdogSec) rather than leave it
// serving tokens that nothing will rotate. At most one probe is under way.
func (d *Daemon) watchdog(ctx context.Context, every time.Duration) error {
	log := d.log.Named("daemon")
	t := time.NewTicker(every)
	defer t.Stop()
	probe := d.probe()
	var since time.Time // when the probe under way missed its first tick
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		select {
		case <-probe:
			if !since.IsZero() {
				log.Warn("the rotator answers again; watchdog pings resume", zap.Duration("stuck_for", time.Since(since)))
				since = time.Time{}
			}
			d.opts.Notify(sddaemon.SdNotifyWatchdog)
			probe = d.probe()
		default:
			if since.IsZero() {
				since = time.Now()
				log.Error("the rotator has not answered for a watchdog interval: its lock or its scheduler is stuck; withholding systemd's watchdog ping, so that systemd (WatchdogSec) restarts tokend",
					zap.Duration("interval", every))
			}
		}
	}
}

// probe runs one Rotator.Responsive (or the test's stand-in) and closes the
// returned channel when it comes back.
func (d *Daemon) probe() <-chan struct{} {
	done := make(chan struct{})
	responsive := d.responsive
	if responsive == nil {
		responsive = d.rot.Responsive
	}
	go func() {
		responsive()
		close(done)
	}()
	return done
}

// reloads applies the config file again on every reload request. A config
// that does not load is rejected and the running one stays in force.
func (d *Daemon) reloads(ctx context.Context) error {
	log := d.log.Named("daemon")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.opts.Reload:
		}
		started := d.started.Load()
		if started {
			d.opts.Notify(sddaemon.SdNotifyReloading + "\n" + sddaemon.SdNotifyMonotonicUsec())
		}
		if err := d.reload(); err != nil {
			log.Error("reload rejected; the running configuration stays in force", zap.String("config", d.opts.ConfigPath), zap.Error(err))
		} else {
			log.Info("configuration reloaded", zap.Int("channels", len(d.cfg.Channels)))
		}
		if started {
			d.opts.Notify(sddaemon.SdNotifyReady)
		}
	}
}

func (d *Daemon) reload() error {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	if err := d.outputsSpareRunningFiles(cfg); err != nil {
		return err
	}
	channels, err := Channels(cfg)
	if err != nil {
		return err
	}
	// A new output's directory may hold what a crash left beside it from
	// an earlier config that named it: removed before any write there,
	// as at start. Outputs the running config names are being written.
	d.removeStaleAt(outputPaths(cfg, d.cfg))
	if err := d.rot.Reload(channels); err != nil {
		return err
	}
	d.cfg = d.apply(cfg)
	return nil
}

// outputsSpareRunningFiles refuses a reloaded config whose output would be
// the running store or socket. config.Load checks outputs against the new
// file's state_dir and socket.path, but those change only on restart: a
// reload that moves state_dir and names the old store as an output would
// otherwise have it overwritten under the running daemon, every record
// lost.
func (d *Daemon) outputsSpareRunningFiles(cfg *config.Config) error {
	running := map[string]string{}
	if d.cfg.StateDir != cfg.StateDir {
		running[filepath.Join(d.cfg.StateDir, store.FileName)] = "is tokend's running store (" + store.FileName + " in state_dir " +
			d.cfg.StateDir + ", in force until a restart); the output would overwrite every token record: choose another path"
	}
	if d.cfg.Socket.Path != "" && d.cfg.Socket.Path != cfg.Socket.Path {
		running[d.cfg.Socket.Path] = "is tokend's running socket (socket.path " + d.cfg.Socket.Path +
			", in force until a restart); the output would replace it: choose another path"
	}
	var errs []error
	for i, ch := range cfg.Channels {
		for j, o := range ch.Outputs {
			if why, ok := running[o.Path]; ok {
				errs = append(errs, fmt.Errorf("channels[%d].outputs[%d].path %q: %s", i, j, o.Path, why))
			}
		}
	}
	return errors.Join(errs...)
}

// apply puts a reloaded config's process-wide settings in force, after
// its channels: log.level, socket.allowed_uids (from the next request on)
// and socket.mode (from the next connect; connections already open stay
// open). The settings that take a restart keep their running values, each
// changed one with a warning. It returns the config now in force, which the
// next reload compares with: a setting changed back to its running value
// is no change, and one still waiting for a restart is warned about again.
func (d *Daemon) apply(cfg *config.Config) *config.Config {
	log := d.log.Named("daemon")
	run := *cfg // what is in force after this reload
	for _, ch := range []struct {
		key      string
		old, new any
		keep     func()
	}{
		{"state_dir", d.cfg.StateDir, cfg.StateDir, func() { run.StateDir = d.cfg.StateDir }},
		{"socket.path", d.cfg.Socket.Path, cfg.Socket.Path, func() { run.Socket.Path = d.cfg.Socket.Path }},
		{"metrics_listen", d.cfg.MetricsListen, cfg.MetricsListen, func() { run.MetricsListen = d.cfg.MetricsListen }},
		{"line.base_url", d.cfg.LINE.BaseURL, cfg.LINE.BaseURL, func() { run.LINE.BaseURL = d.cfg.LINE.BaseURL }},
		{"line.timeout", d.cfg.LINE.Timeout, cfg.LINE.Timeout, func() { run.LINE.Timeout = d.cfg.LINE.Timeout }},
		{"line.max_in_flight", d.cfg.LINE.MaxInFlight, cfg.LINE.MaxInFlight, func() { run.LINE.MaxInFlight = d.cfg.LINE.MaxInFlight }},
		{"log.format", d.cfg.Log.Format, cfg.Log.Format, func() { run.Log.Format = d.cfg.Log.Format }},
	} {
		if ch.old != ch.new {
			log.Warn("setting changes only on restart", zap.String("key", ch.key))
			ch.keep()
		}
	}
	if d.level != nil {
		if lvl, err := zapcore.ParseLevel(cfg.Log.Level); err == nil {
			d.level.SetLevel(lvl)
		}
	}
	if d.sock != nil && !slices.Equal(d.cfg.Socket.AllowedUIDs, cfg.Socket.AllowedUIDs) {
		d.sock.SetAllowedUIDs(d.allowedUIDs(cfg))
		log.Info("socket.allowed_uids applied", zap.Ints("allowed_uids", cfg.Socket.AllowedUIDs))
	}
	if d.ln != nil && d.cfg.Socket.Mode != cfg.Socket.Mode {
		if err := socket.SetMode(d.ln, cfg.Socket.Mode); err != nil {
			log.Error("socket.mode not applied; the socket keeps its mode", zap.Stringer("mode", config.FileMode(d.cfg.Socket.Mode)), zap.Error(err))
			run.Socket.Mode = d.cfg.Socket.Mode
		} else {
			log.Info("socket.mode applied", zap.Stringer("mode", config.FileMode(cfg.Socket.Mode)))
		}
	}
	return &run
}
