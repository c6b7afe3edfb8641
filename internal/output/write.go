package output

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// WriteFile makes path hold data with permission bits mode, atomically: a
// reader opening path sees the old contents or the new, never a partial or
// empty file, and after a crash the file is one or the other.
//
// If path is already a regular file with exactly data and mode, it is left
// alone and changed is false. Otherwise data goes to a temporary file in the
// same directory, which gets mode (set explicitly: the umask does not
// matter) and, when tokend runs as root, the old file's owner and group; it
// is fsynced, renamed over path, and the directory is fsynced. changed is
// true once the rename has happened, even if the directory fsync then fails.
// Concurrent writes into one directory queue for their create and rename
// calls and share directory fsyncs (see dirState). On a file system that
// keeps its files only in memory (tmpfs, ramfs: see inMemory) both fsyncs
// are skipped, as they can make nothing more durable there.
//
// A target that exists but is not a regular file (a directory, a socket, a
// symlink to anything but a regular file) is refused. A symlink to a
// regular file is replaced by a regular file, never written through, so a
// planted link cannot redirect the write. A missing directory is an error,
// not created. Errors name the paths involved and never contain data.
func WriteFile(path string, data []byte, mode os.FileMode) (changed bool, err error) {
	if mode&^fs.ModePerm != 0 {
		return false, fmt.Errorf("output: write %s: mode %v has bits other than permissions", path, mode)
	}
	_, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return false, fmt.Errorf("output: write %s: not a file path", path)
	}
	dir := filepath.Dir(path) // not Split's: it leaves a trailing slash
	// The directory is looked at only when something fails, to say what
	// is wrong with it: every write of a start costs a system call less.
	uid, gid := -1, -1
	old, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist): // a missing directory fails the create below
	case err != nil:
		return false, fmt.Errorf("output: write %s: %w", path, dirProblem(dir, err))
	case old.Mode()&fs.ModeSymlink != 0:
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return false, fmt.Errorf("output: write %s: refusing to replace a symlink to something other than a regular file", path)
		}
	case !old.Mode().IsRegular():
		return false, fmt.Errorf("output: write %s: refusing to replace a %s", path, kind(old.Mode()))
	default:
		if old.Mode().Perm() == mode && old.Size() == int64(len(data)) && sameContent(path, data) {
			// Already there; durable unless a directory fsync failed
			// since (the retry of a write that failed there).
			if d := dirOf(dir); d.owed.Load() {
				if err := d.sync(dir); err != nil {
					return false, fmt.Errorf("output: write %s: sync directory: %w", path, err)
				}
			}
			return false, nil
		}
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}

	d := dirOf(dir)
	d.entries.Lock()
	f, err := createTemp(dir, "."+base+".tmp-*")
	d.entries.Unlock()
	if err != nil {
		return false, fmt.Errorf("output: write %s: %w", path, dirProblem(dir, fmt.Errorf("create temp file: %w", err)))
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil && !changed {
			if !closed {
				_ = f.Close()
			}
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return false, fmt.Errorf("output: write %s: %w", path, err)
	}
	if uid >= 0 && uid != geteuid() && plantable(dir, uid) {
		uid, gid = -1, -1 // not an operator's choice to keep
	}
	switch {
	case uid >= 0 && geteuid() == 0:
		// Re-apply the owner an operator gave the file.
		if err := f.Chown(uid, gid); err != nil {
			return false, fmt.Errorf("output: write %s: %w", path, err)
		}
	case gid >= 0:
		// Not root: the owner can only be tokend's user, but the group
		// stays when tokend's user belongs to it, so readers given the
		// file through its group keep it. Best effort: for a group it is
		// not in, the file takes tokend's group (a setgid directory's).
		_ = f.Chown(-1, gid)
	}
	if err := f.Chmod(mode); err != nil {
		return false, fmt.Errorf("output: write %s: %w", path, err)
	}
	durable := !inMemoryFS(f)
	if durable {
		if err := f.Sync(); err != nil {
			return false, fmt.Errorf("output: write %s: %w", path, err)
		}
	}
	closed = true
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("output: write %s: %w", path, err)
	}
	d.entries.Lock()
	err = rename(tmp, path)
	d.entries.Unlock()
	if err != nil {
		return false, fmt.Errorf("output: write %s: %w", path, err)
	}
	if !durable {
		return true, nil
	}
	if err := d.sync(dir); err != nil {
		return true, fmt.Errorf("output: write %s: sync directory: %w", path, err)
	}
	return true, nil
}

