package output

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// entries lists dir, to spot temp files left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func write(t *testing.T, path, data string, mode os.FileMode) bool {
	t.Helper()
	changed, err := WriteFile(path, []byte(data), mode)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

// onDurableFS makes WriteFile take every file system for one that needs
// its fsyncs (as ext4 does), wherever the test's temp directory is, until
// the test ends. Not for parallel tests: it swaps a package hook.
func onDurableFS(t *testing.T) {
	t.Helper()
	real := inMemoryFS
	t.Cleanup(func() { inMemoryFS = real })
	inMemoryFS = func(tempFile) bool { return false }
}

func checkFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != data {
		t.Errorf("%s holds %q; want %q", path, got, data)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s mode %v; want regular %v", path, fi.Mode(), mode)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shop-bot.token")
	if !write(t, path, "one", 0o640) {
		t.Error("new file: changed = false")
	}
	checkFile(t, path, "one", 0o640)
	if !write(t, path, "two-longer", 0o640) {
		t.Error("new bytes: changed = false")
	}
	checkFile(t, path, "two-longer", 0o640)
	if !write(t, path, "two-longer", 0o600) {
		t.Error("new mode: changed = false")
	}
	checkFile(t, path, "two-longer", 0o600)
	if !write(t, path, "", 0o600) {
		t.Error("empty data: changed = false")
	}
	checkFile(t, path, "", 0o600)
	if got := entries(t, dir); !slices.Equal(got, []string{"shop-bot.token"}) {
		t.Errorf("dir holds %v", got)
	}
}

func TestWriteFileUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "tok")
	write(t, path, "x", 0o644)
	checkFile(t, path, "x", 0o644)
}

func TestWriteFileUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok")
	write(t, path, "same", 0o640)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // so a rewrite would show in the mtime
	if write(t, path, "same", 0o640) {
		t.Fatal("identical bytes and mode: changed = true")
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Fatalf("file was rewritten (same inode %v, mtime %v -> %v)", os.SameFile(before, after), before.ModTime(), after.ModTime())
	}
	// Same length, different bytes; and a prefix of the file.
	if !write(t, path, "SAME", 0o640) {
		t.Fatal("different bytes: changed = false")
	}
	if !write(t, path, "SAM", 0o640) {
		t.Fatal("shorter bytes: changed = false")
	}
}

func TestWriteFileReappliesMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok")
	write(t, path, "tok", 0o600)
	if err := os.Chmod(path, 0o644); err != nil { // someone loosened it
		t.Fatal(err)
	}
	if !write(t, path, "tok", 0o600) {
		t.Fatal("changed = false after an external chmod")
	}
	checkFile(t, path, "tok", 0o600)
}

// rewriteOwned writes a file, gives it to 1234:5678 (so the caller must be
// root), writes it again and returns its path and owner after that.
func rewriteOwned(t *testing.T) (string, *syscall.Stat_t) {
	t.Helper()
	return rewriteOwnedIn(t, t.TempDir())
}

// rewriteOwnedIn is rewriteOwned in dir.
func rewriteOwnedIn(t *testing.T, dir string) (string, *syscall.Stat_t) {
	t.Helper()
	path := filepath.Join(dir, "tok")
	write(t, path, "one", 0o640)
	if err := os.Chown(path, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	write(t, path, "two", 0o640)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, fi.Sys().(*syscall.Stat_t)
}

func TestWriteFileReappliesOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file to another owner")
	}
	path, st := rewriteOwned(t)
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Fatalf("owner %d:%d; want 1234:5678", st.Uid, st.Gid)
	}
	checkFile(t, path, "two", 0o640)
}

// TestWriteFileOwnerPlanted: the old file's owner and group are kept only
// when that owner could not have made the file itself: in a directory it
// may write into (writable by everyone, even with the sticky bit; by its
// group; by it as the directory's owner) the file may have been planted by
// someone who wants the next token, and the write gives it to tokend's
// user instead. Elsewhere only root could have given the file its owner.
func TestWriteFileOwnerPlanted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give files to other owners")
	}
	for _, tt := range []struct {
		name     string
		dirMode  os.FileMode
		dirOwner int
		keep     bool
	}{
		{"world-writable", 0o777, 0, false},
		{"world-writable, sticky", 0o777 | os.ModeSticky, 0, false},
		{"group-writable", 0o770, 0, false},
		{"the file owner's", 0o755, 1234, false},
		{"root's", 0o755, 0, true},
		{"another user's", 0o755, 4321, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tt.dirOwner, 0); err != nil {
				t.Fatal(err)
			}
			path, st := rewriteOwnedIn(t, dir)
			if kept := st.Uid == 1234 && st.Gid == 5678; kept != tt.keep {
				t.Errorf("owner %d:%d after the write; want 1234:5678 kept: %v", st.Uid, st.Gid, tt.keep)
			}
			if !tt.keep && st.Uid != 0 {
				t.Errorf("owner %d; want tokend's user, root", st.Uid)
			}
			checkFile(t, path, "two", 0o640)
		})
	}
}

