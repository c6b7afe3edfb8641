package daemon

import (
	"os"
	"runtime"
	"testing"
)

// TestBurstProcs: a burst doubles GOMAXPROCS until the last of the
// process's bursts ends, then the default is back; with GOMAXPROCS set in
// the environment, the operator's value stays throughout. Not parallel:
// GOMAXPROCS is the process's.
func TestBurstProcs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })
	// Unset first; t.Setenv restores whatever the environment had.
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	runtime.SetDefaultGOMAXPROCS()
	base := runtime.GOMAXPROCS(0)
	burst(true)
	burst(true) // a second daemon's burst
	if got := runtime.GOMAXPROCS(0); got != 2*base {
		t.Fatalf("during two bursts GOMAXPROCS = %d; want %d", got, 2*base)
	}
	burst(false)
	if got := runtime.GOMAXPROCS(0); got != 2*base {
		t.Fatalf("with one burst left GOMAXPROCS = %d; want %d", got, 2*base)
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
