package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tokend/tokend/internal/output"
)

// FileName is the name of the database file inside the state directory.
const FileName = "tokend.db"

const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600

	// lockTimeout bounds the wait for the file lock: a second tokend on
	// the same directory fails in seconds instead of hanging. Long enough
	// for a `tokend check` that holds its shared lock while it walks a
	// large store (Inspect: 103 ms for 20,000 records, measured): a start
	// that overlapped one failed with exit 2 after 100 ms, and systemd's
	// RestartPreventExitStatus=2 then left tokend down.
	lockTimeout = 2 * time.Second

	// batchDelay is how long a write that overlaps others waits for more to
	// share its commit (a write with none under way commits at once). Each
	// commit costs CPU and an fdatasync whatever it holds, and a cold start
	// issues a token about every millisecond. tokend's CPU for a cold start
	// of 10,000 channels on 2 CPUs (tokend-bench -cold-only, one run each,
	// alternating): 13.7-14.0 s with 1ms against 12.9-13.4 s with 10ms;
	// later 13.1-13.8 s with 10ms, 12.8-13.1 s with 25ms, 12.6 s with 50ms.
	// Closed loops of writers wait the window: a start (the rotator's
	// startPass) keeps enough steps under way for that.
	batchDelay = 50 * time.Millisecond
)

var (
	bucketMeta     = []byte("meta")
	bucketChannels = []byte("channels")
	keySchema      = []byte("schema_version")
)

// LockedError is returned by Open when another process (or another Open in
// this one) holds the state directory's database.
type LockedError struct {
	Dir string // the state directory
}

// Error says which directory is in use and which file holds the lock.
func (e *LockedError) Error() string {
	return fmt.Sprintf("state directory %s is in use by another tokend (lock held on %s)",
		e.Dir, filepath.Join(e.Dir, FileName))
}

// Store is the embedded bbolt store. Its methods are safe for concurrent
// use; see the package documentation for their semantics.
type Store struct {
	db         *bolt.DB
	path       string
	writers    atomic.Int32 // writes under way
	foundEmpty bool
}

// Open opens (creating if needed) the store in dir: the directory is
// created 0700 if missing (an existing one is left as it is), the database
// file is created 0600 or tightened to 0600. If another process holds the
// store, Open fails within about 100ms with a *LockedError. A database
// written by a newer tokend (a higher SchemaVersion) is refused.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: empty state directory")
	}
	madeDir, err := ensureDir(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName)
	fi, statErr := os.Stat(path)
	db, err := openBolt(path, false)
	if err != nil {
		return nil, openError(dir, path, err)
	}
	// bbolt syncs a new file's first pages but not its name: without
	// this, a power cut soon after the first start could lose the store
	// with every token it recorded. Synced at every open, not only at the
	// one that creates the file: that one may have failed after creating
	// it.
	if err := syncNames(dir, madeDir); err != nil {
		_ = db.Close()
		return nil, err
	}
	db.MaxBatchDelay = batchDelay
	s := &Store{db: db, path: path, foundEmpty: statErr == nil && fi.Size() == 0}
	if err := s.check(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.initSchema(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// FoundEmpty reports whether Open found the database file there but empty
// (0 bytes) and made it a new store, as bbolt does: a file cut to nothing,
// or one whose creation a crash interrupted at the very first start. Any
// records it once held are gone.
func (s *Store) FoundEmpty() bool { return s.foundEmpty }

// openError is the error for a failed openBolt.
func openError(dir, path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return &LockedError{Dir: dir}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), errors.As(err, new(panicError)), errors.As(err, new(truncatedError)),
		errors.As(err, new(freelistError)):
		return fmt.Errorf("store: open: %w", corruptError(path, err))
	case errors.As(err, new(*fs.PathError)):
		return fmt.Errorf("store: %w", err)
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}

// Inspect checks the store in dir as Open would, without changing
// anything, for `tokend check`: no store yet, or an empty file, is fine (a
// start makes one); a store another process holds (the running tokend)
// is not looked into; any other must open, pass bbolt's consistency check
// and have a schema this tokend reads.
func Inspect(dir string) error {
	path := filepath.Join(dir, FileName)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("store: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store: %s is not a regular file", path)
	case fi.Size() == 0:
		return nil
	}
	db, err := openBolt(path, true)
	if err != nil {
		if err := openError(dir, path, err); !errors.As(err, new(*LockedError)) {
			return err
		}
		return nil
	}
	defer db.Close()
	s := &Store{db: db, path: path}
	if err := s.check(); err != nil {
		return err
	}
	return s.view("open", func(tx *bolt.Tx) error {
		_, err := s.schema(tx)
		return err
	})
}

