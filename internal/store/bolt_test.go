package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestLock relies on bbolt's flock being per open file: a second Open in
// the same process conflicts just as another process would.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	first := openT(t, dir)

	start := time.Now()
	s, err := Open(dir)
	if err == nil {
		s.Close()
		t.Fatal("second Open succeeded")
	}
	if d := time.Since(start); d > lockTimeout+5*time.Second {
		t.Errorf("second Open took %v; want about %v", d, lockTimeout)
	}
	var locked *LockedError
	if !errors.As(err, &locked) || locked.Dir != dir {
		t.Fatalf("err = %#v; want *LockedError{%q}", err, dir)
	}
	want := "state directory " + dir + " is in use by another tokend (lock held on " + dir + "/tokend.db)"
	if err.Error() != want {
		t.Fatalf("err = %q; want %q", err, want)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openT(t, dir) // free again
}

// TestCommitsAreSynced: every commit reaches the disk before Put returns
// (bbolt fsyncs unless told not to). A crash of the process cannot show the
// difference, a power cut would: a token published after a commit that was
// only in the page cache would be lost from the store, and a restart would
// issue again. So the setting itself is checked.
func TestCommitsAreSynced(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.db.NoSync || s.db.NoGrowSync {
		t.Fatalf("store opened with NoSync %v, NoGrowSync %v: commits must be synced", s.db.NoSync, s.db.NoGrowSync)
	}
}

// TestStoreNameSynced: every Open syncs the state directory (the one that
// created the store file may have failed after creating it), and the
// directory's parent when it made the directory; a failed sync fails Open,
// naming the directory. Not parallel: it replaces syncDir.
func TestStoreNameSynced(t *testing.T) {
	var synced []string
	var fail error
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		if fail != nil {
			return fail
		}
		return orig(dir)
	}
	open := func(dir string, want ...string) {
		t.Helper()
		synced = nil
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !slices.Equal(synced, want) {
			t.Fatalf("synced %q; want %q", synced, want)
		}
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	open(dir, dir, parent) // new directory, new store
	open(dir, dir)         // existing store
	if err := os.Remove(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	open(dir, dir) // new store, existing directory

	fail = syscall.EIO
	other := filepath.Join(t.TempDir(), "state")
	if _, err := Open(other); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), other) {
		t.Fatalf("Open with a failing sync: %v; want EIO naming %s", err, other)
	}
	fail = nil
	open(other, other) // the lock was released; the name is synced now
	fail = syscall.EIO
	if _, err := Open(other); !errors.Is(err, syscall.EIO) {
		t.Fatalf("reopening with a failing sync: %v; want EIO", err)
	}
	fail = nil

	// A parent tokend may not read is not synced, and that is no error;
	// any other failure there is.
	syncDir = func(d string) error {
		synced = append(synced, d)
		if d == parent {
			return fail
		}
		return orig(d)
	}
	fail = &fs.PathError{Op: "open", Path: parent, Err: syscall.EACCES}
	open(filepath.Join(parent, "state2"), filepath.Join(parent, "state2"), parent)
	fail = syscall.EIO
	if _, err := Open(filepath.Join(parent, "state3")); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), parent) {
		t.Fatalf("Open with the parent's sync failing: %v; want EIO naming %s", err, parent)
	}
}

func TestFileModes(t *testing.T) {
	t.Run("new", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "state")
		old := syscall.Umask(0o077) // the modes must not depend on it
		defer syscall.Umask(old)
		openT(t, dir)
		if m := mode(t, dir); m != 0o700 {
			t.Errorf("dir mode %o; want 700", m)
		}
		if m := mode(t, filepath.Join(dir, FileName)); m != 0o600 {
			t.Errorf("file mode %o; want 600", m)
		}
	})
	t.Run("existing dir kept, loose file tightened", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := openT(t, dir)
		s.Close()
		path := filepath.Join(dir, FileName)
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		openT(t, dir)
		if m := mode(t, dir); m != 0o755 {
			t.Errorf("existing dir mode %o; want 755 (untouched)", m)
		}
		if m := mode(t, path); m != 0o600 {
			t.Errorf("file mode %o; want 600", m)
		}
	})
}

func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	in := fullRecord()
	if err := s.Put(in, rec("2", "a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("2", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	all, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || len(all[in.ChannelID]) != 1 || all[in.ChannelID][0] != in.normalize() {
		t.Fatalf("after reopen All = %v", all)
	}
}