// TestWriteFileKeepsGroupAsNonRoot: a tokend that is not root cannot give
// the file back to its owner, but keeps its group (one its user belongs
// to: here root, which may set any), so readers given the file through its
// group keep it.
func TestWriteFileKeepsGroupAsNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file to another group to set up the test")
	}
	realEuid := geteuid
	t.Cleanup(func() { geteuid = realEuid })
	geteuid = func() int { return 1000 } // write as if not root
	path, st := rewriteOwned(t)
	if st.Uid != uint32(os.Getuid()) || st.Gid != 5678 {
		t.Fatalf("owner %d:%d; want %d:5678 (the writer's user, the file's group)", st.Uid, st.Gid, os.Getuid())
	}
	checkFile(t, path, "two", 0o640)
}

// TestWriteFileAtomic reads the file in a tight loop while it is rewritten
// with tokens of many lengths: every read must be one whole written value.
func TestWriteFileAtomic(t *testing.T) {
	const n = 2000
	path := filepath.Join(t.TempDir(), "tok")
	values := make([]string, n)
	valid := make(map[string]bool, n)
	for i := range values {
		values[i] = fmt.Sprintf("%04d.%s", i, strings.Repeat(string(rune('a'+i%26)), (i*37)%500))
		valid[values[i]] = true
	}
	write(t, path, values[0], 0o600)

	var (
		done  atomic.Bool
		reads atomic.Int64
		wg    sync.WaitGroup
		bad   = make(chan string, 1)
	)
	wg.Go(func() {
		for !done.Load() {
			got, err := os.ReadFile(path)
			if err != nil || !valid[string(got)] {
				select {
				case bad <- fmt.Sprintf("read %d bytes %.20q..., err %v", len(got), got, err):
				default:
				}
				return
			}
			reads.Add(1)
		}
	})
	for _, v := range values[1:] {
		if _, err := WriteFile(path, []byte(v), 0o600); err != nil {
			t.Error(err)
			break
		}
	}
	done.Store(true)
	wg.Wait()
	select {
	case msg := <-bad:
		t.Fatal(msg)
	default:
	}
	checkFile(t, path, values[n-1], 0o600)
	t.Logf("%d reads during %d writes", reads.Load(), n)
	if reads.Load() == 0 {
		t.Fatal("the reader never ran")
	}
}

