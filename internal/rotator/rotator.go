package rotator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/tokend/tokend/internal/hooks"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/store"
)

// LINE is what the rotator needs from LINE's token API; *oauth.Client has it.
type LINE interface {
	IssueChannelAccessTokenV2_1(ctx context.Context, assertion string) (*oauth.Token, error)
	GetChannelAccessTokenKeyIDsV2_1(ctx context.Context, assertion string) ([]string, error)
	RevokeChannelAccessTokenV2_1(ctx context.Context, channelID, channelSecret, accessToken string) error
	IssueAccessToken(ctx context.Context, channelID, channelSecret string) (*oauth.Token, error)
	RevokeAccessToken(ctx context.Context, accessToken string) error
	VerifyAccessToken(ctx context.Context, accessToken string) (*oauth.TokenInfo, error)
	IssueStatelessTokenByAssertion(ctx context.Context, assertion string) (*oauth.Token, error)
	IssueStatelessTokenBySecret(ctx context.Context, channelID, channelSecret string) (*oauth.Token, error)
}

// Store keeps the token records; *store.Store and *store.Memory have it.
// Put must be durable when it returns: the rotator publishes a token only
// after its record is committed.
type Store interface {
	Put(recs ...store.Record) error
	Delete(channelID string, ids ...string) error
	All() (map[string][]store.Record, error)
	Channel(channelID string) ([]store.Record, error)
}

// Observer is told what the rotator does; *metrics.Metrics is one.
type Observer interface {
	SetToken(channel string, expiresAt, nextRotation time.Time)
	Rotation(channel, result string)
	Revocation(channel, result string)
	LINERequest(endpoint, result string, d time.Duration)
	SetOrphans(channel string, n int)
	OutputError(channel string)
	SetReady(ready bool)
	ForgetChannel(channel string)
	HookRun(result string) // "ok", "failed", "killed" (at a stop)
}

// HookRunner runs a channel's on_rotate hooks; hooks.Run is one.
type HookRunner func(ctx context.Context, specs []hooks.Spec, ev hooks.Event, log *zap.Logger) error

// Options configures a Rotator. LINE and Store are required.
type Options struct {
	LINE    LINE
	Store   Store
	Clock   clockwork.Clock // nil: the real clock
	Logger  *zap.Logger     // nil: no logs
	Metrics Observer        // nil: no metrics
	Hooks   HookRunner      // nil: hooks.Run

	MaxInFlight       int           // concurrent LINE calls, all channels together; 0: 16
	Retry             Retry         // zero: DefaultRetry
	AssertionLifetime time.Duration // 0: oauth's default
	// StopTimeout bounds how long Run and RunOnce wait, once their context
	// is done, for steps in flight (a LINE call it already made is allowed
	// to finish, so its token is committed rather than lost) and for hooks
	// still running (then killed). 0: 15s.
	StopTimeout time.Duration
	Rand        func() float64 // [0,1) for retry jitter; nil: math/rand/v2

	// Burst, if set, is called with true when a burst begins (BurstSteps
	// or more steps in progress at once: a start, a reload, a rotation
	// storm) and with false when its last step has finished. Calls
	// alternate, one at a time, from step goroutines: Burst must be quick.
	// The daemon adds Ps for the burst and returns its memory to the OS
	// after it. BurstSteps 0: 256.
	Burst      func(on bool)
	BurstSteps int

	// MaxHooksInFlight bounds how many channels' hooks run at once; the
	// others wait their turn (each hook's timeout starts when it runs).
	// A start or a rotation storm makes thousands of channels' hooks due
	// together: unbounded, that many exec hooks would be that many
	// processes at once. 0: DefaultMaxHooksInFlight.
	MaxHooksInFlight int
}

// DefaultMaxHooksInFlight is Options.MaxHooksInFlight's default.
const DefaultMaxHooksInFlight = 32