// ensureDir creates dir 0700 if it is missing (made reports it did) and
// checks it is a directory.
func ensureDir(dir string) (made bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return false, fmt.Errorf("store: create state directory: %w", err)
		}
		// MkdirAll's mode passed through the umask; the directory is ours.
		if err := os.Chmod(dir, dirMode); err != nil {
			return false, fmt.Errorf("store: create state directory: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("store: state directory: %w", err)
	case !fi.IsDir():
		return false, fmt.Errorf("store: state directory %s is not a directory", dir)
	}
	return false, nil
}

// syncNames makes the store file's name durable: dir is synced, and dir's
// parent too when Open made dir (unless tokend may not read the parent,
// which it then cannot open to sync).
func syncNames(dir string, madeDir bool) error {
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("store: sync state directory %s (for %s): %w", dir, FileName, err)
	}
	if !madeDir {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := syncDir(parent); err != nil && !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("store: sync %s (for the state directory it now holds): %w", parent, err)
	}
	return nil
}

// syncDir fsyncs a directory (output.SyncDir: a file system that cannot
// sync one is no error); a test replaces it.
var syncDir = output.SyncDir

// panicError is a panic inside bbolt (it panics on some corrupted pages)
// turned into an error.
type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("bbolt panic: %v", p.v) }

// openBolt is bolt.Open with the file mode enforced on the open descriptor
// (not when readOnly: then nothing is changed) and bbolt's panics on a
// corrupted file turned into errors.
func openBolt(path string, readOnly bool) (db *bolt.DB, err error) {
	var (
		mu sync.Mutex
		f  *os.File
	)
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		file, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		fi, err := file.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = &fs.PathError{Op: "open", Path: name, Err: errors.New("not a regular file")}
		}
		if err == nil {
			err = checkSize(file, fi.Size())
		}
		if err == nil && !readOnly && fi.Mode().Perm() != fileMode {
			// Tighten looser bits, and undo a umask that removed ours.
			err = file.Chmod(fileMode)
		}
		if err != nil {
			_ = file.Close()
			return nil, err
		}
		mu.Lock()
		f = file
		mu.Unlock()
		return file, nil
	}
	defer func() {
		if v := recover(); v != nil {
			// bbolt panicked half way through Open: release the lock
			// and the file ourselves. Unlock explicitly: the memory
			// mapping bbolt may have made (and which leaks) keeps the
			// open file, and with it the flock, alive after Close.
			mu.Lock()
			if f != nil {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}
			mu.Unlock()
			db, err = nil, panicError{v}
		}
	}()
	return bolt.Open(path, fileMode, &bolt.Options{Timeout: lockTimeout, OpenFile: openFile, ReadOnly: readOnly})
}

// truncatedError is a database file shorter than its own meta page says.
type truncatedError struct{ size, want int64 }

func (e truncatedError) Error() string {
	return fmt.Sprintf("truncated: %d bytes, its meta page names pages up to %d bytes", e.size, e.want)
}

// freelistError is a freelist page that cannot be what the meta page says.
type freelistError struct {
	page uint64
	what string
}

func (e freelistError) Error() string {
	return fmt.Sprintf("freelist page %d: %s", e.page, e.what)
}

