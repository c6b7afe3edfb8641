package rotator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/hooks"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/store"
)

// channel is the live state of one configured channel. mu serialises its
// steps; snap is what readers see without locking.
type channel struct {
	mu     sync.Mutex
	cfg    Channel
	signer *oauth.Signer

	current *store.Record  // the token being served
	old     []store.Record // superseded or revoked, not yet expired
	// unrecorded is a token LINE issued whose commit failed: never
	// published, and recorded at the next try instead of asking LINE for
	// another (each would count against LINE's limit of 30 until it
	// expired). Revoked if the run ends first (revokeUnrecorded).
	unrecorded *store.Record

	// atLine is how many valid v2.1 tokens LINE listed for the channel at
	// its last key-ID listing; maybeIssued counts the issue calls since then
	// whose outcome is unknown (oauth.OutcomeUnknown): each may have left
	// one more valid at LINE that tokend can neither use nor revoke.
	atLine, maybeIssued int

	published  bool // current written to every output
	hooksDue   bool // a new token awaits its on_rotate hooks
	adopted    bool // current came from the store and is not yet published by this process
	gone       bool // LINE no longer knows the current token
	ready      bool // counted in Rotator.readyCount
	removed    bool
	orphans    int
	lastErr    string
	lastErrOf  *attempt // the operation whose failure lastErr is: cleared when it succeeds
	lapsed     bool     // the current token's expiry with no replacement was logged
	lastErrAt  time.Time
	nextRecon  time.Time
	next       time.Time
	jobID      uuid.UUID
	issue      attempt
	reconcile  attempt
	revoke     attempt
	publishTry attempt

	// the last signed assertion, reused within its lifetime
	assertionText                 string
	assertionTTL                  time.Duration
	assertionFrom, assertionUntil time.Time

	snap atomic.Pointer[snapshot]
	read *atomic.Pointer[served] // the socket's view (read.go)
}

// logFor is channel c's logger. It is made when something is logged, not
// kept: one per channel, 10,000 of them held 3.5 MB that the collector
// marked on every cycle, and a channel rarely logs. WithLazy: at log level
// warn every issue's Info is dropped, and an eager With would encode the
// fields for nothing.
func (r *Rotator) logFor(c *channel) *zap.Logger {
	return r.log.WithLazy(zap.String("channel", c.cfg.Label()), zap.String("channel_id", c.cfg.ID))
}

// attempt tracks consecutive failures of one kind of action.
type attempt struct {
	failures    int
	at          time.Time // not before this time
	unreachable bool      // the last failure: LINE could not be reached (lineBack)
}

// failed makes msg, at now, the channel's last error, that of a's
// operation (succeeded clears it).
func (c *channel) failed(a *attempt, msg string, now time.Time) {
	c.lastErr, c.lastErrAt, c.lastErrOf = msg, now, a
}

// succeeded resets a once its operation went through, and clears the
// channel's last error if that operation's failure was it: an output
// written again, a revocation that goes through, each clears its own error,
// and no other's.
func (c *channel) succeeded(a *attempt) {
	*a = attempt{}
	if c.lastErrOf == a {
		c.lastErr, c.lastErrAt, c.lastErrOf = "", time.Time{}, nil
	}
}

// snapshot is an immutable view of a channel for lock-free readers.
type snapshot struct {
	token     output.Token
	status    ChannelStatus
	published bool
}

func (s *snapshot) valid(now time.Time) bool {
	return s.token.AccessToken != "" && now.Before(s.token.ExpiresAt)
}

// serving reports whether c has a token to hand out at now (one LINE has
// not reported gone).
func (c *channel) serving(now time.Time) bool {
	return c.current != nil && !c.gone && now.Before(c.current.ExpiresAt)
}

// adopt takes the channel's records from the store: the newest current
// one is served, the rest are tracked until they expire.
func (c *channel) adopt(recs []store.Record) {
	c.current, c.old = nil, nil
	for _, rec := range recs {
		if rec.State == store.StateCurrent && (c.current == nil || rec.IssuedAt.After(c.current.IssuedAt)) {
			if c.current != nil {
				c.old = append(c.old, *c.current)
			}
			cur := rec
			c.current, c.adopted = &cur, true
			continue
		}
		c.old = append(c.old, rec)
	}
}

// step does whatever is due for c at the clock's now.
func (r *Rotator) step(ctx context.Context, c *channel) {
	r.steps.RLock() // a reload waits for steps under way, and holds back new ones
	defer r.steps.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return
	}
	now := r.clock.Now()
	r.dropExpired(c, now)
	if cur := c.current; cur != nil && !now.Before(cur.ExpiresAt) && !c.lapsed {
		c.lapsed = true
		r.logFor(c).Error("token expired with no replacement: bots have no valid token for this channel",
			zap.String("key_id", cur.KeyID), zap.Time("expired_at", cur.ExpiresAt),
			zap.String("last_error", c.lastErr), zap.Time("next_try", later(now, c.issue.at)))
	}
	reconcileDue := c.cfg.Kind != KindStateless && !now.Before(c.nextRecon) && !now.Before(c.reconcile.at)
	// A channel with nothing to serve gets its token first and reconciles
	// after publishing it; its issue is urgent and its listing is not, so
	// at a cold start every channel's issue goes to LINE before any
	// listing and bots get tokens before tokend does bookkeeping. After a
	// failed issue the listing goes first again: it names orphans that may
	// be why.
	tokenFirst := c.issue.failures == 0 && !c.serving(now)
	if reconcileDue && !tokenFirst {
		r.doReconcile(ctx, c, now)
		now = r.clock.Now()
	}
	if r.needsIssue(c, now) && !now.Before(c.issue.at) && !r.holdIssue(ctx, c, now) {
		r.doIssue(ctx, c, now)
	}
	now = r.clock.Now()
	if c.current != nil && !c.published && !now.Before(c.publishTry.at) && now.Before(c.current.ExpiresAt) {
		r.publish(c, now)
	}
	if reconcileDue && tokenFirst && ctx.Err() == nil {
		r.refresh(c, now) // readers get the token before the listing
		r.doReconcile(ctx, c, now)
		now = r.clock.Now()
	}
	r.doRevoke(ctx, c, now)
	now = r.clock.Now()
	r.refresh(c, now)
	if !r.nextWake(c, now).Before(c.assertionUntil) {
		c.dropAssertion() // the next step could not reuse it
	}
}