// Rotator keeps every configured channel's token valid. Create it with New,
// then call Run (the daemon) or RunOnce (one pass).
type Rotator struct {
	o     Options
	log   *zap.Logger
	clock clockwork.Clock
	gate  *gate
	signs *signPool

	mu        sync.Mutex // guards chans, sched and started
	chans     map[string]*channel
	sched     gocron.Scheduler
	reloading sync.Mutex // serialises Reload
	// steps is held shared by each step (step, firstToken) for as long as
	// it holds its channel, and by Reload alone while it changes channels:
	// a reload waits for the steps under way, holding neither r.mu nor a
	// channel, and no new step starts meanwhile, so it cannot be put off
	// for good by a storm of steps that keep some channel busy.
	steps   sync.RWMutex
	runCtx  atomic.Pointer[context.Context] // Run's; read by steps without mu
	started bool

	// lookup maps channel IDs and names to channels and their read
	// slots (read.go); replaced whole on reload so token reads never take
	// a lock.
	lookup atomic.Pointer[map[string]readEntry]

	readyCount atomic.Int64
	total      atomic.Int64
	readyOnce  sync.Once
	readyC     chan struct{}

	// lineDown is set when a LINE call fails because LINE could not be
	// reached, cleared when one goes through again and wakes the channels
	// waiting out such failures (lineBack); lastWake is that wake's time
	// (UnixNano).
	lineDown atomic.Bool
	lastWake atomic.Int64

	running atomic.Int64 // steps in progress (bursts; tests waiting on a fake clock)
	burstMu sync.Mutex   // serialises setBurst
	burst   bool         // Burst(true) was the last call
	hooksWG sync.WaitGroup

	// hookCtx is every hook's context; killHooks ends it StopTimeout after
	// a stop (killHooksAfterStop), so a stop waits for a hook no longer than for a
	// LINE call instead of up to the hook's own timeout. hookStop ends at
	// the stop itself: hooks still waiting for a slot then never start.
	hookCtx   context.Context
	killHooks context.CancelFunc
	hookStop  context.Context
	stopHooks context.CancelFunc
	hookSlots chan struct{} // a token per channel running its hooks
}

// New checks the channels and returns a Rotator for them.
func New(channels []Channel, o Options) (*Rotator, error) {
	if o.LINE == nil || o.Store == nil {
		return nil, errors.New("rotator: LINE client and store are required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = nopObserver{}
	}
	if o.Hooks == nil {
		o.Hooks = hooks.Run
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 16
	}
	if o.Retry == (Retry{}) {
		o.Retry = DefaultRetry
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 15 * time.Second
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.MaxHooksInFlight <= 0 {
		o.MaxHooksInFlight = DefaultMaxHooksInFlight
	}
	r := &Rotator{
		o:      o,
		log:    o.Logger,
		clock:  o.Clock,
		gate:   newGate(o.MaxInFlight),
		signs:  newSignPool(0), // a worker per P, bursts' extra Ps included
		chans:  make(map[string]*channel, len(channels)),
		readyC: make(chan struct{}),
	}
	r.hookCtx, r.killHooks = context.WithCancel(context.Background())
	r.hookStop, r.stopHooks = context.WithCancel(context.Background())
	r.hookSlots = make(chan struct{}, o.MaxHooksInFlight)
	slots := make([]atomic.Pointer[served], len(channels)) // side by side (read.go)
	for i, ch := range channels {
		c, err := r.newChannel(ch)
		if err != nil {
			return nil, err
		}
		c.read = &slots[i]
		if _, dup := r.chans[ch.ID]; dup {
			return nil, fmt.Errorf("rotator: channel %s configured twice", ch.ID)
		}
		r.chans[ch.ID] = c
	}
	r.total.Store(int64(len(r.chans)))
	r.rebuildLookup()
	return r, nil
}

func (r *Rotator) newChannel(ch Channel) (*channel, error) {
	c := &channel{cfg: ch, read: new(atomic.Pointer[served])}
	if ch.Key != nil {
		c.signer = &oauth.Signer{ChannelID: ch.ID, KeyID: ch.KeyID, Key: ch.Key, Lifetime: r.o.AssertionLifetime}
	}
	switch ch.Kind {
	case KindV21:
		if c.signer == nil {
			return nil, fmt.Errorf("rotator: channel %s: kind v2.1 needs a signing key", ch.Label())
		}
	case KindShortLived:
		if ch.Secret == "" {
			return nil, fmt.Errorf("rotator: channel %s: kind short-lived needs the channel secret", ch.Label())
		}
	case KindStateless:
		if c.signer == nil && ch.Secret == "" {
			return nil, fmt.Errorf("rotator: channel %s: kind stateless needs a signing key or the channel secret", ch.Label())
		}
	default:
		return nil, fmt.Errorf("rotator: channel %s: unknown kind %q", ch.Label(), ch.Kind)
	}
	return c, nil
}

// load reads every channel's records from the store and publishes the
// current tokens still valid, so a restart serves at once without calling LINE.
func (r *Rotator) load(chans []*channel) error {
	all, err := r.o.Store.All()
	if err = r.damaged(err); err != nil {
		return fmt.Errorf("load token records: %w", err)
	}
	now := r.clock.Now()
	var g errgroup.Group
	g.SetLimit(32)
	for _, c := range chans {
		g.Go(func() error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.adopt(all[c.cfg.ID])
			if c.current != nil && now.Before(c.current.ExpiresAt) {
				r.publish(c, now)
			}
			r.refresh(c, now)
			return nil
		})
	}
	return g.Wait()
}

// damaged logs the records a store read left out because they do not
// decode, and answers nil for them: one damaged record must not keep every
// channel from starting. Other errors pass through.
func (r *Rotator) damaged(err error) error {
	var de *store.DamagedError
	if !errors.As(err, &de) {
		return err
	}
	r.log.Error("token records damaged; left out", zap.Error(de),
		zap.String("fix", "tokend uses each channel's other records; one left without a current token gets a new one. "+
			"The damaged records stay in the file and are reported at each start; to drop them, move "+de.Path+" aside while tokend is stopped (tokend then forgets the superseded tokens it would revoke)"))
	return nil
}

// Run is the daemon: it loads the store, publishes the tokens it holds, and
// keeps every channel's token valid until ctx is done. Cancellation is the
// normal way to stop and returns nil.
func (r *Rotator) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("rotator: already running")
	}
	r.started = true
	chans := r.channelList()
	r.mu.Unlock()

	if err := r.load(chans); err != nil {
		return err
	}
	sched, err := gocron.NewScheduler(
		gocron.WithClock(r.clock),
		gocron.WithLocation(time.UTC),
		gocron.WithStopTimeout(r.o.StopTimeout),
	)
	if err != nil {
		return fmt.Errorf("create scheduler: %w", err)
	}
	r.mu.Lock()
	r.sched = sched
	r.runCtx.Store(&ctx)
	sched.Start()
	r.mu.Unlock()
	started := make(chan struct{})
	go func() {
		defer close(started)
		r.startPass(ctx, chans, true)
	}()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		r.sweepLoop(ctx)
	}()

	<-ctx.Done()
	stopAt := time.Now()
	defer r.killHooksAfterStop(ctx)()
	<-started
	<-swept
	r.mu.Lock()
	r.sched = nil
	r.mu.Unlock()
	err = sched.Shutdown()
	r.endRun(stopAt.Add(r.o.StopTimeout))
	if err != nil {
		return fmt.Errorf("stop scheduler: %w", err)
	}
	return nil
}