// checkSize refuses a database file shorter than its newest valid meta page
// says it is (a file cut short by hand or by a copy that ran out of disk),
// and one whose freelist page that meta page names cannot hold what its
// header says. bbolt maps the file and reads the pages the meta page names:
// a page past the end of the file is a SIGBUS, and a freelist count of
// billions an allocation that ends the process; no recover catches either.
// The layout read here is bbolt's on-disk format (version 2): two meta
// pages, each a 16-byte page header and then magic, version, page size,
// flags, root bucket (16 bytes), freelist page, high-water page ID,
// transaction ID and an FNV-64a checksum of the fields before it. A page
// header is its ID (8 bytes), flags (2), count (2) and overflow pages (4);
// a freelist page whose count is 0xFFFF holds the real count in its first
// 8 bytes. A file without a valid meta page is left to bbolt, which
// refuses it.
func checkSize(f *os.File, size int64) error {
	const magic, hdr, metaLen = 0xED0CDAED, 16, 64
	type metaPage struct {
		pageSize            uint32
		freelist, hwm, txid uint64
	}
	le := binary.LittleEndian
	// meta reads the meta page at off.
	meta := func(off int64) (metaPage, bool) {
		var buf [hdr + metaLen]byte
		if _, err := f.ReadAt(buf[:], off); err != nil {
			return metaPage{}, false
		}
		m := buf[hdr:]
		h := fnv.New64a()
		_, _ = h.Write(m[:56])
		mp := metaPage{pageSize: le.Uint32(m[8:]), freelist: le.Uint64(m[32:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
		return mp, le.Uint32(m[0:]) == magic && le.Uint32(m[4:]) == 2 && mp.pageSize >= 512 && h.Sum64() == le.Uint64(m[56:])
	}
	m, ok := meta(0)
	switch {
	case ok:
		if m1, ok1 := meta(int64(m.pageSize)); ok1 && m1.txid > m.txid {
			m = m1 // bbolt uses the newer of the two
		}
	default:
		// The first meta page is damaged: bbolt looks for the second at
		// every page size from 1 KiB to 16 MiB, and uses it.
		for off := int64(1024); off <= 16<<20 && off < size-1024; off <<= 1 {
			if m1, ok1 := meta(off); ok1 {
				m, ok = m1, true
				break
			}
		}
		if !ok {
			return nil // no valid meta page: bbolt refuses the file itself
		}
	}
	if want := m.hwm * uint64(m.pageSize); want > uint64(size) || m.hwm > uint64(size) {
		return truncatedError{size: size, want: int64(min(want, math.MaxInt64))}
	}
	const noFreelist = ^uint64(0) // a database that does not store its freelist
	if m.freelist == noFreelist {
		return nil
	}
	if m.freelist < 2 || m.freelist >= m.hwm {
		return freelistError{m.freelist, fmt.Sprintf("outside the file's %d pages", m.hwm)}
	}
	var ph [hdr + 8]byte
	if _, err := f.ReadAt(ph[:], int64(m.freelist)*int64(m.pageSize)); err != nil {
		return freelistError{m.freelist, "unreadable: " + err.Error()}
	}
	const freelistFlag = 0x10
	flags, count, overflow := le.Uint16(ph[8:]), uint64(le.Uint16(ph[10:])), uint64(le.Uint32(ph[12:]))
	room := (overflow+1)*uint64(m.pageSize) - hdr
	if count == 0xFFFF {
		count, room = le.Uint64(ph[hdr:]), room-8
	}
	switch {
	case flags != freelistFlag:
		return freelistError{m.freelist, fmt.Sprintf("not a freelist page (flags %#x)", flags)}
	case m.freelist+overflow >= m.hwm:
		return freelistError{m.freelist, fmt.Sprintf("%d overflow pages run past the file's %d pages", overflow, m.hwm)}
	case count > room/8:
		return freelistError{m.freelist, fmt.Sprintf("says it lists %d free pages, room for %d", count, room/8)}
	}
	return nil
}

// corruptError says which file is damaged and what to do about it.
func corruptError(path string, err error) error {
	return fmt.Errorf("%s is corrupted or not a tokend database (%w); move it aside to start with an empty store", path, err)
}

// check runs bbolt's consistency check, so a damaged file is reported at
// Open instead of panicking later inside a transaction.
//
// First it visits every bucket's pages itself, faults made recoverable: a
// damaged page can name a child page far outside the file's mapping, and
// reading it faults. In bbolt's Check, which runs on a goroutine of its
// own, that fault is fatal (a crash, not the error below); here it is a
// panic, which view turns into the corruption error.
func (s *Store) check() error {
	return s.view("open", func(tx *bolt.Tx) error {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		// Every byte of every key and value is read too: an element's
		// offset or length can point outside the mapping as well, and
		// bbolt's check reads each key.
		var sum byte
		touch := func(p []byte) {
			for _, c := range p {
				sum ^= c
			}
		}
		var walk func(b *bolt.Bucket) error
		walk = func(b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				touch(k)
				touch(v)
				if v == nil {
					if c := b.Bucket(k); c != nil {
						return walk(c)
					}
				}
				return nil
			})
		}
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error { touch(name); return walk(b) }); err != nil {
			return corruptError(s.path, err)
		}
		_ = sum
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return corruptError(s.path, first)
		}
		return nil
	})
}

// migrations upgrade the layout one version at a time: migrations[n] turns
// version n into n+1. Add one whenever SchemaVersion goes up.
var migrations = map[int]func(*bolt.Tx) error{}