// rawDB opens the closed store's file with bbolt directly.
func rawDB(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if err := s.Put(rec("1", "a", 1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var got string
	rawDB(t, dir, func(tx *bolt.Tx) error {
		got = string(tx.Bucket(bucketMeta).Get(keySchema))
		// The layout is what the package documentation says.
		v := tx.Bucket(bucketChannels).Bucket([]byte("1")).Get([]byte("a"))
		if !strings.HasPrefix(string(v), `{"channel_id":"1","kind":"v2.1","id":"a","access_token":"token-1-a",`) {
			t.Errorf("stored value %s", v)
		}
		return nil
	})
	if got != "1" {
		t.Fatalf("schema_version = %q; want %q", got, "1")
	}
}

func TestSchemaRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(tx *bolt.Tx) error
		want  string // after the path
	}{
		{"newer", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("2"))
		}, " has schema version 2, newer than this tokend supports (1); run a newer tokend or move the file aside"},
		{"garbage version", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("x"))
		}, `: invalid schema version "x"; move the file aside`},
		{"version zero", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("0"))
		}, `: invalid schema version "0"; move the file aside`},
		{"another application's database", func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bucketMeta); err != nil {
				return err
			}
			_, err := tx.CreateBucket([]byte("other"))
			return err
		}, " has no schema version but is not empty: not a tokend database; move it aside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			openT(t, dir).Close()
			rawDB(t, dir, tt.setup)
			want := "store: open: " + filepath.Join(dir, FileName) + tt.want
			if err := Inspect(dir); err == nil || err.Error() != want { // tokend check: the same words
				t.Errorf("Inspect: err = %v\nwant  %q", err, want)
			}
			s, err := Open(dir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if err.Error() != want {
				t.Fatalf("err = %q\nwant  %q", err, want)
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	var ran []int
	step := func(v int) func(*bolt.Tx) error {
		return func(*bolt.Tx) error { ran = append(ran, v); return nil }
	}
	steps := map[int]func(*bolt.Tx) error{
		1: step(1), 2: step(2),
		3: func(*bolt.Tx) error { return errors.New("boom") },
	}
	tests := []struct {
		from, to int
		ran      []int
		want     string
	}{
		{1, 1, nil, ""},
		{1, 3, []int{1, 2}, ""},
		{2, 4, []int{2}, "migrate schema version 3 to 4: boom"},
		{4, 5, nil, "no migration from schema version 4 to 5"},
	}
	for _, tt := range tests {
		ran = nil
		err := migrate(nil, tt.from, tt.to, steps)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want || len(ran) != len(tt.ran) {
			t.Errorf("migrate(%d, %d) = %q ran %v; want %q ran %v", tt.from, tt.to, got, ran, tt.want, tt.ran)
		}
	}
}

func TestCorruptFile(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return b
	}
	// overwrite damages one page of a real store's file.
	overwrite := func(page int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(garbage(4096), page*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	write := func(data []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// truncate cuts the file to frac of its size, in whole pages (0: its
	// two meta pages).
	truncate := func(frac float64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			size := int64(float64(fi.Size())*frac) / 4096 * 4096
			if frac == 0 {
				size = 2 * 4096
			}
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"short garbage", write([]byte("not a database"))},
		{"garbage", write(garbage(64 << 10))},
		{"text", write([]byte(strings.Repeat("channels: [] # yaml, not bbolt\n", 1000)))},
		{"meta page 0", overwrite(0)},
		{"both meta pages", func(t *testing.T, path string) { overwrite(0)(t, path); overwrite(1)(t, path) }},
		{"data page", overwrite(4)},
		// Cut short (by hand, or by a copy that ran out of disk): bbolt
		// would map it and fault on a page past its end (SIGBUS or
		// SIGSEGV, which no recover catches). The length check must
		// refuse them before bbolt maps the file, whatever bbolt would do.
		{"truncated to half", truncate(0.5)},
		{"truncated to its meta pages", truncate(0)},
		// bbolt then reads the second meta page, and maps as that says.
		{"meta page 0 damaged, truncated", func(t *testing.T, path string) { overwrite(0)(t, path); truncate(0.5)(t, path) }},
		{"meta page 0 damaged, truncated to its meta pages", func(t *testing.T, path string) { overwrite(0)(t, path); truncate(0)(t, path) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir)
			for i := range 50 {
				if err := s.Put(rec(string(rune('a'+i%5)), string(rune('A'+i)), i)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			path := filepath.Join(dir, FileName)
			tt.damage(t, path)
			s, err := Open(dir)
			if err == nil {
				// bbolt could not tell; reading it must still not panic.
				_, err = s.All()
				s.Close()
				t.Fatalf("Open of a damaged file succeeded (All: %v)", err)
			}
			want := "is corrupted or not a tokend database"
			if strings.Contains(tt.name, "truncated") {
				want += " (truncated: " // the length check's, not a bbolt panic's
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %q; want it to name %s and say %q", err, path, want)
			}
			t.Log(err)
			assertUnlocked(t, path)
		})
	}
}

// assertUnlocked fails if anything in this process still holds path's lock
// (a failed Open must release it).
func assertUnlocked(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("%s is still locked after a failed Open: %v", path, err)
	}
}

// TestCorruptEveryPage damages each page of a store in turn: Open reports
// the damage or the store works; nothing panics, no lock is left held.
func TestCorruptEveryPage(t *testing.T) {
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	dir := t.TempDir()
	s := openT(t, dir)
	for i := range 50 {
		if err := s.Put(rec(string(rune('a'+i%5)), string(rune('A'+i)), i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, FileName)
	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for off := 0; off < len(pristine); off += len(junk) {
		damaged := slices.Clone(pristine)
		copy(damaged[off:], junk)
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir)
		if err != nil {
			failed++
			if !strings.Contains(err.Error(), "is corrupted or not a tokend database") {
				t.Errorf("page %d: err = %v", off/len(junk), err)
			}
			assertUnlocked(t, path)
			continue
		}
		// A page Open found nothing wrong with (a free page): all works.
		if _, err := s.All(); err != nil {
			t.Errorf("page %d: All: %v", off/len(junk), err)
		}
		if err := s.Put(rec("a", "new", 1)); err != nil {
			t.Errorf("page %d: Put: %v", off/len(junk), err)
		}
		s.Close()
	}
	if failed == 0 {
		t.Fatal("no damage detected at all")
	}
}

// TestCorruptChildPageFarOutside: a branch page naming a child page far
// past the end of the file (one damaged field; the page itself still reads
// as a branch page) is the corruption error at Open and in Inspect. Reading
// that page faults: inside bbolt's own check, on its own goroutine, the
// fault was fatal and tokend crashed with a goroutine dump.
func TestCorruptChildPageFarOutside(t *testing.T) {
	var recs []Record
	for i := range 300 { // enough channels for the channels bucket to branch
		recs = append(recs, rec(fmt.Sprintf("16570%05d", i), "kid", i))
	}
	dir, data, off, _ := storeFile(t, recs)
	// Page header: id u64, flags u16 (0x01: branch), count u16; then
	// branch elements: pos u32, ksize u32, child page id u64.
	if flags, count := binary.LittleEndian.Uint16(data[off+8:]), binary.LittleEndian.Uint16(data[off+10:]); flags != 0x01 || count == 0 {
		t.Fatalf("the channels bucket's root page (at %d) is not a branch page (flags %#x, %d elements)", off, flags, count)
	}
	binary.LittleEndian.PutUint64(data[off+16+8:], 1<<30)
	assertDamageReported(t, dir, data, "is corrupted or not a tokend database")
}

// TestCorruptKeyOffsetFarOutside: a leaf element whose key offset points
// far outside the file (one damaged field) is the corruption error at
// Open and in Inspect; bbolt's check reads every key, on its own goroutine,
// where the fault was fatal.
func TestCorruptKeyOffsetFarOutside(t *testing.T) {
	var recs []Record
	for i := range 100 { // one channel with its own leaf page, not inline
		recs = append(recs, rec("1657000000", fmt.Sprintf("kid-%03d", i), i))
	}
	dir, data, off, pageSize := storeFile(t, recs, []byte("1657000000"))
	// Descend to a leaf: branch elements are pos u32, ksize u32, page id u64.
	for binary.LittleEndian.Uint16(data[off+8:]) == 0x01 {
		off = int(binary.LittleEndian.Uint64(data[off+16+8:])) * pageSize
	}
	// Leaf elements: flags u32, pos u32, ksize u32, vsize u32.
	if flags, count := binary.LittleEndian.Uint16(data[off+8:]), binary.LittleEndian.Uint16(data[off+10:]); flags != 0x02 || count == 0 {
		t.Fatalf("page %d is not a leaf page (flags %#x, %d elements)", off/pageSize, flags, count)
	}
	binary.LittleEndian.PutUint32(data[off+16+4:], 0x40000000)
	assertDamageReported(t, dir, data, "is corrupted or not a tokend database")
}

// storeFile writes recs into a new store and returns its directory, the
// file's bytes, the offset in them of the root page of the channels
// bucket (or of its sub-bucket named by sub), and the page size.
func storeFile(t *testing.T, recs []Record, sub ...[]byte) (dir string, data []byte, off, pageSize int) {
	t.Helper()
	dir = t.TempDir()
	s := openT(t, dir)
	if err := s.Put(recs...); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, FileName)
	db, err := openBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChannels)
		for _, name := range sub {
			b = b.Bucket(name)
		}
		off, pageSize = int(b.Root())*tx.DB().Info().PageSize, tx.DB().Info().PageSize
		return nil
	})
	db.Close()
	if data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return dir, data, off, pageSize
}