// endRun waits for the hooks still running and, beside them, revokes the
// tokens whose commit failed (revokeUnrecorded): a stop waits for the
// longer of the two, not their sum, within the service manager's grace.
func (r *Rotator) endRun(deadline time.Time) {
	revoked := make(chan struct{})
	go func() {
		defer close(revoked)
		r.revokeUnrecorded(deadline)
	}()
	r.hooksWG.Wait()
	<-revoked
}

// killHooksAfterStop ends the hooks' context StopTimeout after ctx is
// done (at once counting from now if it already is): hooks still running
// at a stop get as long as the steps in flight, then their exec hooks'
// process groups are killed, so a stop is bounded by StopTimeout, not by a
// hook's own timeout. Hooks waiting for a slot at the stop never start
// (hookStop). release disarms it.
func (r *Rotator) killHooksAfterStop(ctx context.Context) (release func()) {
	var mu sync.Mutex
	var kill *time.Timer
	stop := context.AfterFunc(ctx, func() {
		r.stopHooks()
		mu.Lock()
		kill = time.AfterFunc(r.o.StopTimeout, r.killHooks) // real time, as a LINE call's bound
		mu.Unlock()
	})
	return func() {
		stop()
		mu.Lock()
		if kill != nil {
			kill.Stop()
		}
		mu.Unlock()
	}
}