// initSchema records SchemaVersion in a new database, refuses a newer one
// and migrates an older one.
func (s *Store) initSchema() error {
	return s.update("open", func(tx *bolt.Tx) error {
		v, err := s.schema(tx)
		if err != nil {
			return err
		}
		if v == 0 {
			return writeSchema(tx, SchemaVersion)
		}
		if v < SchemaVersion {
			if err := migrate(tx, v, SchemaVersion, migrations); err != nil {
				return fmt.Errorf("%s: %w", s.path, err)
			}
			return writeSchema(tx, SchemaVersion)
		}
		if tx.Bucket(bucketChannels) == nil {
			_, err := tx.CreateBucket(bucketChannels)
			return err
		}
		return nil
	})
}

// schema returns the database's schema version (0: a new, empty
// database), or why this tokend cannot use it.
func (s *Store) schema(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return 0, fmt.Errorf("%s has no schema version but is not empty: not a tokend database; move it aside", s.path)
		}
		return 0, nil
	}
	raw := meta.Get(keySchema)
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%s: invalid schema version %q; move the file aside", s.path, raw)
	}
	if v > SchemaVersion {
		return 0, fmt.Errorf("%s has schema version %d, newer than this tokend supports (%d); run a newer tokend or move the file aside",
			s.path, v, SchemaVersion)
	}
	return v, nil
}

func writeSchema(tx *bolt.Tx, v int) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucketIfNotExists(bucketChannels); err != nil {
		return err
	}
	return meta.Put(keySchema, []byte(strconv.Itoa(v)))
}

// migrate applies steps[from], steps[from+1], ... up to version to.
func migrate(tx *bolt.Tx, from, to int, steps map[int]func(*bolt.Tx) error) error {
	for v := from; v < to; v++ {
		step, ok := steps[v]
		if !ok {
			return fmt.Errorf("no migration from schema version %d to %d", v, v+1)
		}
		if err := step(tx); err != nil {
			return fmt.Errorf("migrate schema version %d to %d: %w", v, v+1, err)
		}
	}
	return nil
}

// Close releases the database and its lock. Closing twice is harmless.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Put stores recs (inserting or replacing by channel and ID) in one
// transaction, all or none, durable when Put returns. Concurrent Puts share
// a commit. Every record needs a ChannelID and an ID; they may belong to
// different channels.
func (s *Store) Put(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := validateAll(recs); err != nil {
		return err
	}
	vals := make([][]byte, len(recs))
	for i, r := range recs {
		v, err := encodeRecord(r)
		if err != nil {
			return fmt.Errorf("store: put: record %d: %w", i, err)
		}
		vals[i] = v
	}
	// Batch may run this more than once (in a shared transaction that is
	// rolled back, then alone): it only sets values, so that is harmless.
	return s.batch("put", func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketChannels)
		for i, r := range recs {
			b, err := root.CreateBucketIfNotExists([]byte(r.ChannelID))
			if err != nil {
				return fmt.Errorf("channel %s: %w", r.ChannelID, err)
			}
			if err := b.Put([]byte(r.ID), vals[i]); err != nil {
				return fmt.Errorf("channel %s record %s: %w", r.ChannelID, r.ID, err)
			}
		}
		return nil
	})
}

// Delete removes the records ids of channelID in one transaction; IDs that
// do not exist are ignored. A channel left without records disappears.
func (s *Store) Delete(channelID string, ids ...string) error {
	if err := validateDelete(channelID, ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return s.batch("delete", func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketChannels)
		b := root.Bucket([]byte(channelID))
		if b == nil {
			return nil
		}
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return fmt.Errorf("channel %s record %s: %w", channelID, id, err)
			}
		}
		if k, _ := b.Cursor().First(); k == nil {
			return root.DeleteBucket([]byte(channelID))
		}
		return nil
	})
}

