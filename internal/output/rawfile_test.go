package output

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRawTemp: the temporary file is new, 0600 whatever the umask, named
// by the pattern, and behaves as WriteFile needs; a second Close fails.
func TestRawTemp(t *testing.T) {
	dir := t.TempDir()
	seen := map[string]bool{}
	for range 20 {
		f, err := createRawTemp(dir, ".tok.tmp-*")
		if err != nil {
			t.Fatal(err)
		}
		name := f.Name()
		if filepath.Dir(name) != dir || !strings.HasPrefix(filepath.Base(name), ".tok.tmp-") || seen[name] {
			t.Fatalf("name %q (seen before: %v)", name, seen[name])
		}
		seen[name] = true
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("new temp file: %v, %v; want mode 0600", fi, err)
		}
		if n, err := f.Write([]byte("new-token")); n != 9 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if err := f.Chmod(0o640); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("second Close = %v; want ErrClosed", err)
		}
		checkFile(t, name, "new-token", 0o640)
	}
	if _, err := createRawTemp(filepath.Join(dir, "missing"), "x-*"); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("create in a missing directory: %v", err)
	}
}
