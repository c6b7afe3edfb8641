package output

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// rawFile is WriteFile's temporary file, driven by plain system calls. An
// *os.File would also register the descriptor with Go's poller, which a
// regular file refuses: five more system calls for each of the thousands
// of files a cold start writes (fcntl four times, epoll_ctl once).
type rawFile struct {
	fd   int
	name string
}

// createRawTemp creates a new file in dir, mode 0600, named by pattern with
// its last "*" replaced by a random string, as os.CreateTemp does.
func createRawTemp(dir, pattern string) (tempFile, error) {
	prefix, suffix, _ := strings.Cut(pattern, "*")
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10)+suffix)
		fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		switch {
		case err == nil:
			return &rawFile{fd: fd, name: name}, nil
		case errors.Is(err, unix.EEXIST) && try < 10_000:
			continue
		case errors.Is(err, unix.EINTR):
			continue
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
}

func (f *rawFile) Name() string { return f.name }

func (f *rawFile) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(f.fd, p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, f.err("write", err)
		}
		n += m
	}
	return n, nil
}

func (f *rawFile) Chown(uid, gid int) error {
	return f.err("chown", ignoringEINTR(func() error { return unix.Fchown(f.fd, uid, gid) }))
}

func (f *rawFile) Chmod(mode os.FileMode) error {
	return f.err("chmod", ignoringEINTR(func() error { return unix.Fchmod(f.fd, uint32(mode.Perm())) }))
}

func (f *rawFile) Sync() error {
	return f.err("sync", ignoringEINTR(func() error { return unix.Fsync(f.fd) }))
}

func (f *rawFile) FSType() (int64, error) {
	var st unix.Statfs_t
	if err := ignoringEINTR(func() error { return unix.Fstatfs(f.fd, &st) }); err != nil {
		return 0, f.err("statfs", err)
	}
	return int64(st.Type), nil
}

// Close closes the descriptor once; it is not retried on EINTR (Linux
// closes the descriptor whatever close returns).
func (f *rawFile) Close() error {
	if f.fd < 0 {
		return f.err("close", os.ErrClosed)
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if errors.Is(err, unix.EINTR) {
		err = nil
	}
	return f.err("close", err)
}

func (f *rawFile) err(op string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: f.name, Err: err}
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
