package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// gcSummary reads an execution trace and says what the GC's mark phases
// did to the goroutines that serve requests: how long goroutines waited
// to run (runnable to running) inside and outside the marks, and how long
// the mark workers held a P without a break.
func gcSummary(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("read trace %s: %w", path, err)
	}
	const markPhase = "GC concurrent mark phase"
	type span struct{ from, to trace.Time }
	var (
		marks     []span
		markFrom  trace.Time
		runnable  = map[trace.GoID]trace.Time{}
		running   = map[trace.GoID]trace.Time{}
		worker    = map[trace.GoID]bool{}
		waits     []span // runnable -> running
		stints    []span // running -> not, of mark workers
		first     trace.Time
		workerIDs = func(st trace.StateTransition, id trace.GoID) {
			for fr := range st.Stack.Frames() {
				if strings.HasPrefix(fr.Func, "runtime.gcBgMarkWorker") {
					worker[id] = true
				}
			}
		}
	)
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read trace %s: %w", path, err)
		}
		if first == 0 {
			first = ev.Time()
		}
		switch ev.Kind() {
		case trace.EventRangeBegin:
			if ev.Range().Name == markPhase {
				markFrom = ev.Time()
			}
		case trace.EventRangeEnd:
			if ev.Range().Name == markPhase && markFrom != 0 {
				marks = append(marks, span{markFrom, ev.Time()})
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			id := st.Resource.Goroutine()
			from, to := st.Goroutine()
			workerIDs(st, id)
			switch {
			case to == trace.GoRunnable:
				runnable[id] = ev.Time()
			case to == trace.GoRunning:
				running[id] = ev.Time()
				if t, ok := runnable[id]; ok && from == trace.GoRunnable {
					waits = append(waits, span{t, ev.Time()})
					delete(runnable, id)
				}
			}
			if from == trace.GoRunning {
				if t, ok := running[id]; ok && worker[id] {
					stints = append(stints, span{t, ev.Time()})
				}
				delete(running, id)
			}
		}
	}
	if len(marks) == 0 {
		return "no GC mark phase in the trace", nil
	}
	inMark := func(t trace.Time) bool {
		for _, m := range marks {
			if t >= m.from && t <= m.to {
				return true
			}
		}
		return false
	}
	var in, out []time.Duration
	for _, w := range waits {
		if inMark(w.from) {
			in = append(in, w.to.Sub(w.from))
		} else {
			out = append(out, w.to.Sub(w.from))
		}
	}
	var markTime, longest time.Duration
	for _, m := range marks {
		markTime += m.to.Sub(m.from)
	}
	for _, s := range stints {
		longest = max(longest, s.to.Sub(s.from))
	}
	window := time.Duration(marks[len(marks)-1].to - first)
	return fmt.Sprintf("%d GC mark phases, %v in all (%.1f%% of the first %v); wait to run: p99 %v inside them (%d waits), %v outside (%d); longest unbroken mark-worker run %v",
		len(marks), markTime.Round(time.Millisecond), 100*float64(markTime)/float64(window), window.Round(time.Second),
		percentile(in, 99).Round(time.Microsecond), len(in), percentile(out, 99).Round(time.Microsecond), len(out), longest.Round(10*time.Microsecond)), nil
}
