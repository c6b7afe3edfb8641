package rotator

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// sweepEvery is how often Run looks for a channel whose next step is
// overdue, and how overdue it must be.
const sweepEvery = time.Minute

// sweepLoop is Run's safety net under the scheduler, the periodic resync
// of a controller (a Kubernetes informer's, cert-manager's): every
// sweepEvery it schedules again any channel whose step is overdue (sweep).
// Each channel's next step is one gocron job, re-armed after every step;
// a job lost in the scheduler would leave its channel's token to lapse
// with nothing logged. One was: in two of about nine outage runs at
// 10,000 channels (tokend-bench -outage) one channel's job kept only its
// far run, from a clock reading whose wall and monotonic parts disagreed
// (fixed in arm). The sweep is there for a cause not yet found: it logs
// each channel it arms, so one would be seen.
func (r *Rotator) sweepLoop(ctx context.Context) {
	t := r.clock.NewTicker(sweepEvery)
	defer t.Stop()
	var overdue map[*channel]time.Time
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		// A fake clock's jump ticks more than once at the same instant:
		// two sweeps a minute apart, not two ticks, make a channel lost.
		if now := r.clock.Now(); now.Sub(last) >= sweepEvery {
			last = now
			overdue = r.sweep(overdue)
		}
	}
}

// sweep arms at once each channel whose next step has been due for at
// least sweepEvery, both now and at the last sweep (prev), at the same
// time, and not in a step either time: its job did not run. A step under
// way may take long (a long LINE queue) and is left alone, and a channel
// overdue for the first time may only be waiting for a busy scheduler. It
// returns the channels overdue now, for the next sweep.
func (r *Rotator) sweep(prev map[*channel]time.Time) map[*channel]time.Time {
	r.mu.Lock()
	chans := r.channelList()
	r.mu.Unlock()
	now := r.clock.Now()
	overdue := make(map[*channel]time.Time)
	for _, c := range chans {
		if !c.mu.TryLock() {
			continue
		}
		next, removed := c.next, c.removed
		c.mu.Unlock()
		if removed || next.IsZero() || now.Sub(next) < sweepEvery {
			continue
		}
		if due, ok := prev[c]; !ok || !due.Equal(next) {
			overdue[c] = next
			continue
		}
		r.logFor(c).Warn("channel's step is overdue: scheduling it now",
			zap.Time("due", next), zap.Duration("overdue", now.Sub(next).Round(time.Second)))
		r.mu.Lock()
		c.mu.Lock()
		removed = c.removed // by a reload since
		c.mu.Unlock()
		if !removed {
			r.arm(c, now)
		}
		r.mu.Unlock()
	}
	return overdue
}