// RunOnce makes one pass over every channel (load, reconcile, issue or
// rotate what is due, revoke what is due, publish, run hooks) and returns
// an error naming the channels that then hold no valid token, and those
// whose token is not written to every output; or, if ctx ended first, one
// saying the pass was stopped.
func (r *Rotator) RunOnce(ctx context.Context) error {
	r.mu.Lock()
	chans := r.channelList()
	r.mu.Unlock()
	if err := r.load(chans); err != nil {
		return err
	}
	release := r.killHooksAfterStop(ctx) // a stop during the pass counts from then
	r.startPass(ctx, chans, false)
	r.endRun(time.Now().Add(r.o.StopTimeout))
	release()
	now := r.clock.Now()
	var noToken, unwritten []string
	for _, c := range chans {
		switch s := c.snap.Load(); {
		case s == nil || !s.valid(now):
			noToken = append(noToken, c.cfg.Label())
		case !s.published:
			unwritten = append(unwritten, c.cfg.Label())
		}
	}
	var errs []error
	for _, p := range []struct {
		labels []string
		what   string
	}{
		{noToken, "hold no valid token"},
		{unwritten, "hold a valid token not yet written to every output (see the output write errors)"},
	} {
		if len(p.labels) > 0 {
			sort.Strings(p.labels)
			errs = append(errs, fmt.Errorf("%d of %d channels %s: %s", len(p.labels), len(chans), p.what, strings.Join(p.labels, ", ")))
		}
	}
	if err := ctx.Err(); err != nil && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("stopped before the pass was over (every channel holds a valid token; what else was due is left for the next run): %w", err))
	}
	return errors.Join(errs...)
}

// channelList returns the channels sorted by ID; r.mu must be held.
func (r *Rotator) channelList() []*channel {
	out := make([]*channel, 0, len(r.chans))
	for _, c := range r.chans {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *channel) int { return strings.Compare(a.cfg.ID, b.cfg.ID) })
	return out
}

// arm schedules c's next step at `at` (zero or past: at once); r.mu must be
// held. Each channel owns one gocron one-time job, re-armed after every step.
//
// A job for `at` also carries a second run, farAhead later, that no step ever
// reaches: each step re-arms its channel. It is there for the moment the
// scheduler's goroutine takes the job. gocron checks `at` against the clock
// when the job is defined, but the scheduler takes it later, and under load
// (10,000 channels retrying at once when LINE is unreachable) later than
// `at`. gocron v2.21.2 then loops for ever between `at` and the zero time
// of an exhausted one-time job (go-co-op/gocron#943): one core at 100 %, every
// arm and the shutdown blocked behind it, and no channel rotates again. Its
// fix (upstream, not yet served by the module proxy) drops such a job
// instead, which would leave the channel unscheduled. With the far run the
// scheduler always finds a run after now and never loops; if the clock has
// passed `at` by the time it has taken the job, the job may be left with
// only the far run, so arm re-arms the channel to run at once.
//
// That check must read time as gocron does: by the wall clock. gocron
// takes its now in UTC, which drops time.Now's monotonic reading, while
// `at` and the clock's Now carry one, and two times that both carry one
// compare by it alone. time.Now reads the wall and monotonic clocks one
// after the other, so under load (a thread preempted in between) a
// reading's two parts disagree, by up to 28 ms measured here. gocron
// could then find `at` past while arm found it ahead: the job kept only
// its far run and the channel never stepped again (one channel of 10,000
// in 4 of about 19 outage runs; BenchmarkArmUnderLoad, arming at times a
// few hundred microseconds ahead with every CPU busy, lost a job in
// 400,000 arms, and none once `at` carried no monotonic reading). Without
// one, every comparison here and in gocron is by the wall clock, whose
// readings follow each other; openmeter and kopia strip their clocks'
// monotonic readings for the same reason (openmeterio/openmeter#1349,
// kopia/kopia#1437). A wall clock stepped back between gocron's reading
// and arm's could still lose a job: Run's sweep catches that.
func (r *Rotator) arm(c *channel, at time.Time) {
	if r.sched == nil {
		return
	}
	at = at.Round(0) // the wall clock only, as gocron reads it
	if at.After(r.clock.Now()) {
		r.schedule(c, gocron.OneTimeJobStartDateTimes(at, at.Add(farAhead)))
		if at.After(r.clock.Now()) {
			return
		}
	}
	r.schedule(c, gocron.OneTimeJobStartImmediately())
}

// farAhead is how far after its run a job's unreachable second run is (see
// arm): far enough that no token outlives it, near enough for a
// time.Duration.
const farAhead = 100 * 365 * 24 * time.Hour

