package daemon

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// TestBurstProcs: a burst raises GOMAXPROCS by half (at least one) until
// the last of the process's bursts ends, then the default is back; with
// GOMAXPROCS set in the environment, the operator's value stays
// throughout. Not parallel: GOMAXPROCS is the process's.
func TestBurstProcs(t *testing.T) {
	for n, want := range map[int]int{1: 2, 2: 3, 3: 4, 4: 6, 8: 12} {
		if got := burstProcs(n); got != want {
			t.Errorf("burstProcs(%d) = %d; want %d", n, got, want)
		}
	}
	orig := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })
	// Unset first; t.Setenv restores whatever the environment had.
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	runtime.SetDefaultGOMAXPROCS()
	base := runtime.GOMAXPROCS(0)
	burst(true)
	burst(true) // a second daemon's burst
	if got := runtime.GOMAXPROCS(0); got != burstProcs(base) || got <= base {
		t.Fatalf("during two bursts GOMAXPROCS = %d; want %d", got, burstProcs(base))
	}
	burst(false)
	if got := runtime.GOMAXPROCS(0); got != burstProcs(base) {
		t.Fatalf("with one burst left GOMAXPROCS = %d; want %d", got, burstProcs(base))
	}
	burst(false)
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("after the bursts GOMAXPROCS = %d; want the default %d", got, base)
	}

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	burst(true)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("GOMAXPROCS=3 in the environment: %d during a burst", got)
	}
	burst(false)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("GOMAXPROCS=3 in the environment: %d after a burst", got)
	}
}

// gcPercent is the collector's current GOGC.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestBurstGC: outside bursts the daemon's GOGC is the steady 200, during
// them Go's default 100, back to 200 after the last; with GOGC set in the
// environment, the operator's value stays throughout. Not parallel: GOGC
// is the process's.
func TestBurstGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	steadyGC()
	if got := gcPercent(); got != steadyGCPercent {
		t.Fatalf("steady GOGC = %d; want %d", got, steadyGCPercent)
	}
	burst(true)
	burst(true)
	steadyGC() // a daemon made during a burst leaves it alone
	if got := gcPercent(); got != burstGCPercent {
		t.Fatalf("during bursts GOGC = %d; want %d", got, burstGCPercent)
	}
	burst(false)
	if got := gcPercent(); got != burstGCPercent {
		t.Fatalf("with one burst left GOGC = %d; want %d", got, burstGCPercent)
	}
	burst(false)
	if got := gcPercent(); got != steadyGCPercent {
		t.Fatalf("after the bursts GOGC = %d; want %d", got, steadyGCPercent)
	}

	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	steadyGC()
	burst(true)
	if got := gcPercent(); got != 50 {
		t.Fatalf("GOGC=50 in the environment: %d during a burst", got)
	}
	burst(false)
	if got := gcPercent(); got != 50 {
		t.Fatalf("GOGC=50 in the environment: %d after a burst", got)
	}
}