// firstToken is the first round of a start (startPass) for c: if c has
// no token to serve and may issue now, it gets one, published, and nothing
// else is done; the rest of its step comes in the second round.
func (r *Rotator) firstToken(ctx context.Context, c *channel) {
	r.steps.RLock()
	defer r.steps.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := r.clock.Now()
	if c.removed || c.serving(now) || now.Before(c.issue.at) || c.issue.failures > 0 {
		return
	}
	r.dropExpired(c, now)
	r.doIssue(ctx, c, now) // publishes what it issued
	r.refresh(c, r.clock.Now())
}

func (r *Rotator) rotateAt(c *channel) time.Time {
	cur := c.current
	return RotateAt(cur.IssuedAt, cur.ExpiresAt, cur.ID, c.cfg.RotateBefore, c.cfg.Jitter)
}

func (r *Rotator) needsIssue(c *channel, now time.Time) bool {
	cur := c.current
	return cur == nil || c.gone || cur.Kind != c.cfg.Kind ||
		!now.Before(cur.ExpiresAt) || !now.Before(r.rotateAt(c))
}

// nextWake is the earliest moment anything is due for c.
func (r *Rotator) nextWake(c *channel, now time.Time) time.Time {
	var ts []time.Time
	if c.current == nil || c.gone || c.current.Kind != c.cfg.Kind {
		ts = append(ts, later(now, c.issue.at))
	} else {
		ts = append(ts, later(r.rotateAt(c), c.issue.at))
		if c.current.ExpiresAt.After(now) {
			ts = append(ts, c.current.ExpiresAt) // readers must see it lapse
		}
		if !c.published {
			ts = append(ts, later(now, c.publishTry.at))
		}
	}
	if c.cfg.Kind != KindStateless {
		ts = append(ts, later(c.nextRecon, c.reconcile.at))
	}
	for _, rec := range c.old {
		ts = append(ts, rec.ExpiresAt)
		if at, ok := RevokeAt(rec, rec.Kind, c.cfg.RevokeAfter); ok && canRevoke(c, rec) && c.published {
			ts = append(ts, later(at, c.revoke.at))
		}
	}
	next := earliest(ts...)
	if !next.After(now) {
		// Everything due now was just attempted; a past instant here would
		// make the channel spin. Never re-arm sooner than a second.
		next = now.Add(time.Second)
	}
	return next
}