// schedule makes c's job run at start, creating the job the first time;
// r.mu must be held.
func (r *Rotator) schedule(c *channel, start gocron.OneTimeJobStartAtOption) {
	task := gocron.NewTask(r.runStep, c)
	def := gocron.OneTimeJob(start)
	var err error
	if c.jobID == uuid.Nil {
		var j gocron.Job
		j, err = r.sched.NewJob(def, task, gocron.WithName(c.cfg.ID))
		if err == nil {
			c.jobID = j.ID()
		}
	} else {
		_, err = r.sched.Update(c.jobID, def, task, gocron.WithName(c.cfg.ID))
	}
	if err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
		r.logFor(c).Error("cannot schedule channel", zap.Error(err))
	}
}

// Responsive returns once the rotator can schedule: it takes the rotator's
// lock and makes one round trip through gocron's scheduler goroutine, as
// every arm does. While either is stuck it does not return (the daemon's
// watchdog then withholds systemd's ping).
func (r *Rotator) Responsive() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sched != nil {
		// Removing a job that cannot exist is gocron's cheapest round trip
		// through its scheduler goroutine: it looks the ID up and answers.
		_ = r.sched.RemoveJob(uuid.Nil)
	}
}

func (r *Rotator) burstSteps() int64 {
	if r.o.BurstSteps > 0 {
		return int64(r.o.BurstSteps)
	}
	return 256
}

// setBurst calls Burst(on) if that changes the state and the number of
// steps in progress still agrees: a step that starts or ends between a
// count and this call cannot leave the state stale.
func (r *Rotator) setBurst(on bool) {
	r.burstMu.Lock()
	defer r.burstMu.Unlock()
	n := r.running.Load()
	if r.burst == on || (on && n < r.burstSteps()) || (!on && n != 0) {
		return
	}
	r.burst = on
	if r.o.Burst != nil {
		r.o.Burst(on)
	}
}

// runStep is the job of one channel: one step, then re-arm for the next.
func (r *Rotator) runStep(c *channel) {
	if cp := r.runCtx.Load(); cp != nil {
		r.countedStep(*cp, c, true)
	}
}

// countedStep is one step of c, counted in running (bursts), then, if arm,
// c's job is armed for the next.
func (r *Rotator) countedStep(ctx context.Context, c *channel, arm bool) {
	r.beginStep()
	defer r.endStep()
	if ctx.Err() != nil {
		return
	}
	r.step(ctx, c)
	if arm {
		r.rearm(ctx, c)
	}
}

// rearm arms c's job for its next step after a step. The time comes from
// c's state as it is now, not as the step left it: a wake (lineBack) may
// have made a retry due since the step let go of c.
func (r *Rotator) rearm(ctx context.Context, c *channel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	c.mu.Lock()
	removed := c.removed
	next := r.nextWake(c, now)
	c.next = next
	c.mu.Unlock()
	if !removed && ctx.Err() == nil {
		r.arm(c, next)
	}
}

func (r *Rotator) beginStep() {
	if r.running.Add(1) == r.burstSteps() {
		r.setBurst(true)
	}
}

func (r *Rotator) endStep() {
	if r.running.Add(-1) == 0 {
		r.setBurst(false)
	}
}

// startPass is a start's first steps, in two rounds over chans, each on a
// bounded set of workers:
//
//  1. every channel with no token to serve gets one (issue, publish) and
//     nothing else;
//  2. every channel's full step (key-ID listing, revocations, the issue a
//     failed first round retries), after which Run arms its job.
//
// So at a cold start every issue goes to LINE before any listing, bots get
// tokens before tokend does bookkeeping, and the scheduler holds no job
// until a channel's first step is over. Run's jobs were first armed to
// start at once instead: 10,000 goroutines then waited for a LINE slot,
// each with the stack of a step, which every collection scanned, and the
// scheduler's work for 10,000 immediate runs came before the first token.
//
// The pass counts as one step throughout, so a burst spans both rounds.
func (r *Rotator) startPass(ctx context.Context, chans []*channel, arm bool) {
	r.beginStep()
	defer r.endStep()
	r.eachChannel(ctx, chans, func(c *channel) {
		r.beginStep()
		defer r.endStep()
		r.firstToken(ctx, c)
	})
	r.eachChannel(ctx, chans, func(c *channel) { r.countedStep(ctx, c, arm) })
}