// assertDamageReported writes data as dir's store file: Inspect and Open
// must report it with want in the error, and leave it unlocked.
func assertDamageReported(t *testing.T, dir string, data []byte, want string) {
	t.Helper()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Inspect(dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Inspect: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open: %v", err)
	}
	assertUnlocked(t, path)
}

func TestEmptyFileIsNewStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir)
	if err := s.Put(rec("1", "a", 1)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBadPaths(t *testing.T) {
	// Tests run as root, where permission bits do not stop writes; a
	// path below a regular file is unwritable for everyone.
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbIsDir := filepath.Join(base, "dbdir")
	if err := os.MkdirAll(filepath.Join(dbIsDir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	fifoDir := filepath.Join(base, "fifo")
	if err := os.Mkdir(fifoDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(fifoDir, FileName), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, want string
	}{
		{"database is a named pipe", fifoDir, "store: open " + fifoDir + "/tokend.db: not a regular file"},
		{"empty", "", "store: empty state directory"},
		{"state dir is a file", file, "store: state directory " + file + " is not a directory"},
		{"below a file", filepath.Join(file, "state"), "store: state directory: stat " + file + "/state: not a directory"},
		{"database is a directory", dbIsDir, "store: open " + dbIsDir + "/tokend.db: is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.dir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if err.Error() != tt.want {
				t.Fatalf("err = %q\nwant  %q", err, tt.want)
			}
		})
	}
}

func TestOpenPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permission bits; TestOpenBadPaths covers unwritable paths")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, err := Open(dir)
	want := "store: open " + filepath.Join(dir, FileName) + ": permission denied"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v; want %q", err, want)
	}
}