// canRevoke reports whether tokend holds what revoking rec needs.
func canRevoke(c *channel, rec store.Record) bool {
	return rec.Kind != KindV21 || c.cfg.Secret != ""
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// cancelCallsKey marks a context whose end also cancels the LINE calls
// made under it (cancelCalls): revocations at a stop, which issue nothing
// that could be lost, and must not outlast the service manager's grace.
type cancelCallsKey struct{}

// cancelCalls returns ctx with its LINE calls cancelled when it ends.
func cancelCalls(ctx context.Context) context.Context {
	return context.WithValue(ctx, cancelCallsKey{}, true)
}

// call makes one LINE call within the in-flight bound; urgent calls get a
// channel with nothing to serve its token and wait ahead of the others. A
// call already under way is allowed to finish (within the client's own
// timeout) even if ctx ends, so a token LINE issued is recorded rather
// than lost.
func (r *Rotator) call(ctx context.Context, endpoint string, urgent bool, fn func(context.Context) error) error {
	if err := r.gate.acquire(ctx, urgent); err != nil {
		return err
	}
	defer r.gate.release()
	if err := ctx.Err(); err != nil {
		return err
	}
	callCtx := ctx
	if ctx.Value(cancelCallsKey{}) == nil {
		callCtx = context.WithoutCancel(ctx)
	}
	start := time.Now()
	err := fn(callCtx)
	r.o.Metrics.LINERequest(endpoint, oauth.Cause(err), time.Since(start))
	switch {
	case err == nil:
		if r.lineDown.Load() {
			r.lineBack()
		}
	case unreachable(err):
		r.lineDown.Store(true)
	}
	return err
}

// unreachable reports whether err says LINE could not be reached: no
// connection, or no answer in time. LINE's own refusals (5xx, 429) are
// not: it is there, and asks for backoff.
func unreachable(err error) bool {
	c := oauth.Cause(err)
	return c == oauth.KindNetwork || c == oauth.KindTimeout
}

// wakeEvery is the least time between two lineBack wakes: a network that
// comes and goes would otherwise undo every channel's backoff each time.
const wakeEvery = time.Minute

// lineBack runs when a LINE call goes through after calls failed because
// LINE could not be reached: every channel waiting to retry such a failure
// retries now. Their backoffs grew while LINE was away, up to Retry.Max,
// and would hold them back that long after its return. The LINE gate
// still bounds the calls, token-less channels first. At most one wake in
// wakeEvery; until then the next call that goes through tries again.
func (r *Rotator) lineBack() {
	now := r.clock.Now()
	if last := r.lastWake.Load(); last != 0 && now.Sub(time.Unix(0, last)) < wakeEvery {
		return
	}
	if !r.lineDown.CompareAndSwap(true, false) {
		return
	}
	r.lastWake.Store(now.UnixNano())
	go r.wake(now)
}

// wake makes every channel waiting to retry a call LINE could not be
// reached for retry at now (lineBack). It holds r.mu only to arm, one
// channel at a time. A channel whose step is under way (it may be waiting
// in a long LINE queue) is woken after the others, when its step lets go
// of it: the step's own calls may have failed before LINE was back.
func (r *Rotator) wake(now time.Time) {
	r.mu.Lock()
	chans := r.channelList()
	running := r.sched != nil
	r.mu.Unlock()
	if !running {
		return // run -once: its passes retry on their own; or stopping
	}
	woken := 0
	var busy []*channel
	for _, c := range chans {
		if !c.mu.TryLock() {
			busy = append(busy, c)
			continue
		}
		if r.wakeChannel(c, now) {
			woken++
		}
	}
	if woken > 0 || len(busy) > 0 {
		r.log.Info("LINE answers again; channels that could not reach it retry now",
			zap.Int("channels", woken), zap.Int("in_step", len(busy)))
	}
	for _, c := range busy {
		c.mu.Lock()
		r.wakeChannel(c, now)
	}
}

// wakeChannel makes c's retries of calls LINE could not be reached for
// due at now and arms c for them; c.mu must be held, and wakeChannel
// releases it. It reports whether c had such a retry.
func (r *Rotator) wakeChannel(c *channel, now time.Time) bool {
	woke := wakeAttempts(c, now)
	if woke {
		c.next = now
	}
	removed := c.removed
	c.mu.Unlock()
	if !woke || removed {
		return false
	}
	r.mu.Lock()
	r.arm(c, now)
	r.mu.Unlock()
	return true
}

// wakeAttempts makes c's retries of calls LINE could not be reached for,
// if later than now, due at now; c.mu must be held.
func wakeAttempts(c *channel, now time.Time) bool {
	woke := false
	for _, a := range []*attempt{&c.issue, &c.reconcile} {
		if a.failures > 0 && a.unreachable && a.at.After(now) {
			a.at, woke = now, true
		}
	}
	return woke
}

func (r *Rotator) fail(c *channel, a *attempt, now time.Time, msg string, err error) time.Duration {
	return r.failBy(c, a, now, time.Time{}, msg, err)
}

// failBy is fail with the retry no later than notAfter, if set.
func (r *Rotator) failBy(c *channel, a *attempt, now, notAfter time.Time, msg string, err error) time.Duration {
	a.failures++
	d := r.o.Retry.RetryDelay(err, a.failures, r.o.Rand())
	if !notAfter.IsZero() && now.Add(d).After(notAfter) {
		d = max(notAfter.Sub(now), 0)
	}
	a.at = now.Add(d)
	a.unreachable = unreachable(err)
	c.failed(a, err.Error(), now)
	r.refresh(c, r.clock.Now()) // the status shows the error before the log does
	fields := []zap.Field{zap.Error(err), zap.String("cause", oauth.Cause(err)), zap.Int("failures", a.failures), zap.Duration("retry_in", d)}
	if fix := remedy(err, c); fix != "" {
		r.logFor(c).Error(msg, append(fields, zap.String("fix", fix))...)
	} else {
		r.logFor(c).Warn(msg, fields...)
	}
	return d
}

// remedy says what an operator must change for errors retrying cannot fix.
func remedy(err error, c *channel) string {
	switch {
	case errors.Is(err, oauth.ErrTokenLimit):
		return "LINE already holds 30 valid v2.1 tokens for this channel; tokend retries slowly. Revoke unused tokens (see orphan key IDs) or wait for them to expire"
	case errors.Is(err, oauth.ErrKeyNotFound):
		return fmt.Sprintf("LINE does not know assertion signing key %q for channel %s: check key_id and that the public key is registered in the LINE Developers Console", c.cfg.KeyID, c.cfg.ID)
	case errors.Is(err, oauth.ErrInvalidClient):
		return "LINE rejected the channel's credentials: check the channel ID, the channel secret and the private key"
	case errors.Is(err, errLocal):
		return ""
	case notLINE404(err):
		return "line.base_url answered 404 without LINE's JSON error: check line.base_url (a wrong path, or a proxy in the way)"
	case redirected(err):
		return "line.base_url answered with a redirect, which tokend does not follow: set line.base_url to where it points (http instead of https, a proxy in the way?)"
	case !oauth.IsRetryable(err) && err != nil && !errors.Is(err, context.Canceled):
		return "LINE refused the request; check this channel's configuration"
	}
	return ""
}

// redirected reports a 3xx answer: LINE's API does not redirect.
func redirected(err error) bool {
	var ae *oauth.APIError
	return errors.As(err, &ae) && ae.StatusCode >= 300 && ae.StatusCode <= 399
}

// notLINE404 reports a 404 whose body was not LINE's JSON error.
func notLINE404(err error) bool {
	var ae *oauth.APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound && !ae.FromLINE()
}

// assertion returns a signed assertion for c, reusing the last one while
// more than half of its lifetime is left: an assertion carries no nonce,
// and RSA signing is the costliest thing tokend does, so the key-ID listing
// and the issue that follows it at start share one signature. ttl > 0 asks
// for token_exp (the key-ID endpoint ignores it, so it may reuse one made
// for issuing). now is when the call goes out, read after its wait for a
// LINE slot, not when the step began: with LINE slow and thousands of
// steps queued, a step can wait longer than an assertion lives, and LINE
// refuses an expired one as a bad client ("Invalid exp").
func (r *Rotator) assertion(c *channel, now time.Time, ttl time.Duration) (string, error) {
	if c.signer == nil {
		return "", errors.New("no signing key configured")
	}
	if ttl == 0 && c.assertionTTL != 0 && now.Before(c.assertionUntil) {
		ttl = c.assertionTTL // reuse the issuing one for listing
	}
	if c.assertionText != "" && ttl == c.assertionTTL && now.Before(c.assertionUntil) && !now.Before(c.assertionFrom) {
		return c.assertionText, nil
	}
	if ttl == 0 && c.cfg.Kind == KindV21 {
		ttl = c.cfg.TokenTTL // make one the next issue can reuse
	}
	var a string
	var err error
	r.signs.do(func() { a, err = c.signer.Sign(now, ttl) })
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	lifetime := c.signer.Lifetime
	if lifetime == 0 {
		lifetime = oauth.DefaultAssertionLifetime
	}
	c.assertionText, c.assertionTTL = a, ttl
	c.assertionFrom, c.assertionUntil = now, now.Add(lifetime/2)
	return a, nil
}

// dropAssertion forgets c's last signed assertion. Kept past the point
// where it could be reused, it would be a live credential in memory for
// nothing: 10,000 channels hold about 4 MB of them after a start.
func (c *channel) dropAssertion() {
	c.assertionText, c.assertionTTL = "", 0
	c.assertionFrom, c.assertionUntil = time.Time{}, time.Time{}
}

// doReconcile compares tracked tokens with what LINE holds: for v2.1 the
// list of valid key IDs, for short-lived a verify of the current token.
func (r *Rotator) doReconcile(ctx context.Context, c *channel, now time.Time) {
	switch c.cfg.Kind {
	case KindV21:
		var kids []string
		err := r.call(ctx, "kids_v2.1", false, func(ctx context.Context) error {
			a, err := r.assertion(c, r.clock.Now(), 0)
			if err != nil {
				return err
			}
			kids, err = r.o.LINE.GetChannelAccessTokenKeyIDsV2_1(ctx, a)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				r.fail(c, &c.reconcile, now, "reconcile failed", fmt.Errorf("list valid key IDs: %w", err))
			}
			return
		}
		r.applyKeyIDs(c, now, kids)
	case KindShortLived:
		// Only a short-lived token can be verified. One of another kind
		// (the channel's kind changed) would fail verification and be
		// taken for revoked elsewhere, when it is valid and only needs
		// superseding, then revoking after revoke_after.
		if c.current == nil || c.current.Kind != KindShortLived || !now.Before(c.current.ExpiresAt) {
			break
		}
		tok := c.current.AccessToken
		err := r.call(ctx, "verify_short", false, func(ctx context.Context) error {
			_, err := r.o.LINE.VerifyAccessToken(ctx, tok)
			return err
		})
		var apiErr *oauth.APIError
		switch {
		case err == nil:
		case errors.As(err, &apiErr) && apiErr.StatusCode == 400:
			c.gone = true
			r.logFor(c).Warn("current token is no longer valid at LINE; replacing it", zap.String("key_id", c.current.KeyID))
		default:
			if ctx.Err() == nil {
				r.fail(c, &c.reconcile, now, "reconcile failed", fmt.Errorf("verify current token: %w", err))
			}
			return
		}
	}
	c.succeeded(&c.reconcile)
	c.nextRecon = now.Add(c.cfg.ReconcileEvery)
}

// applyKeyIDs acts on LINE's list of valid v2.1 key IDs.
func (r *Rotator) applyKeyIDs(c *channel, now time.Time, kids []string) {
	valid := make(map[string]bool, len(kids))
	for _, k := range kids {
		valid[k] = true
	}
	tracked := map[string]bool{}
	if u := c.unrecorded; u != nil {
		tracked[u.KeyID] = true // not an orphan: tokend holds it
	}
	if cur := c.current; cur != nil && cur.Kind == KindV21 {
		tracked[cur.KeyID] = true
		// A token issued after LINE built its answer may be missing from
		// it, and one issued just before may be too if LINE's list lags
		// its issues: only one older than listingGrace is judged. Judged
		// missing at once, each issue would be replaced at its own
		// listing, one more of the channel's 30 each time.
		if !valid[cur.KeyID] && now.Before(cur.ExpiresAt) && !c.gone && now.Sub(cur.IssuedAt) >= listingGrace {
			c.gone = true
			r.logFor(c).Warn("current token is no longer valid at LINE (revoked elsewhere?); replacing it", zap.String("key_id", cur.KeyID))
		}
	}
	var changed []store.Record
	for i := range c.old {
		rec := &c.old[i]
		tracked[rec.KeyID] = true
		if rec.Kind == KindV21 && rec.State == store.StateSuperseded && !valid[rec.KeyID] {
			rec.State, rec.RevokedAt = store.StateRevoked, now
			changed = append(changed, *rec)
		}
	}
	if len(changed) > 0 {
		if err := r.o.Store.Put(changed...); err != nil {
			r.logFor(c).Warn("cannot record tokens LINE no longer holds", zap.Error(err))
		}
	}
	var orphans []string
	for _, k := range kids {
		if !tracked[k] {
			orphans = append(orphans, k)
		}
	}
	slices.Sort(orphans)
	r.o.Metrics.SetOrphans(c.cfg.Label(), len(orphans))
	if len(orphans) != c.orphans {
		// The status shows the count before the log names the orphans,
		// not at the end of the step, after its issue and revoke calls.
		c.orphans = len(orphans)
		r.refresh(c, r.clock.Now())
	}
	if len(orphans) > 0 {
		r.logFor(c).Warn("LINE holds valid tokens tokend does not track (orphans); they count against the limit of 30 until they expire",
			zap.Strings("orphan_key_ids", orphans), zap.Int("valid_at_line", len(kids)))
	}
	c.atLine, c.maybeIssued = len(kids), 0
	if len(kids) >= nearLimit {
		r.logFor(c).Error("channel nears LINE's limit of 30 valid v2.1 tokens; at 30 issuing fails",
			zap.Int("valid_at_line", len(kids)), zap.Int("orphans", len(orphans)),
			zap.String("fix", "revoke tokens you do not use, or wait for them to expire"))
	}
}

// listingGrace is how old a current token must be for a key-ID listing
// that lacks it to count it revoked (applyKeyIDs).
const listingGrace = 5 * time.Minute

// nearLimit is how many valid v2.1 tokens at LINE make a channel near
// its limit of 30: an error is logged, and a rotation is held (holdIssue).
const nearLimit = 25

// errMaybeIssued marks an issue that failed with an unknown outcome while
// the channel still serves a valid v2.1 token with time to spare: LINE may
// have issued a token whose answer was lost, one of the channel's 30 until
// it expires, and retrying at the usual pace while answers keep getting
// lost would use the 30 up (every 5 minutes, the limit in under 3 hours).
// Such an issue is retried at Retry.Slow, but not after holdUntil.
var errMaybeIssued = errors.New("LINE may have issued a token whose answer was lost, one of the channel's 30 valid tokens until it expires; retrying slowly while the current token is valid")

// holdUntil is how long a rotation of c may be held back: until half of
// rotate_before is left of the current token's life, which keeps the
// other half for the issue to go through.
func holdUntil(c *channel) time.Time {
	return c.current.ExpiresAt.Add(-c.cfg.RotateBefore / 2)
}

// holdIssue holds back the rotation of a v2.1 channel that still serves a
// valid token with time to spare (holdUntil) while LINE may hold nearLimit
// or more of its valid tokens: issuing more would leave nothing for the
// issue that must go through before the token expires, nor for the
// channel's other consumers. When issues with unknown outcomes may have
// added to the last listing's count, it lists again first. It reports
// whether the issue is held; c.issue.at is then when to look again.
func (r *Rotator) holdIssue(ctx context.Context, c *channel, now time.Time) bool {
	if c.cfg.Kind != KindV21 || !c.serving(now) || c.current.Kind != KindV21 {
		return false
	}
	if u := c.unrecorded; u != nil && now.Before(u.ExpiresAt) {
		return false // recording a token LINE issued costs nothing at LINE
	}
	until := holdUntil(c)
	if !now.Before(until) || c.atLine+c.maybeIssued < nearLimit {
		return false
	}
	if c.maybeIssued > 0 {
		r.doReconcile(ctx, c, now) // counts what the lost answers left
		now = r.clock.Now()
		if c.maybeIssued == 0 && c.atLine < nearLimit || !c.serving(now) || ctx.Err() != nil {
			return ctx.Err() != nil // room, or the token is gone at LINE: issue
		}
	}
	c.issue.at = later(c.issue.at, earliest(now.Add(r.o.Retry.Slow), until))
	c.failed(&c.issue, fmt.Sprintf("rotation held until %s: LINE holds %d of the channel's 30 valid v2.1 tokens (%d more may have been issued in answers that were lost)",
		c.issue.at.UTC().Format(time.RFC3339), c.atLine, c.maybeIssued), now)
	r.refresh(c, now)
	r.logFor(c).Error("rotation held: the channel nears LINE's limit of 30 valid v2.1 tokens; the current token stays in use",
		zap.Int("valid_at_line", c.atLine), zap.Int("maybe_issued", c.maybeIssued),
		zap.Time("retry_at", c.issue.at), zap.Time("rotates_anyway_at", until),
		zap.String("fix", "revoke tokens you do not use (see orphan key IDs), or wait for them to expire"))
	return true
}

// doIssue gets a new token, commits it (superseding the old one), publishes
// it and runs the hooks.
func (r *Rotator) doIssue(ctx context.Context, c *channel, now time.Time) {
	if u := c.unrecorded; u != nil && now.Before(u.ExpiresAt) {
		r.record(c, now, *u)
		return
	}
	c.unrecorded = nil // expired: it no longer counts at LINE
	var tok *oauth.Token
	endpoint := map[string]string{KindV21: "issue_v2.1", KindShortLived: "issue_short", KindStateless: "issue_stateless"}[c.cfg.Kind]
	sentAt := now // when the call went out, after its wait for a LINE slot
	err := r.call(ctx, endpoint, !c.serving(now), func(ctx context.Context) error {
		sentAt = r.clock.Now()
		var err error
		switch c.cfg.Kind {
		case KindV21:
			var a string
			if a, err = r.assertion(c, sentAt, c.cfg.TokenTTL); err == nil {
				tok, err = r.o.LINE.IssueChannelAccessTokenV2_1(ctx, a)
			}
		case KindShortLived:
			tok, err = r.o.LINE.IssueAccessToken(ctx, c.cfg.ID, c.cfg.Secret)
		case KindStateless:
			if c.signer != nil {
				var a string
				if a, err = r.assertion(c, sentAt, 0); err == nil {
					tok, err = r.o.LINE.IssueStatelessTokenByAssertion(ctx, a)
				}
			} else {
				tok, err = r.o.LINE.IssueStatelessTokenBySecret(ctx, c.cfg.ID, c.cfg.Secret)
			}
		}
		return err
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // shutting down
		}
		r.o.Metrics.Rotation(c.cfg.Label(), oauth.Cause(err))
		err = fmt.Errorf("issue %s token: %w", c.cfg.Kind, err)
		var slowUntil time.Time
		if c.cfg.Kind == KindV21 && oauth.OutcomeUnknown(err) {
			c.maybeIssued++
			if c.serving(now) && c.current.Kind == KindV21 && now.Before(holdUntil(c)) {
				slowUntil = holdUntil(c)
				err = fmt.Errorf("%w (%w)", err, errMaybeIssued)
			}
		}
		r.failBy(c, &c.issue, now, slowUntil, "issue token failed", err)
		if !slowUntil.IsZero() {
			c.issue.unreachable = false // not woken early when LINE answers again
		}
		if issued, ok := oauth.IssuedToken(err); ok {
			r.revokeUnusable(ctx, c, issued)
		}
		return
	}
	if tok.ExpiresIn <= 0 {
		r.o.Metrics.Rotation(c.cfg.Label(), "malformed")
		r.fail(c, &c.issue, now, "issue token failed", fmt.Errorf("issue %s token: LINE answered expires_in %d", c.cfg.Kind, tok.ExpiresIn))
		return
	}
	rec := store.Record{
		ChannelID:   c.cfg.ID,
		Kind:        c.cfg.Kind,
		ID:          store.RecordID(tok.KeyID, tok.AccessToken),
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		KeyID:       tok.KeyID,
		// From when the call went out: LINE's clock starts the token's
		// life when the call reaches it, no sooner, so the expiry is
		// never later than LINE's; and a listing judges the token by its
		// age from then (listingGrace), not from a wait for a LINE slot.
		IssuedAt:  sentAt,
		ExpiresAt: sentAt.Add(time.Duration(tok.ExpiresIn) * time.Second),
		State:     store.StateCurrent,
	}
	if rec.TokenType == "" {
		rec.TokenType = "Bearer"
	}
	r.record(c, now, rec)
}

// record commits rec, a token LINE issued, as c's current token
// (superseding the old one), then publishes it and runs the hooks. If the
// commit fails, rec is kept as c.unrecorded for the next try.
func (r *Rotator) record(c *channel, now time.Time, rec store.Record) {
	// Recorded with the token, cleared once its hooks have run (hooksRan):
	// a process stopped in between leaves them to the next.
	rec.HooksDue = len(c.cfg.Hooks) > 0
	recs := []store.Record{rec}
	var prev *store.Record
	if c.current != nil {
		p := *c.current
		p.HooksDue = false // its successor's hooks tell the same readers
		if c.gone {
			p.State, p.RevokedAt = store.StateRevoked, now
		} else {
			p.State, p.SupersededAt = store.StateSuperseded, now
		}
		prev = &p
		recs = append(recs, p)
	}
	if err := r.o.Store.Put(recs...); err != nil {
		// The token exists at LINE but not in the store: publishing it
		// would break "committed before published". Kept to be recorded
		// at the next try.
		c.unrecorded = &rec
		r.o.Metrics.Rotation(c.cfg.Label(), "store")
		r.fail(c, &c.issue, now, "cannot record issued token; keeping it to record at the next try",
			fmt.Errorf("%w: commit token record: %w", errLocal, err))
		return
	}
	c.unrecorded = nil
	if prev != nil {
		c.old = append(c.old, *prev)
	}
	c.current = &rec
	c.gone, c.published, c.hooksDue, c.adopted, c.lapsed = false, false, true, false, false
	c.succeeded(&c.issue)
	r.o.Metrics.Rotation(c.cfg.Label(), "ok")
	r.logFor(c).Info("token issued",
		zap.String("kind", rec.Kind), zap.String("key_id", rec.KeyID),
		zap.Time("expires_at", rec.ExpiresAt), zap.Time("rotate_at", r.rotateAt(c)),
		zap.Bool("rotation", prev != nil))
	r.publish(c, now)
}

// publish writes the current token to every output; after the first
// complete write of a new token it starts the channel's hooks.
func (r *Rotator) publish(c *channel, now time.Time) {
	cur := c.current
	tok := tokenOf(c.cfg, cur)
	var errs []error
	wrote := false // an output did not hold the token yet
	for _, o := range c.cfg.Outputs {
		data, err := output.Render(o.Format, tok)
		if err == nil {
			var changed bool
			changed, err = output.WriteFile(o.Path, data, o.Mode)
			wrote = wrote || changed
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("output %s: %w", o.Path, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.o.Metrics.OutputError(c.cfg.Label())
		c.published = false // before fail refreshes the status and readiness
		r.fail(c, &c.publishTry, now, "output write failed", fmt.Errorf("%w: %w", errLocal, err))
		return
	}
	c.succeeded(&c.publishTry)
	c.published = true
	if c.adopted && (wrote || cur.HooksDue) {
		// A token from the store whose hooks the last process did not
		// finish: it stopped before they had run (the record says so),
		// or before every output had the token (an output did not hold
		// it yet; records made before HooksDue existed). They are due
		// now that every output has it.
		c.hooksDue = true
	}
	c.adopted = false
	if c.hooksDue && now.After(cur.IssuedAt) {
		r.restartGrace(c, cur.IssuedAt, now)
	}
	if c.hooksDue && len(c.cfg.Hooks) > 0 {
		ev := hooks.Event{ChannelID: c.cfg.ID, Name: c.cfg.Name, ExpiresAt: cur.ExpiresAt}
		for _, o := range c.cfg.Outputs {
			ev.Outputs = append(ev.Outputs, o.Path)
		}
		// A hook may print what it reads: none of the channel's
		// tokens, nor its secret, is logged from its output.
		ev.Redact = append(ev.Redact, cur.AccessToken, c.cfg.Secret)
		for _, rec := range c.old {
			ev.Redact = append(ev.Redact, rec.AccessToken)
		}
		specs, log, id := c.cfg.Hooks, r.log.Named("hooks"), cur.ID
		r.hooksWG.Add(1)
		go func() {
			defer r.hooksWG.Done()
			done, ok := r.hookTurn()
			if !ok {
				return // a stop came before their turn: still due
			}
			defer done()
			if r.superseded(c, id) {
				// A newer token replaced this one while they waited: its
				// own hooks tell the same readers, as record says.
				return
			}
			err := r.o.Hooks(r.hookCtx, specs, ev, log)
			switch {
			case r.hookCtx.Err() != nil: // killed at a stop: still due
				r.o.Metrics.HookRun("killed")
			case err != nil: // each failure is logged; they ran
				r.o.Metrics.HookRun("failed")
				r.hooksRan(c, id)
			default:
				r.o.Metrics.HookRun("ok")
				r.hooksRan(c, id)
			}
		}()
	} else if cur.HooksDue && len(c.cfg.Hooks) == 0 {
		r.clearHooksDue(c) // a reload removed them: none to run
	}
	c.hooksDue = false
}

// hookTurn waits for a slot to run a channel's hooks (MaxHooksInFlight)
// and returns its release. ok is false if a stop came first, or as the
// slot freed (select takes either when both are ready): hooks must not
// start after a stop, and stay due for the next start.
func (r *Rotator) hookTurn() (done func(), ok bool) {
	select {
	case r.hookSlots <- struct{}{}:
	case <-r.hookStop.Done():
		return nil, false
	}
	if r.hookStop.Err() != nil {
		<-r.hookSlots
		return nil, false
	}
	return func() { <-r.hookSlots }, true
}

// superseded reports whether c's current token is no longer id.
func (r *Rotator) superseded(c *channel, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current != nil && c.current.ID != id
}

// hooksRan records that c's hooks have run for its token id, unless a
// newer token has replaced it meanwhile.
func (r *Rotator) hooksRan(c *channel, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.removed && c.current != nil && c.current.ID == id && c.current.HooksDue {
		r.clearHooksDue(c)
	}
}

// clearHooksDue commits c's current record without HooksDue. On failure
// the hooks run again at the next start, which is logged.
func (r *Rotator) clearHooksDue(c *channel) {
	rec := *c.current
	rec.HooksDue = false
	if err := r.o.Store.Put(rec); err != nil {
		r.logFor(c).Warn("cannot record that the hooks ran; the next start runs them again",
			zap.Error(fmt.Errorf("%w: commit token record: %w", errLocal, err)))
		return
	}
	c.current = &rec
}

// restartGrace gives bots the whole revoke_after with the new token when
// its first complete publish came late (outputs were failing): the tokens it
// superseded at issuedAt count as superseded from now.
func (r *Rotator) restartGrace(c *channel, issuedAt, now time.Time) {
	var changed []store.Record
	for i := range c.old {
		if rec := &c.old[i]; rec.State == store.StateSuperseded && !rec.SupersededAt.After(issuedAt) {
			rec.SupersededAt = now
			changed = append(changed, *rec)
		}
	}
	if len(changed) == 0 {
		return
	}
	if err := r.o.Store.Put(changed...); err != nil {
		r.logFor(c).Warn("cannot record the superseded token's new grace period", zap.Error(err))
	}
}

func tokenOf(ch Channel, rec *store.Record) output.Token {
	return output.Token{
		ChannelID: ch.ID, Name: ch.Name,
		AccessToken: rec.AccessToken, TokenType: rec.TokenType, KeyID: rec.KeyID,
		IssuedAt: rec.IssuedAt, ExpiresAt: rec.ExpiresAt,
	}
}

// doRevoke revokes superseded tokens whose grace period is over.
//
// Nothing is revoked while the current token is not yet in every output:
// those still hold the superseded one, and bots are reading it.
func (r *Rotator) doRevoke(ctx context.Context, c *channel, now time.Time) {
	if now.Before(c.revoke.at) || !c.published {
		return
	}
	for i := range c.old {
		rec := &c.old[i]
		at, ok := RevokeAt(*rec, rec.Kind, c.cfg.RevokeAfter)
		if !ok || now.Before(at) {
			continue
		}
		if !canRevoke(c, *rec) {
			continue // nothing to revoke with; it expires by itself
		}
		kind := rec.Kind
		err := r.revokeToken(ctx, c, kind, rec.AccessToken)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return
			}
			r.o.Metrics.Revocation(c.cfg.Label(), oauth.Cause(err))
			r.fail(c, &c.revoke, now, "revoke superseded token failed", fmt.Errorf("revoke %s token %s: %w", kind, rec.KeyID, err))
			return
		}
		r.o.Metrics.Revocation(c.cfg.Label(), "ok")
		rec.State, rec.RevokedAt = store.StateRevoked, now
		if err := r.o.Store.Put(*rec); err != nil {
			r.logFor(c).Warn("cannot record revocation", zap.String("key_id", rec.KeyID), zap.Error(err))
		}
		c.succeeded(&c.revoke)
		r.logFor(c).Info("superseded token revoked", zap.String("key_id", rec.KeyID))
	}
}

// revokeToken revokes one of c's tokens of the given kind (v2.1 or
// short-lived) at LINE, within the in-flight bound, not urgent.
func (r *Rotator) revokeToken(ctx context.Context, c *channel, kind, token string) error {
	return r.call(ctx, map[string]string{KindV21: "revoke_v2.1", KindShortLived: "revoke_short"}[kind], false, func(ctx context.Context) error {
		if kind == KindV21 {
			return r.o.LINE.RevokeChannelAccessTokenV2_1(ctx, c.cfg.ID, c.cfg.Secret, token)
		}
		return r.o.LINE.RevokeAccessToken(ctx, token)
	})
}

// revokeUnusable revokes a token LINE issued in an answer tokend could not
// use (oauth.IssuedToken: no expires_in, say). It is not recorded and
// never published, yet it counts toward the channel's 30 valid tokens
// until it expires: a LINE that kept answering so would use the limit up
// one retry at a time, and then refuse every issue for up to token_ttl.
// Stateless tokens cannot be revoked and do not count.
func (r *Rotator) revokeUnusable(ctx context.Context, c *channel, token string) {
	r.revokeUnpublished(ctx, c, c.cfg.Kind, token, "the token of an issue answer tokend could not use")
}

// revokeUnpublished revokes token, of kind, which LINE issued for c and
// tokend never published; what names it in the log.
func (r *Rotator) revokeUnpublished(ctx context.Context, c *channel, kind, token, what string) {
	const lost = "it counts toward the channel's 30 valid tokens until it expires"
	switch {
	case kind == KindStateless:
		return
	case !canRevoke(c, store.Record{Kind: kind}):
		r.logFor(c).Warn("cannot revoke "+what+": no channel secret",
			zap.String("fix", lost+"; set channel_secret or channel_secret_file so that tokend can revoke such tokens"))
		return
	}
	err := r.revokeToken(ctx, c, kind, token)
	r.o.Metrics.Revocation(c.cfg.Label(), oauth.Cause(err))
	if err != nil {
		r.logFor(c).Warn("cannot revoke "+what,
			zap.Error(err), zap.String("cause", oauth.Cause(err)), zap.String("fix", lost))
		return
	}
	r.logFor(c).Info("revoked " + what)
}

// lockWithin locks mu, unless ctx ends first: a channel is held a moment
// by a hook's bookkeeping, or for good by a step the scheduler's stop gave
// up on.
func lockWithin(ctx context.Context, mu *sync.Mutex) bool {
	for !mu.TryLock() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

// revokeUnrecorded runs as Run or RunOnce ends (endRun), once the steps are
// over or the scheduler's stop gave up on them. Everything it does, the
// wait for a channel's lock, for a LINE slot and the call itself, ends at
// deadline (StopTimeout after the stop; at least a second from now), within
// the service manager's stop grace. A token LINE issued whose commit failed (c.unrecorded) lives only in
// this process and was never published: kept, the next try would have
// recorded it, but a process that ends loses it, and it would count toward
// its channel's 30 valid tokens until it expired, one more at each run
// from cron while the store cannot commit. So it is revoked. The run's
// context has ended.
func (r *Rotator) revokeUnrecorded(deadline time.Time) {
	r.mu.Lock()
	chans := r.channelList()
	r.mu.Unlock()
	ctx, cancel := context.WithDeadline(context.Background(), later(deadline, time.Now().Add(time.Second)))
	defer cancel()
	ctx = cancelCalls(ctx)
	now := r.clock.Now()
	var wg sync.WaitGroup
	for _, c := range chans {
		wg.Go(func() {
			// Each channel on its own, until the deadline: one held by a
			// step still under way (the scheduler's stop timed out) does
			// not use up the others' time; one held a moment (a step
			// ending, a hook's bookkeeping) is waited for.
			if !lockWithin(ctx, &c.mu) {
				return
			}
			defer c.mu.Unlock()
			u := c.unrecorded
			c.unrecorded = nil
			if u != nil && now.Before(u.ExpiresAt) {
				r.revokeUnpublished(ctx, c, u.Kind, u.AccessToken, "a token tokend could not record before it stopped (its commit failed)")
			}
		})
	}
	wg.Wait()
}

// dropExpired forgets records of tokens that have expired.
func (r *Rotator) dropExpired(c *channel, now time.Time) {
	var ids []string
	c.old = slices.DeleteFunc(c.old, func(rec store.Record) bool {
		if now.Before(rec.ExpiresAt) {
			return false
		}
		ids = append(ids, rec.ID)
		return true
	})
	if len(ids) == 0 {
		return
	}
	if err := r.o.Store.Delete(c.cfg.ID, ids...); err != nil {
		r.logFor(c).Warn("cannot drop expired token records", zap.Error(err))
	}
	if c.lastErrOf == &c.revoke && !slices.ContainsFunc(c.old, func(rec store.Record) bool {
		_, ok := RevokeAt(rec, rec.Kind, c.cfg.RevokeAfter)
		return ok && canRevoke(c, rec)
	}) {
		// What failed to be revoked has expired, and nothing else is
		// waiting to be: the error is over, as if the revocation had
		// gone through.
		c.succeeded(&c.revoke)
	}
}

// refresh publishes c's state to lock-free readers, metrics and readiness;
// c.mu must be held.
func (r *Rotator) refresh(c *channel, now time.Time) {
	s := &snapshot{
		status: ChannelStatus{
			ID: c.cfg.ID, Name: c.cfg.Name, Kind: c.cfg.Kind,
			Orphans: c.orphans, LastError: c.lastErr, LastErrorAt: c.lastErrAt,
		},
		published: c.published,
	}
	if cur := c.current; cur != nil && !now.Before(cur.ExpiresAt) {
		// Expired with no replacement: said, not served, and the status
		// still tells which token it was and when the next try is.
		s.status.KeyID, s.status.IssuedAt, s.status.ExpiresAt = cur.KeyID, cur.IssuedAt, cur.ExpiresAt
		s.status.NextRotation = later(now, c.issue.at)
		r.o.Metrics.SetToken(c.cfg.Label(), time.Time{}, c.issue.at)
	} else if cur != nil {
		s.token = tokenOf(c.cfg, cur)
		s.status.KeyID, s.status.IssuedAt, s.status.ExpiresAt = cur.KeyID, cur.IssuedAt, cur.ExpiresAt
		if cur.Kind == c.cfg.Kind {
			s.status.NextRotation = later(r.rotateAt(c), c.issue.at)
		} else {
			s.status.NextRotation = later(now, c.issue.at)
		}
		r.o.Metrics.SetToken(c.cfg.Label(), cur.ExpiresAt, s.status.NextRotation)
	} else {
		// No token to serve: the series exist all the same, expiry 0 and
		// the next rotation at the next issue attempt (0 if none is
		// set), so an "expires soon" alert fires for this channel too.
		r.o.Metrics.SetToken(c.cfg.Label(), time.Time{}, c.issue.at)
	}
	s.status.Valid = s.valid(now)
	c.setServed(s)
	c.snap.Store(s)
	ready := s.status.Valid && c.published && !c.removed
	if ready != c.ready {
		c.ready = ready
		if ready {
			r.readyCount.Add(1)
		} else {
			r.readyCount.Add(-1)
		}
		r.noteReady()
	}
}
