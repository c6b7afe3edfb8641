package main

import (
	"time"

	"github.com/tokend/tokend/internal/daemon"
	"github.com/tokend/tokend/internal/rotator"
)

// defaultDevOptions retries faster than production so the short dev TTLs
// survive simulated faults.
func defaultDevOptions() daemon.Options {
	r := rotator.DefaultRetry
	r.Max, r.Slow = 10*time.Second, 30*time.Second
	return daemon.Options{Retry: r}
}