// eachChannel calls fn for every channel in chans on up to
// max(32*max_in_flight, 256) goroutines, until ctx is done. The bound is on
// goroutines, not LINE calls (the gate does that): most of a step is
// waiting, for a LINE slot or for the store's shared commit (up to 50ms),
// so enough must be under way to keep the CPUs signing.
func (r *Rotator) eachChannel(ctx context.Context, chans []*channel, fn func(*channel)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(32*r.o.MaxInFlight, 256), len(chans)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(chans) {
					return
				}
				fn(chans[i])
			}
		})
	}
	wg.Wait()
}

// Reload replaces the channel set: new channels start, removed ones stop
// (their records stay in the store; nothing is revoked), changed ones keep
// their current token and republish it under the new settings. It either
// applies the whole set or, with an error, changes nothing.
//
// It waits for the steps under way without holding r.mu (r.steps): a step
// holds its channel for its LINE call, and in a rotation storm with LINE
// slow that wait is long; under r.mu it held up every step's re-arming,
// the sweep and the watchdog's probe (Responsive takes r.mu), and
// systemd's watchdog killed tokend.
func (r *Rotator) Reload(channels []Channel) error {
	next := make(map[string]Channel, len(channels))
	for _, ch := range channels {
		if _, dup := next[ch.ID]; dup {
			return fmt.Errorf("rotator: channel %s configured twice", ch.ID)
		}
		if _, err := r.newChannel(ch); err != nil {
			return err
		}
		next[ch.ID] = ch
	}
	r.reloading.Lock() // the channel set changes only here
	defer r.reloading.Unlock()
	r.mu.Lock()
	var kept, removed []*channel
	for id, c := range r.chans {
		if _, keep := next[id]; keep {
			kept = append(kept, c)
		} else {
			removed = append(removed, c)
		}
	}
	var fresh []Channel
	for id, ch := range next {
		if _, ok := r.chans[id]; !ok {
			fresh = append(fresh, ch)
		}
	}
	r.mu.Unlock()

	// The new channels' records come first: a store that cannot give them
	// fails the reload before anything has changed.
	added := make([]*channel, 0, len(fresh))
	for _, ch := range fresh {
		c, _ := r.newChannel(ch)
		recs, err := r.o.Store.Channel(ch.ID)
		if err = r.damaged(err); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("load records of channel %s: %w", ch.Label(), err)
		}
		c.adopt(recs)
		added = append(added, c)
	}

	// Every changed channel is locked before any takes its new settings,
	// so a step under way (a rotation waiting on LINE holds its channel)
	// ends under the old ones before any channel writes under the new.
	// Updated one at a time, an output moved from channel A, mid-rotation,
	// to channel B was written with B's token, then with A's by A's step;
	// B counted as published and the file kept A's token until B's next
	// rotation. The steps under way are waited for first, with neither
	// r.mu nor any channel held (r.steps): waited for under r.mu, in a
	// rotation storm with LINE slow, they held up every step's re-arming,
	// the sweep and the watchdog's probe, and systemd's watchdog killed
	// tokend. Then no step holds a channel, and each lock below is a
	// moment's wait at most. Locked in ID order; no other code holds two.
	r.steps.Lock()
	r.mu.Lock()
	locked := append(slices.Clone(kept), removed...)
	slices.SortFunc(locked, func(a, b *channel) int { return strings.Compare(a.cfg.ID, b.cfg.ID) })
	for _, c := range locked {
		c.mu.Lock()
	}
	var dropped []dropToken
	for _, c := range removed {
		c.removed = true
		if c.ready {
			r.readyCount.Add(-1)
		}
		if u := c.unrecorded; u != nil && r.clock.Now().Before(u.ExpiresAt) {
			dropped = append(dropped, dropToken{c, *u})
			c.unrecorded = nil
		}
	}
	for _, c := range kept {
		ch := next[c.cfg.ID]
		nc, _ := r.newChannel(ch)
		if c.cfg.Label() != ch.Label() {
			r.o.Metrics.ForgetChannel(c.cfg.Label())
			if !c.nextRecon.IsZero() {
				// The orphan count is known: keep it under the new
				// name instead of losing it until the next reconcile.
				r.o.Metrics.SetOrphans(ch.Label(), c.orphans)
			}
		}
		c.cfg, c.signer = ch, nc.signer
		c.dropAssertion()   // the key may have changed
		c.published = false // outputs may have changed; unchanged files are not rewritten
		c.issue, c.reconcile, c.revoke, c.publishTry = attempt{}, attempt{}, attempt{}, attempt{}
	}
	for _, c := range locked {
		c.mu.Unlock()
	}

	now := r.clock.Now()
	for _, c := range removed {
		if r.sched != nil && c.jobID != uuid.Nil {
			_ = r.sched.RemoveJob(c.jobID)
		}
		r.o.Metrics.ForgetChannel(c.cfg.Label())
		delete(r.chans, c.cfg.ID)
		r.logFor(c).Info("channel removed")
	}
	for _, c := range kept {
		r.arm(c, time.Time{})
	}
	for _, c := range added {
		r.chans[c.cfg.ID] = c
		r.logFor(c).Info("channel added")
	}
	r.total.Store(int64(len(r.chans)))
	r.rebuildLookup()
	for _, c := range added {
		c.mu.Lock()
		if c.current != nil && now.Before(c.current.ExpiresAt) {
			r.publish(c, now)
		}
		r.refresh(c, now)
		c.mu.Unlock()
		r.arm(c, time.Time{})
	}
	r.noteReady()
	r.mu.Unlock()
	r.steps.Unlock()
	r.revokeDropped(dropped) // LINE calls: with nothing held
	return nil
}

