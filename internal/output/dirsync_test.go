package output

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWritesShareDirectorySyncs writes many files into one directory at
// once while the first directory fsync is held until every rename has
// happened. Each write must return only after an fsync that began after
// its own rename, and the writes must share fsyncs: at most three rounds
// (the held one, the one everyone joined, one for a straggler), not one
// per write. Not parallel: it swaps package hooks.
func TestWritesShareDirectorySyncs(t *testing.T) {
	onDurableFS(t)
	realRename, realSyncDir := rename, syncDir
	t.Cleanup(func() { rename, syncDir = realRename, realSyncDir })
	const n = 32
	var (
		mu       sync.Mutex
		renamed  = map[string]bool{} // paths renamed into place
		covered  = map[string]bool{} // paths renamed before a finished fsync began
		syncs    int
		allMoved = make(chan struct{})
	)
	rename = func(from, to string) error {
		err := realRename(from, to)
		mu.Lock()
		renamed[to] = true
		if len(renamed) == n {
			close(allMoved)
		}
		mu.Unlock()
		return err
	}
	syncDir = func(dir string) error {
		mu.Lock()
		syncs++
		first := syncs == 1
		before := make([]string, 0, len(renamed))
		for p := range renamed {
			before = append(before, p)
		}
		mu.Unlock()
		if first {
			select {
			case <-allMoved:
			case <-time.After(10 * time.Second):
				t.Error("the writers never all renamed while the first fsync ran")
			}
		}
		err := realSyncDir(dir)
		mu.Lock()
		for _, p := range before {
			covered[p] = true
		}
		mu.Unlock()
		return err
	}

	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			path := filepath.Join(dir, fmt.Sprintf("tok%02d", i))
			if _, err := WriteFile(path, []byte("token"), 0o600); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ok := covered[path]
			mu.Unlock()
			if !ok {
				errs <- fmt.Errorf("%s: WriteFile returned before a directory fsync that began after its rename", path)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if syncs > 3 {
		t.Errorf("%d writes made %d directory fsyncs; want them shared (at most 3)", n, syncs)
	}
}

// TestSharedDirectorySyncError: every writer whose round fails gets the
// error, with its rename done; the next round starts afresh.
func TestSharedDirectorySyncError(t *testing.T) {
	onDurableFS(t)
	realSyncDir := syncDir
	t.Cleanup(func() { syncDir = realSyncDir })
	fail := true
	syncDir = func(dir string) error {
		if fail {
			return errInjected
		}
		return realSyncDir(dir)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tok")
	changed, err := WriteFile(path, []byte("one"), 0o600)
	if !changed || !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "sync directory") {
		t.Fatalf("changed %v, err %v; want true and the injected sync error", changed, err)
	}
	// The retry of the same write changes nothing, but owes the
	// directory the fsync that failed: it fails again while that does...
	if changed, err := WriteFile(path, []byte("one"), 0o600); changed || !errors.Is(err, errInjected) {
		t.Fatalf("retry while the sync fails: changed %v, err %v; want false and the sync error", changed, err)
	}
	fail = false
	// ...and succeeds once it syncs; then nothing more is owed.
	syncs := 0
	syncDir = func(dir string) error { syncs++; return realSyncDir(dir) }
	for range 2 {
		if changed, err := WriteFile(path, []byte("one"), 0o600); changed || err != nil {
			t.Fatalf("retry: changed %v, err %v; want false, nil", changed, err)
		}
	}
	if syncs != 1 {
		t.Errorf("two retries made %d directory fsyncs; want 1 (the one owed)", syncs)
	}
	if changed, err := WriteFile(path, []byte("two"), 0o600); !changed || err != nil {
		t.Fatalf("after the failure: changed %v, err %v", changed, err)
	}
	checkFile(t, path, "two", 0o600)
}

// TestUnreadableDirectory: a directory tokend may write into but not read
// (-wx) cannot be opened to sync: writes there succeed, as on a file system
// that cannot sync directories, instead of failing every time (a failed
// sync is owed, so retries would fail too). Other open errors still fail.
func TestUnreadableDirectory(t *testing.T) {
	onDurableFS(t)
	realOpenDir := openDir
	t.Cleanup(func() { openDir = realOpenDir })
	var fail error
	openDir = func(dir string) (int, error) {
		if fail != nil {
			return -1, fail
		}
		return realOpenDir(dir)
	}
	path := filepath.Join(t.TempDir(), "tok")
	fail = unix.EACCES // what open(2) answers a non-root tokend there
	for _, data := range []string{"one", "one", "two"} {
		if _, err := WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatalf("write %q: %v", data, err)
		}
	}
	checkFile(t, path, "two", 0o600)
	fail = unix.EIO
	if changed, err := WriteFile(path, []byte("three"), 0o600); !changed || !errors.Is(err, unix.EIO) {
		t.Fatalf("open EIO: changed %v, err %v; want true and EIO", changed, err)
	}
}

// TestOwedSetByTheRound: whether a directory sync is owed is the last
// round's result, set by the round itself: a writer of an earlier round
// that succeeded, resuming late, cannot clear what a later round that
// failed has set.
func TestOwedSetByTheRound(t *testing.T) {
	realSyncDir := syncDir
	t.Cleanup(func() { syncDir = realSyncDir })
	results := []error{nil, errInjected, nil}
	syncDir = func(string) error {
		err := results[0]
		results = results[1:]
		return err
	}
	d := new(dirState)
	dir := t.TempDir()
	for i, want := range []bool{false, true, false} {
		_ = d.sync(dir)
		// Checked before this caller does anything with the result.
		if got := d.owed.Load(); got != want {
			t.Fatalf("after round %d: owed %v; want %v", i+1, got, want)
		}
	}
}

// TestSyncDirErrors: SyncDir retries an interrupted fsync, takes EINVAL
// and ENOTSUP (a file system that cannot sync a directory) as done, and
// fails on anything else, naming the directory.
func TestSyncDirErrors(t *testing.T) {
	realFsync := fsyncFD
	t.Cleanup(func() { fsyncFD = realFsync })
	dir := t.TempDir()
	for _, tc := range []struct {
		errs    []error // what successive fsyncs return; nil after the last
		wantErr error
		calls   int
	}{
		{errs: nil, calls: 1},
		{errs: []error{unix.EINTR, unix.EINTR}, calls: 3},
		{errs: []error{unix.EINVAL}, calls: 1},
		{errs: []error{unix.ENOTSUP}, calls: 1},
		{errs: []error{unix.EINTR, unix.EIO}, wantErr: unix.EIO, calls: 2},
		{errs: []error{unix.ENOSPC}, wantErr: unix.ENOSPC, calls: 1},
	} {
		calls := 0
		fsyncFD = func(fd int) error {
			calls++
			if len(tc.errs) >= calls {
				return tc.errs[calls-1]
			}
			return realFsync(fd)
		}
		err := SyncDir(dir)
		switch {
		case tc.wantErr == nil && err != nil:
			t.Errorf("fsync answering %v: SyncDir = %v; want nil", tc.errs, err)
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("fsync answering %v: SyncDir = %v; want %v", tc.errs, err, tc.wantErr)
		case tc.wantErr != nil && !strings.Contains(err.Error(), "sync "+dir):
			t.Errorf("fsync answering %v: error %q does not name the sync of %s", tc.errs, err, dir)
		}
		if calls != tc.calls {
			t.Errorf("fsync answering %v: %d calls; want %d", tc.errs, calls, tc.calls)
		}
	}
}