// txID is the ID of the last committed write transaction.
func txID(t *testing.T, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestLoneWritesCommitAtOnce: a write with no other under way does not wait
// for company. With the batch window made an hour long, sequential Puts
// and Deletes still return, one commit each.
func TestLoneWritesCommitAtOnce(t *testing.T) {
	s := openT(t, t.TempDir())
	s.db.MaxBatchDelay = time.Hour
	start := txID(t, s)
	done := make(chan error, 1)
	go func() {
		for i := range 10 {
			if err := s.Put(rec("1", strconv.Itoa(i), i)); err != nil {
				done <- err
				return
			}
		}
		done <- s.Delete("1", "0", "1")
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a hang guard, not a measurement
		t.Fatal("sequential writes waited for the batch window")
	}
	if n := txID(t, s) - start; n != 11 {
		t.Fatalf("11 sequential writes made %d commits; want 11", n)
	}
}

// TestOverlappingWritesShareCommits: writes that overlap go out together,
// in far fewer commits than writes, and every one is stored.
func TestOverlappingWritesShareCommits(t *testing.T) {
	s := openT(t, t.TempDir())
	const n = 64
	start := txID(t, s)
	release := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		go func() {
			<-release
			errs <- s.Put(rec(strconv.Itoa(1000+i), "a", i))
		}()
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if commits := txID(t, s) - start; commits > n/4 {
		t.Fatalf("%d overlapping Puts made %d commits; want them shared", n, commits)
	}
	all, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d channels stored; want %d", len(all), n)
	}
}

// TestInspect: what `tokend check` learns about a store without changing
// it: the same verdict as Open for a damaged or newer store, nothing for a
// missing, empty or held one, and no file touched.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	if err := Inspect(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("no state directory yet: %v", err)
	}
	s := openT(t, dir)
	if err := s.Put(rec("a", "A", 1)); err != nil {
		t.Fatal(err)
	}
	if err := Inspect(dir); err != nil {
		t.Errorf("a store held by an open Store: %v", err)
	}
	s.Close()
	path := filepath.Join(dir, FileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Inspect(dir); err != nil {
		t.Errorf("a healthy store: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("Inspect changed the file's mode: %v %v", fi.Mode(), err)
	}
	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(len(pristine))/2/4096*4096); err != nil {
		t.Fatal(err)
	}
	if err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "is corrupted or not a tokend database (truncated") {
		t.Errorf("a truncated store: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Inspect(dir); err != nil {
		t.Errorf("an empty file (Open makes it a store): %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as the store: %v", err)
	}
}

