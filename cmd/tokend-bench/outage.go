package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/internal/linefake"
)

// outageRun is -outage D: LINE unreachable from tokend's cold start for D
// (the simulator closes the connection of every issue and key-ID listing),
// then back. It prints what the outage cost in its second half (tokend's
// CPU and memory, and LINE's attempts: none would mean tokend stopped
// trying, as it did when gocron's scheduler hung), how long after LINE's
// return every output existed and READY=1 came, and how long SIGTERM
// then took.
//
// With -flap P, LINE comes and goes during the outage instead: down for P,
// up for P, and so on, so that some calls go through and wake the channels
// that could not reach LINE (at most once a minute), while others fail.
// With -fail-share F, LINE drops only the share F of the calls while it
// is down and answers the others (a LINE failing in part), so that every
// channel keeps meeting both.
func outageRun(ctx context.Context, e *env, o options) error {
	s, err := e.newSim()
	if err != nil {
		return err
	}
	defer s.close()
	down := func() {
		for _, ep := range []string{linefake.EndpointIssueV21, linefake.EndpointKeyIDsV21} {
			s.SetFault(ep, linefake.Fault{Drop: true, Share: o.failShare})
		}
	}
	down()
	stopFlap := func() {}
	if o.flap > 0 {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(o.flap)
			defer t.Stop()
			for up := false; ; up = !up {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if up {
					down()
				} else {
					s.ClearFaults()
				}
			}
		}()
		var once sync.Once
		stopFlap = func() { once.Do(func() { close(stop); <-done }) }
		defer stopFlap()
	}
	attempts := func() int { return s.Count(linefake.EndpointIssueV21) + s.Count(linefake.EndpointKeyIDsV21) }
	in, err := e.newInstance("outage", s.url, o.logLevel, o.maxInFlight, steadyLifetimes)
	if err != nil {
		return err
	}
	c, err := startChild(in.dir, in.dir+"/outage.log", o.tokendBin, "run", "-config", in.config)
	if err != nil {
		return err
	}
	defer c.stop()
	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	if err := wait(o.outage / 2); err != nil {
		return err
	}
	cpu0, err := c.cpuTime()
	if err != nil {
		return err
	}
	calls0, t0 := attempts(), time.Now()
	if err := wait(o.outage - o.outage/2); err != nil {
		return err
	}
	cpu1, err := c.cpuTime()
	if err != nil {
		return err
	}
	rss, err := c.rss()
	if err != nil {
		return err
	}
	span, calls := time.Since(t0), attempts()-calls0
	fmt.Printf("outage: LINE down %s from tokend's start; its second half: tokend %.1f %% of a core, rss %.1f MiB, %d log lines so far, LINE saw %d attempts (%.0f a second)\n",
		secs(o.outage), 100*float64(cpu1-cpu0)/float64(span), float64(rss)/(1<<20), c.logLines(), calls, float64(calls)/span.Seconds())
	missing := in.missingOutputs()
	if calls == 0 && missing > 0 { // flapping or a share may have let every channel through
		return fmt.Errorf("outage: tokend made no attempt in the outage's second half; log: %s", tail(c.logPath))
	}
	switch {
	case o.flap > 0 || o.failShare < 1:
		var how []string
		if o.flap > 0 {
			how = append(how, fmt.Sprintf("down and up for %s each in turn", secs(o.flap)))
		}
		if o.failShare < 1 {
			how = append(how, fmt.Sprintf("dropping %.0f %% of the calls while down", 100*o.failShare))
		}
		fmt.Printf("in part: LINE %s; %d of %d outputs existed when the outage ended\n", strings.Join(how, ", "), in.n-missing, in.n)
	case missing != in.n:
		return fmt.Errorf("outage: %d outputs written while LINE was down", in.n-missing)
	}

	issues0 := s.Count(linefake.EndpointIssueV21)
	stopFlap()
	s.ClearFaults()
	up := time.Now()
	for in.missingOutputs() > 0 {
		if time.Since(up) > o.stormTimeout {
			return fmt.Errorf("outage: %d of %d outputs missing %s after LINE came back", in.missingOutputs(), in.n, secs(o.stormTimeout))
		}
		if err := wait(250 * time.Millisecond); err != nil {
			return err
		}
	}
	all := time.Since(up)
	d, err := c.waitReady(ctx, time.Minute)
	if err != nil {
		return err
	}
	r := c.start.Add(d).Sub(up)
	ready := fmt.Sprintf("%s after", secs(r))
	if r < 0 { // flapping or a share let every channel through
		ready = fmt.Sprintf("%s before", secs(-r))
	}
	fmt.Printf("recovery: every output %s after LINE came back (polled every 0.25s), READY=1 %s; %d issue calls for %d channels\n",
		secs(all), ready, s.Count(linefake.EndpointIssueV21)-issues0, in.n)
	t := time.Now()
	if err := c.stop(); err != nil {
		return err
	}
	fmt.Printf("shutdown: exited %s after SIGTERM\n", secs(time.Since(t)))
	return nil
}