func TestWriteFileRefused(t *testing.T) {
	base := t.TempDir()
	regular := filepath.Join(base, "regular")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirTarget := filepath.Join(base, "dir")
	if err := os.Mkdir(dirTarget, 0o755); err != nil {
		t.Fatal(err)
	}
	linkToDir := filepath.Join(base, "link-to-dir")
	if err := os.Symlink(dirTarget, linkToDir); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(base, "dangling")
	if err := os.Symlink(filepath.Join(base, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fifo := filepath.Join(base, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	linkToFIFO := filepath.Join(base, "link-to-fifo")
	if err := os.Symlink(fifo, linkToFIFO); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		mode       os.FileMode
		want       string
	}{
		{"directory", dirTarget, 0o600, "output: write " + dirTarget + ": refusing to replace a directory"},
		{"symlink to directory", linkToDir, 0o600, "output: write " + linkToDir + ": refusing to replace a symlink to something other than a regular file"},
		{"symlink to a named pipe", linkToFIFO, 0o600, "output: write " + linkToFIFO + ": refusing to replace a symlink to something other than a regular file"},
		{"dangling symlink", dangling, 0o600, "output: write " + dangling + ": refusing to replace a symlink to something other than a regular file"},
		{"socket", sock, 0o600, "output: write " + sock + ": refusing to replace a socket"},
		{"named pipe", fifo, 0o600, "output: write " + fifo + ": refusing to replace a named pipe"},
		{"missing directory", filepath.Join(base, "missing", "tok"), 0o600, "output: write " + base + "/missing/tok: directory " + base + "/missing does not exist"},
		// Root ignores permission bits, so "cannot create a file here" is
		// simulated by a parent that is a regular file, which stops
		// everyone (TestWriteFileReadOnlyDir covers the real thing as
		// non-root).
		{"parent is a file", filepath.Join(regular, "tok"), 0o600, "output: write " + regular + "/tok: " + regular + " is not a directory"},
		{"below a file", filepath.Join(regular, "sub", "tok"), 0o600, "output: write " + regular + "/sub/tok: stat " + regular + "/sub: not a directory"},
		{"not a file path", base + "/", 0o600, "output: write " + base + "/: not a file path"},
		{"setuid mode", filepath.Join(base, "tok"), 0o600 | os.ModeSetuid, "output: write " + base + "/tok: mode urw------- has bits other than permissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := entries(t, base)
			changed, err := WriteFile(tt.path, []byte("secret-data"), tt.mode)
			if err == nil || changed {
				t.Fatalf("WriteFile = %v, %v; want an error", changed, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("err = %q\nwant  %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error contains the data: %q", err)
			}
			if after := entries(t, base); !slices.Equal(before, after) {
				t.Fatalf("directory changed: %v -> %v", before, after)
			}
		})
	}
	if fi, err := os.Lstat(linkToDir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink to directory was touched: %v %v", fi, err)
	}
}

func TestWriteFileReplacesSymlinkToFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	link := filepath.Join(dir, "tok")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	// Even identical bytes replace the link with a regular file.
	if !write(t, link, "precious", 0o644) {
		t.Fatal("changed = false")
	}
	checkFile(t, link, "precious", 0o644)
	if !write(t, link, "token", 0o600) {
		t.Fatal("changed = false")
	}
	checkFile(t, link, "token", 0o600)
	checkFile(t, target, "precious", 0o644) // never written through
}

func TestWriteFileReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permission bits; TestWriteFileRefused simulates this with a parent that is a regular file")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tok")
	write(t, path, "old", 0o600)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, err := WriteFile(path, []byte("new"), 0o600)
	if err == nil || !errors.Is(err, os.ErrPermission) || !strings.HasPrefix(err.Error(), "output: write "+path+": create temp file: ") {
		t.Fatalf("err = %v", err)
	}
	checkFile(t, path, "old", 0o600)
}

// faultyFile is a temp file that fails at one step.
type faultyFile struct {
	tempFile
	failAt string
}

var errInjected = errors.New("injected failure")

func (f *faultyFile) fail(step string) error {
	if f.failAt == step {
		return errInjected
	}
	return nil
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if err := f.fail("write"); err != nil {
		n, _ := f.tempFile.Write(p[:len(p)/2]) // a partial write
		return n, err
	}
	return f.tempFile.Write(p)
}

func (f *faultyFile) Chown(uid, gid int) error {
	if err := f.fail("chown"); err != nil {
		return err
	}
	return f.tempFile.Chown(uid, gid)
}

func (f *faultyFile) Chmod(m os.FileMode) error {
	if err := f.fail("chmod"); err != nil {
		return err
	}
	return f.tempFile.Chmod(m)
}

func (f *faultyFile) Sync() error {
	if err := f.fail("sync"); err != nil {
		return err
	}
	return f.tempFile.Sync()
}

func (f *faultyFile) Close() error {
	err := f.tempFile.Close()
	if ferr := f.fail("close"); ferr != nil {
		return ferr
	}
	return err
}

// TestWriteFileFailures fails each step in turn: the old file must stay
// whole and no temp file may remain. Not parallel: it swaps package hooks.
func TestWriteFileFailures(t *testing.T) {
	onDurableFS(t) // the sync and syncdir steps are skipped in memory
	realCreate, realRename, realSyncDir, realEuid := createTemp, rename, syncDir, geteuid
	t.Cleanup(func() { createTemp, rename, syncDir, geteuid = realCreate, realRename, realSyncDir, realEuid })
	// Reach the chown step as any user: the temp file is chowned to the
	// old file's owner, which is us, and that needs no privilege.
	geteuid = func() int { return 0 }

	for _, step := range []string{"create", "write", "chown", "chmod", "sync", "close", "rename", "syncdir"} {
		t.Run(step, func(t *testing.T) {
			createTemp = func(dir, pattern string) (tempFile, error) {
				if step == "create" {
					return nil, errInjected
				}
				f, err := realCreate(dir, pattern)
				if err != nil {
					return nil, err
				}
				return &faultyFile{tempFile: f, failAt: step}, nil
			}
			rename = func(from, to string) error {
				if step == "rename" {
					return errInjected
				}
				return realRename(from, to)
			}
			syncDir = func(dir string) error {
				if step == "syncdir" {
					return errInjected
				}
				return realSyncDir(dir)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "tok")
			if err := os.WriteFile(path, []byte("old-token"), 0o600); err != nil {
				t.Fatal(err)
			}
			changed, err := WriteFile(path, []byte("new-secret-token"), 0o640)
			if !errors.Is(err, errInjected) {
				t.Fatalf("err = %v; want the injected failure", err)
			}
			if !strings.HasPrefix(err.Error(), "output: write "+path+": ") || strings.Contains(err.Error(), "secret") {
				t.Fatalf("err = %q", err)
			}
			if step == "syncdir" {
				// The rename happened: the new file is in place.
				if !changed {
					t.Error("changed = false after the rename")
				}
				checkFile(t, path, "new-secret-token", 0o640)
			} else {
				if changed {
					t.Error("changed = true")
				}
				checkFile(t, path, "old-token", 0o600)
			}
			if got := entries(t, dir); !slices.Equal(got, []string{"tok"}) {
				t.Fatalf("left behind: %v", got)
			}
		})
	}
}