// TestFoundEmpty: Open reports a database file it found there but empty
// (made a new store, as bbolt does), and nothing else: not a file it
// created, nor one with records, nor the file it initialised, reopened.
func TestFoundEmpty(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if s.FoundEmpty() {
		t.Error("a store Open created reported as found empty")
	}
	s.Close()
	s = openT(t, dir)
	if s.FoundEmpty() {
		t.Error("a store reopened reported as found empty")
	}
	s.Close()
	if err := os.Truncate(filepath.Join(dir, FileName), 0); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	if !s.FoundEmpty() {
		t.Error("a 0-byte database file not reported")
	}
	if err := s.Put(rec("1", "a", 1)); err != nil {
		t.Fatalf("the new store does not work: %v", err)
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	if s.FoundEmpty() {
		t.Error("a store with a record reported as found empty")
	}
}

// TestDamagedRecordLeftOut: a record whose value does not decode is left
// out of All and Channel, which return the others with a *DamagedError
// naming it (never its value); Open and Get of other records work.
func TestDamagedRecordLeftOut(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	for _, r := range []Record{rec("1", "a", 1), rec("2", "a", 1), rec("2", "b", 2), rec("3", "a", 1)} {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChannels).Bucket([]byte("2"))
		v := append([]byte(nil), b.Get([]byte("a"))...)
		v[0] = '['
		return b.Put([]byte("a"), v)
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	all, err := s.All()
	var de *DamagedError
	if !errors.As(err, &de) || len(de.Records) != 1 || !strings.HasPrefix(de.Records[0], `channel "2" record "a": `) {
		t.Fatalf("All: %v", err)
	}
	if strings.Contains(err.Error(), "token-2-a") {
		t.Errorf("the error holds the damaged record's token: %v", err)
	}
	if len(all) != 3 || len(all["1"]) != 1 || len(all["2"]) != 1 || all["2"][0].ID != "b" || len(all["3"]) != 1 {
		t.Errorf("All = %v; want channels 1, 2 (record b only) and 3", all)
	}
	recs, err := s.Channel("2")
	if !errors.As(err, &de) || len(recs) != 1 || recs[0].ID != "b" {
		t.Errorf("Channel(2) = %v, %v", recs, err)
	}
	if recs, err := s.Channel("1"); err != nil || len(recs) != 1 {
		t.Errorf("Channel(1) = %v, %v", recs, err)
	}
}

// TestCorruptFreelistCount: a freelist page whose count is damaged to
// billions (one field) is the corruption error at Open and in Inspect.
// bbolt allocated that many entries while opening the file: "fatal error:
// runtime: out of memory", which no recover catches.
func TestCorruptFreelistCount(t *testing.T) {
	var recs []Record
	for i := range 50 {
		recs = append(recs, rec(fmt.Sprintf("16570%05d", i), "kid", i))
	}
	dir, data, _, pageSize := storeFile(t, recs)
	for _, meta := range []int{0, pageSize} { // each meta page names a freelist page
		fl := int(binary.LittleEndian.Uint64(data[meta+16+32:]))
		off := fl * pageSize
		if flags := binary.LittleEndian.Uint16(data[off+8:]); flags != 0x10 {
			t.Fatalf("page %d, named by the meta page at %d, is not a freelist page (flags %#x)", fl, meta, flags)
		}
		binary.LittleEndian.PutUint16(data[off+10:], 0xFFFF) // the count is in the first element...
		binary.LittleEndian.PutUint64(data[off+16:], 1<<40)  // ...which says 2^40
	}
	assertDamageReported(t, dir, data, "is corrupted or not a tokend database (freelist page ")
}

// TestOpenWaitsForACheck: Open waits for a lock that `tokend check` holds
// while it walks the store (Inspect takes it shared), rather than failing
// at once: a start that overlapped a check exited 2, and systemd's
// RestartPreventExitStatus=2 left tokend down.
func TestOpenWaitsForACheck(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir).Close()
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(300 * time.Millisecond) // a check's walk of a large store
		_ = syscall.Flock(fd, syscall.LOCK_UN)
	}()
	defer func() { <-released }()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open while a check held the store for 300ms: %v", err)
	}
	s.Close()
}
