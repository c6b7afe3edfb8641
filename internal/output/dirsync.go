package output

import (
	"sync"
	"sync/atomic"
)

// dirState is what concurrent writes into one directory share.
//
// Entries: creating and renaming entries in a directory takes its inode
// lock in the kernel, where contending writers spin (on 2 cores, 10,000
// channels writing into one directory at a cold start spent more CPU
// spinning on it than renaming). WriteFile takes entries around those two
// calls, so writers queue here, parked, instead.
//
// Syncs: a write's rename is durable once an fsync of its directory that
// began after the rename has returned. Every writer that asks while such an
// fsync is running waits for the next one and shares it, so a burst of
// writes costs a few directory fsyncs, not one each.
//
// Owed: a directory fsync failed, so a rename in it may not be durable.
// A later write of the same bytes changes nothing and would return at
// once: it syncs the directory first, until a sync succeeds (which covers
// every rename before it).
type dirState struct {
	entries sync.Mutex
	owed    atomic.Bool

	mu      sync.Mutex
	running bool       // a syncRound is under way
	next    *syncRound // the round to start when it ends; nil: none asked for
}

type syncRound struct {
	done chan struct{} // closed when the fsync has returned
	err  error
}

// dirs maps a directory (as filepath.Dir gives it) to its *dirState.
var dirs sync.Map

func dirOf(dir string) *dirState {
	v, ok := dirs.Load(dir)
	if !ok {
		v, _ = dirs.LoadOrStore(dir, new(dirState))
	}
	return v.(*dirState)
}

// sync returns the result of an fsync of dir (by syncDir) that began after
// the call.
func (d *dirState) sync(dir string) error {
	d.mu.Lock()
	if d.next == nil {
		d.next = &syncRound{done: make(chan struct{})}
	}
	r := d.next
	lead := !d.running
	if lead {
		d.running, d.next = true, nil
	}
	d.mu.Unlock()
	if lead {
		d.run(dir, r)
	}
	<-r.done
	return r.err
}

// run does round r, then starts the next one if anyone asked for it
// meanwhile (in a new goroutine: r's caller has its answer).
func (d *dirState) run(dir string, r *syncRound) {
	r.err = syncDir(dir)
	// Set here, in round order: a round that succeeds covers every rename
	// before it, one that fails leaves them owed. (Set by each writer
	// after its round returned, a late writer of an earlier, successful
	// round could clear what a later, failed round had set.)
	d.owed.Store(r.err != nil)
	close(r.done)
	d.mu.Lock()
	next := d.next
	d.next = nil
	d.running = next != nil
	d.mu.Unlock()
	if next != nil {
		go d.run(dir, next)
	}
}