func TestFsyncDir(t *testing.T) {
	if err := fsyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := fsyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkWriteFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tok")
	data := [][]byte{[]byte(strings.Repeat("a", 170)), []byte(strings.Repeat("b", 170))}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := WriteFile(path, data[i%2], 0o640); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFileOneDir is many channels publishing at once into one
// directory (a cold start, a rotation storm): 8 writers per CPU, each
// rewriting its own file. sys-ns/op is the kernel CPU time per write, where
// contention on the directory shows.
func BenchmarkWriteFileOneDir(b *testing.B) {
	dir := b.TempDir()
	data := [][]byte{[]byte(strings.Repeat("a", 170)), []byte(strings.Repeat("b", 170))}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	sys0 := sysTime(b)
	b.RunParallel(func(pb *testing.PB) {
		path := filepath.Join(dir, fmt.Sprintf("tok%03d", next.Add(1)))
		for i := 0; pb.Next(); i++ {
			if _, err := WriteFile(path, data[i%2], 0o600); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(sysTime(b)-sys0)/float64(b.N), "sys-ns/op")
}

func sysTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Stime.Nano())
}

func BenchmarkWriteFileUnchanged(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tok")
	data := []byte(strings.Repeat("a", 170))
	if _, err := WriteFile(path, data, 0o640); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		changed, err := WriteFile(path, data, 0o640)
		if err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

// RemoveStale is RemoveStaleAll for one path: how many it removed, and
// the first error.
func RemoveStale(path string) (int, error) {
	removed, err := RemoveStaleAll([]string{path})
	return removed[path], err
}

// TestRemoveStale: the temporary files a crash leaves are removed, and
// nothing else: not the output, not another output's temporary files, not
// a directory that happens to match.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shop[1]*.token")
	if _, err := WriteFile(path, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk(".shop[1]*.token.tmp-123")
	mk(".shop[1]*.token.tmp-456")
	mk(".shop1x.token.tmp-789") // would match if the name were not escaped
	mk(".other.token.tmp-1")
	if err := os.Mkdir(filepath.Join(dir, ".shop[1]*.token.tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := RemoveStale(path)
	if err != nil || n != 2 {
		t.Fatalf("RemoveStale = %d, %v; want 2, nil", n, err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".other.token.tmp-1", ".shop1x.token.tmp-789", ".shop[1]*.token.tmp-dir", "shop[1]*.token"}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Fatalf("left %q; want %q", left, want)
	}
	if n, err := RemoveStale(filepath.Join(dir, "missing", "x")); n != 0 || err != nil {
		t.Fatalf("RemoveStale in a missing directory = %d, %v", n, err)
	}
}

// countingFile counts its temp file's fsyncs.
type countingFile struct {
	tempFile
	syncs *atomic.Int32
}

func (f countingFile) Sync() error {
	f.syncs.Add(1)
	return f.tempFile.Sync()
}

// TestWriteFileSyncsOnlyDurableFS: on a file system that keeps files only
// in memory a write makes neither fsync; on any other it makes both, the
// file's before the rename and the directory's after it. Either way the
// file is written whole with its mode. Not parallel: it swaps package hooks.
func TestWriteFileSyncsOnlyDurableFS(t *testing.T) {
	realCreate, realSyncDir, realInMemory := createTemp, syncDir, inMemoryFS
	t.Cleanup(func() { createTemp, syncDir, inMemoryFS = realCreate, realSyncDir, realInMemory })
	for _, tt := range []struct {
		inMemory            bool
		fileSyncs, dirSyncs int32
	}{
		{inMemory: true, fileSyncs: 0, dirSyncs: 0},
		{inMemory: false, fileSyncs: 1, dirSyncs: 1},
	} {
		t.Run(fmt.Sprintf("in memory %v", tt.inMemory), func(t *testing.T) {
			var fileSyncs, dirSyncs atomic.Int32
			var asked atomic.Int32
			createTemp = func(dir, pattern string) (tempFile, error) {
				f, err := realCreate(dir, pattern)
				if err != nil {
					return nil, err
				}
				return countingFile{tempFile: f, syncs: &fileSyncs}, nil
			}
			syncDir = func(dir string) error {
				dirSyncs.Add(1)
				return realSyncDir(dir)
			}
			inMemoryFS = func(f tempFile) bool {
				asked.Add(1)
				if _, err := f.FSType(); err != nil {
					t.Errorf("FSType: %v", err)
				}
				return tt.inMemory
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "tok")
			if !write(t, path, "token-one", 0o640) {
				t.Fatal("changed = false for a new file")
			}
			checkFile(t, path, "token-one", 0o640)
			if got := entries(t, dir); !slices.Equal(got, []string{"tok"}) {
				t.Fatalf("left behind: %v", got)
			}
			if asked.Load() != 1 || fileSyncs.Load() != tt.fileSyncs || dirSyncs.Load() != tt.dirSyncs {
				t.Fatalf("probe asked %d times, %d file fsyncs, %d directory fsyncs; want 1, %d, %d",
					asked.Load(), fileSyncs.Load(), dirSyncs.Load(), tt.fileSyncs, tt.dirSyncs)
			}
		})
	}
}

// TestInMemoryProbe checks the real probe against statfs(2) of the
// directory: tmpfs and ramfs are in memory, anything else is not. It runs
// in the test's temp directory and, where there is one, /dev/shm (tmpfs on
// Linux machines with glibc's POSIX shared memory).
func TestInMemoryProbe(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && syscall.Access("/dev/shm", 2) == nil {
		dirs = append(dirs, "/dev/shm")
	}
	for _, dir := range dirs {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		want := st.Type == 0x01021994 || st.Type == 0x858458f6 // TMPFS_MAGIC, RAMFS_MAGIC
		f, err := createRawTemp(dir, ".probe-*")
		if err != nil {
			t.Fatal(err)
		}
		got := inMemory(f)
		fsType, ferr := f.FSType()
		_ = f.Close()
		_ = os.Remove(f.Name())
		if ferr != nil || fsType != int64(st.Type) {
			t.Errorf("%s: FSType = %#x, %v; statfs says %#x", dir, fsType, ferr, st.Type)
		}
		if got != want {
			t.Errorf("%s (f_type %#x): inMemory = %v; want %v", dir, st.Type, got, want)
		}
	}
}

// TestWriteFileDirectoryAppears: a directory that appears at the target
// after WriteFile looked at it (renameFile does not look again) is still
// not replaced: the kernel refuses, the error says so, and the temporary
// file goes. Not parallel: it swaps a package hook.
func TestWriteFileDirectoryAppears(t *testing.T) {
	realRename := rename
	t.Cleanup(func() { rename = realRename })
	dir := t.TempDir()
	path := filepath.Join(dir, "tok")
	rename = func(from, to string) error {
		if err := os.Mkdir(to, 0o755); err != nil {
			t.Fatal(err)
		}
		return realRename(from, to)
	}
	changed, err := WriteFile(path, []byte("secret-token"), 0o600)
	if changed || !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("WriteFile = %v, %v; want false and EISDIR", changed, err)
	}
	want := "output: write " + path + ": rename " + filepath.Join(dir, ".tok.tmp-")
	if !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), " "+path+": is a directory") {
		t.Fatalf("err = %q; want %q...%q", err, want, " "+path+": is a directory")
	}
	if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
		t.Fatalf("the directory was replaced: %v, %v", fi, err)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"tok"}) {
		t.Fatalf("left behind: %v", got)
	}
}

// TestLongestName: a 239-byte file name (config's limit for outputs) is
// written: its temporary file, ".NAME.tmp-" and up to 10 digits, fits
// the 255-byte limit of a name.
func TestLongestName(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("n", 239))
	for range 20 { // the random suffix varies in length
		if _, err := WriteFile(path, []byte(fmt.Sprint(time.Now().UnixNano())), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