// DeleteChannel removes every record of channelID; an unknown channel is
// not an error.
func (s *Store) DeleteChannel(channelID string) error {
	if channelID == "" {
		return errors.New("store: delete channel: empty channel id")
	}
	return s.batch("delete channel", func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketChannels).DeleteBucket([]byte(channelID))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// Get returns one record, or an error wrapping ErrNotFound.
func (s *Store) Get(channelID, id string) (Record, error) {
	var rec Record
	err := s.view("get", func(tx *bolt.Tx) error {
		var v []byte
		if b := tx.Bucket(bucketChannels).Bucket([]byte(channelID)); b != nil {
			v = b.Get([]byte(id))
		}
		if v == nil {
			return notFound(channelID, id)
		}
		var err error
		rec, err = s.decode(channelID, id, v)
		return err
	})
	return rec, err
}

func notFound(channelID, id string) error {
	return fmt.Errorf("channel %s record %s: %w", channelID, id, ErrNotFound)
}

// Channel returns the records of channelID sorted by IssuedAt, then ID; a
// channel without records gives nil and no error.
func (s *Store) Channel(channelID string) ([]Record, error) {
	var recs []Record
	var damaged []string
	err := s.view("channel", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChannels).Bucket([]byte(channelID))
		if b == nil {
			return nil
		}
		recs, damaged = s.readChannel(channelID, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return recs, s.damagedError(damaged)
}

// All returns every channel's records (each sorted as Channel sorts them),
// read in one transaction. Channels without records are absent. Records
// that do not decode (a damaged value) are left out and named in a
// *DamagedError, returned with the rest.
func (s *Store) All() (map[string][]Record, error) {
	out := map[string][]Record{}
	var damaged []string
	err := s.view("all", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChannels).ForEachBucket(func(k []byte) error {
			ch := string(k)
			recs, bad := s.readChannel(ch, tx.Bucket(bucketChannels).Bucket(k))
			damaged = append(damaged, bad...)
			if len(recs) > 0 {
				out[ch] = recs
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, s.damagedError(damaged)
}

// DamagedError names the records of a store that do not decode: their
// values are damaged (a flipped bit, a hand edit). Reads leave them out
// and return the others with this error; the records stay in the file.
type DamagedError struct {
	Path    string
	Records []string // "channel CHANNEL record ID: what is wrong"
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s holds %d damaged record(s), left out: %s", e.Path, len(e.Records), strings.Join(e.Records, "; "))
}

func (s *Store) damagedError(records []string) error {
	if len(records) == 0 {
		return nil
	}
	return &DamagedError{Path: s.path, Records: records}
}

// readChannel decodes b's records; those that do not decode are left out
// and described in damaged.
func (s *Store) readChannel(channelID string, b *bolt.Bucket) (recs []Record, damaged []string) {
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil { // a nested bucket: not ours
			return nil
		}
		r, err := decodeAt(channelID, string(k), v)
		if err != nil {
			// The error names a character and a field, never the value.
			damaged = append(damaged, fmt.Sprintf("channel %q record %q: %v", channelID, k, err))
			return nil
		}
		recs = append(recs, r)
		return nil
	})
	sortRecords(recs)
	return recs, damaged
}

func (s *Store) decode(channelID, id string, v []byte) (Record, error) {
	r, err := decodeAt(channelID, id, v)
	if err != nil {
		return Record{}, fmt.Errorf("decode channel %s record %s in %s: %w", channelID, id, s.path, err)
	}
	return r, nil
}

// decodeAt decodes the record stored under channelID and id.
func decodeAt(channelID, id string, v []byte) (Record, error) {
	r, err := decodeRecord(v)
	if err != nil {
		return Record{}, err
	}
	// The bucket and key are authoritative.
	r.ChannelID, r.ID = channelID, id
	return r, nil
}

// view runs fn in a read transaction, with bbolt's errors and panics
// (it panics on corrupted pages) turned into store errors.
func (s *Store) view(op string, fn func(*bolt.Tx) error) (err error) {
	defer s.recoverCorrupt(op, &err)
	return s.wrap(op, s.db.View(fn))
}

// update runs fn in its own write transaction.
func (s *Store) update(op string, fn func(*bolt.Tx) error) (err error) {
	defer s.recoverCorrupt(op, &err)
	return s.wrap(op, s.db.Update(fn))
}

// batch runs fn in a write transaction: its own, at once, when no other
// write is under way; otherwise one shared with the writes that come within
// batchDelay (bbolt's Batch). A lone rotation does not wait, and a burst
// of them (a start, a storm) goes out in a few large commits.
func (s *Store) batch(op string, fn func(*bolt.Tx) error) (err error) {
	defer s.recoverCorrupt(op, &err)
	defer s.writers.Add(-1)
	if s.writers.Add(1) == 1 {
		return s.wrap(op, s.db.Update(fn))
	}
	return s.wrap(op, s.db.Batch(fn))
}

func (s *Store) recoverCorrupt(op string, err *error) {
	if v := recover(); v != nil {
		*err = fmt.Errorf("store: %s: %w", op, corruptError(s.path, panicError{v}))
	}
}

// wrap prefixes err with the package and operation, and maps bbolt's
// "database not open" to ErrClosed.
func (s *Store) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