// plantable reports whether the user uid could have created a file in dir
// itself: the directory is writable by everyone, by its group (whose
// members are not looked up here), or by uid as its owner. Such a file's
// owner and group are not kept: they need not be an operator's (only root
// can give a file to another user), and may be those of someone who
// replaced the file to read the next token. A directory that cannot be
// looked at counts as plantable.
func plantable(dir string, uid int) bool {
	if uid == 0 {
		return false // only root makes root's files
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	perm := fi.Mode().Perm()
	return !ok || perm&0o022 != 0 || int(st.Uid) == uid && perm&0o200 != 0
}

// dirProblem returns what is wrong with dir if anything is (see
// checkDir), else err.
func dirProblem(dir string, err error) error {
	if derr := checkDir(dir); derr != nil {
		return derr
	}
	return err
}

// checkDir makes sure dir exists and is a directory.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// sameContent reports whether the file at path holds exactly data. Any
// failure to read counts as different: the write then replaces it.
func sameContent(path string, data []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	// Read one byte more than expected, to notice a file that grew.
	got, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	return err == nil && bytes.Equal(got, data)
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "file that is not a regular file"
}

// tempFile is what WriteFile needs of its temporary file; tests substitute
// a fake that fails on demand.
type tempFile interface {
	io.Writer
	Name() string
	Chown(uid, gid int) error
	Chmod(mode os.FileMode) error
	Sync() error
	// FSType is the statfs(2) f_type of the file system holding the file.
	FSType() (int64, error)
	Close() error
}

// The file system operations WriteFile uses, replaced by fault-injecting
// tests.
var (
	createTemp = createRawTemp
	rename     = renameFile
	syncDir    = fsyncDir
	inMemoryFS = inMemory
	geteuid    = os.Geteuid
)

// renameFile is rename(2), without the lstat of the target that
// os.Rename makes first to refuse replacing a directory: WriteFile has
// looked at the target already, and should a directory appear there since,
// the kernel refuses to replace it with a file (EISDIR).
func renameFile(from, to string) error {
	if err := ignoringEINTR(func() error { return unix.Rename(from, to) }); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// inMemory reports whether f lies on a file system that keeps its files
// only in memory: tmpfs (where systemd's RuntimeDirectory, /dev/shm and
// the compose example's token volume live) or ramfs. There fsync is a
// no-op that still costs a system call, and the directory's fsync a
// shared round that writers wait for, yet nothing is lost without them:
// a crash of tokend leaves the kernel's copy of every completed write and
// rename in place, and a crash of the machine empties the file system
// whole. The rename keeps a reader from ever seeing a partial file either
// way. Asked of each temporary file (one fstatfs), never cached: a mount
// over the directory changes the answer. An error answers false, so the
// fsyncs run.
func inMemory(f tempFile) bool {
	t, err := f.FSType()
	return err == nil && (t == unix.TMPFS_MAGIC || t == unix.RAMFS_MAGIC)
}

// fsyncDir makes a rename in dir durable (SyncDir). A directory tokend
// may write into but not read (-wx), which it cannot open to sync, is no
// error either: the rename is then as durable as the file system makes it
// on its own, and failing every write there (a failed sync is owed, so
// retries fail too) would not make it more so.
func fsyncDir(dir string) error {
	err := SyncDir(dir)
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "open" && errors.Is(err, unix.EACCES) {
		return nil
	}
	return err
}

// SyncDir fsyncs directory dir, making the names in it durable (the
// store's file uses it too). File systems that cannot sync a directory
// (EINVAL, ENOTSUP) offer nothing stronger, so that is no error. Plain
// system calls, as for rawFile.
func SyncDir(dir string) error {
	fd, err := openDir(dir)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	err = ignoringEINTR(func() error { return fsyncFD(fd) })
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		err = nil
	}
	if err != nil {
		err = &fs.PathError{Op: "sync", Path: dir, Err: err}
	}
	_ = unix.Close(fd) // read-only: nothing to lose
	return err
}

// fsyncFD is SyncDir's fsync(2); a test replaces it.
var fsyncFD = unix.Fsync

// openDir opens dir for SyncDir; a test replaces it.
var openDir = func(dir string) (fd int, err error) {
	err = ignoringEINTR(func() (err error) {
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// RemoveStaleAll removes the temporary files WriteFile leaves next to each
// of paths when the process dies between creating and renaming one (a
// crash, SIGKILL): regular files named ".BASE.tmp-*" in the output's
// directory. Call it only while no WriteFile to those paths can be under
// way (at start, under the state_dir lock). Each directory is listed once,
// however many of the outputs it holds (thousands of channels writing into
// one directory would otherwise cost a listing per output: quadratic). It
// returns how many files it removed per path, and the first error.
func RemoveStaleAll(paths []string) (map[string]int, error) {
	removed := make(map[string]int)
	byDir := make(map[string]map[string]string) // dir -> base -> path
	var dirs []string
	for _, path := range paths {
		dir, base := filepath.Split(path)
		if base == "" || base == "." || base == ".." {
			continue
		}
		if dir == "" {
			dir = "."
		}
		if byDir[dir] == nil {
			byDir[dir] = make(map[string]string)
			dirs = append(dirs, dir)
		}
		byDir[dir][base] = path
	}
	var first error
	for _, dir := range dirs {
		bases := byDir[dir]
		// Like filepath.Glob, an unreadable directory matches nothing.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			path, ok := staleOf(e.Name(), bases)
			if !ok {
				continue
			}
			m := filepath.Join(dir, e.Name())
			if fi, err := os.Lstat(m); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
				if first == nil {
					first = fmt.Errorf("output: remove stale temporary file: %w", err)
				}
				continue
			}
			removed[path]++
		}
	}
	return removed, first
}

// staleOf reports whether name is ".BASE.tmp-*" for one of bases, and
// which output path that base belongs to.
func staleOf(name string, bases map[string]string) (string, bool) {
	if !strings.HasPrefix(name, ".") {
		return "", false
	}
	for i := 1; i < len(name); i++ {
		j := strings.Index(name[i:], ".tmp-")
		if j < 0 {
			return "", false
		}
		i += j
		if path, ok := bases[name[1:i]]; ok {
			return path, true
		}
	}
	return "", false
}