// dropToken is a token LINE issued for a channel a reload removed, whose
// commit had failed: never published, and no longer anyone's to record.
type dropToken struct {
	c   *channel
	tok store.Record
}

// revokeDropped revokes such tokens, as revokeUnrecorded does at a stop:
// each would count toward its channel's 30 until it expired.
func (r *Rotator) revokeDropped(ds []dropToken) {
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.o.StopTimeout)
	defer cancel()
	ctx = cancelCalls(ctx)
	m := *r.lookup.Load()
	for _, d := range ds {
		// Without the channel's lock: a removed channel's settings no
		// longer change, and its last step's re-arm takes the lock under
		// r.mu, which a LINE call here must not hold up.
		r.revokeUnpublished(ctx, d.c, d.tok.Kind, d.tok.AccessToken, "a token tokend could not record before its channel was removed (its commit failed)")
		label := d.c.cfg.Label()
		if e, ok := m[label]; !ok || identLabel(e.ident) != label {
			// The revocation's count brought the series back; not when a
			// channel the reload added has the same name.
			r.o.Metrics.ForgetChannel(d.c.cfg.Label())
		}
	}
}

// Status returns every channel's status, sorted by label; never a token.
func (r *Rotator) Status() []ChannelStatus {
	m := *r.lookup.Load()
	now := r.clock.Now()
	out := make([]ChannelStatus, 0, len(m))
	for key, e := range m {
		if key != e.ident.ID {
			continue // the name entry of a channel listed under its ID
		}
		s := e.c.snap.Load()
		if s == nil {
			out = append(out, ChannelStatus{ID: e.ident.ID, Name: e.ident.Name, Kind: e.ident.Kind})
			continue
		}
		st := s.status
		st.Valid = s.valid(now)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ChannelStatus) int {
		return strings.Compare(labelOf(a), labelOf(b))
	})
	return out
}

func labelOf(s ChannelStatus) string {
	if s.Name != "" {
		return s.Name
	}
	return s.ID
}

// Ready reports whether every channel holds a valid token that has been
// written to all of its outputs.
func (r *Rotator) Ready() bool {
	return r.readyCount.Load() == r.total.Load()
}

// ReadyC is closed the first time every channel is ready (the moment to
// tell systemd READY=1).
func (r *Rotator) ReadyC() <-chan struct{} { return r.readyC }

func (r *Rotator) noteReady() {
	ready := r.Ready()
	r.o.Metrics.SetReady(ready)
	if ready {
		r.readyOnce.Do(func() { close(r.readyC) })
	}
}

type nopObserver struct{}

func (nopObserver) SetToken(string, time.Time, time.Time)     {}
func (nopObserver) Rotation(string, string)                   {}
func (nopObserver) Revocation(string, string)                 {}
func (nopObserver) LINERequest(string, string, time.Duration) {}
func (nopObserver) SetOrphans(string, int)                    {}
func (nopObserver) OutputError(string)                        {}
func (nopObserver) SetReady(bool)                             {}
func (nopObserver) ForgetChannel(string)                      {}
func (nopObserver) HookRun(string)                            {}
