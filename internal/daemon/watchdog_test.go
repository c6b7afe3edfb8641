package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestWatchdogFollowsTheRotator: systemd's watchdog is pinged while the
// rotator answers its probe, not while it is stuck (one error log, however
// long), and again once it answers (one warning).
func TestWatchdogFollowsTheRotator(t *testing.T) {
	const every = 20 * time.Millisecond
	var stuck sync.Mutex
	probes := 0 // guarded by stuck
	core, logs := observer.New(zapcore.InfoLevel)
	pings := make(chan struct{}, 100)
	d := &Daemon{
		log: zap.New(core),
		opts: Options{Notify: func(s string) {
			if s == sddaemon.SdNotifyWatchdog {
				select {
				case pings <- struct{}{}:
				default: // never block the watchdog, even when a test fails
				}
			}
		}},
		responsive: func() {
			stuck.Lock() // the test holds it to make the rotator stuck
			probes++
			stuck.Unlock()
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.watchdog(ctx, every) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watchdog: %v", err)
		}
	}()
	ping := func(what string) {
		t.Helper()
		select {
		case <-pings:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no watchdog ping within 10s", what)
		}
	}
	for range 3 {
		ping("rotator answering")
	}

	stuck.Lock()
	// The probe started after the last ping may have come back before the
	// lock, and been pinged for: from the error on, no ping.
	for deadline := time.Now().Add(10 * time.Second); logs.FilterMessageSnippet("withholding systemd's watchdog ping").Len() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no error within 10s of the rotator getting stuck")
		}
		time.Sleep(every / 4)
	}
	for len(pings) > 0 {
		<-pings
	}
	select {
	case <-pings:
		t.Fatal("a watchdog ping while the rotator was stuck")
	case <-time.After(20 * every):
	}
	if n := logs.FilterMessageSnippet("withholding systemd's watchdog ping").Len(); n != 1 {
		t.Fatalf("%d errors about the stuck rotator over 20 intervals, want 1", n)
	}
	if probes < 3 {
		t.Fatalf("%d probes for 3 pings", probes)
	}
	stuck.Unlock()
	ping("rotator answering again")
	ping("rotator answering again")
	if n := logs.FilterMessage("the rotator answers again; watchdog pings resume").Len(); n != 1 {
		t.Fatalf("%d logs of pings resuming, want 1", n)
	}
}
