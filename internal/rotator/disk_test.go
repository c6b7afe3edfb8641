//go:build linux

package rotator

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readOnlyDir makes dir read-only for everyone, root included, with a
// read-only bind mount of dir onto itself, and returns the function that
// makes it writable again. Without the right to mount, a non-root user gets
// chmod 0500 instead (which root would ignore); root is skipped.
func readOnlyDir(t *testing.T, dir string) (undo func() error) {
	t.Helper()
	err := syscall.Mount(dir, dir, "", syscall.MS_BIND, "")
	if err == nil {
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
		err = syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, "")
		if err != nil {
			t.Fatalf("remount %s read-only: %v", dir, err)
		}
		return func() error { return syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT, "") }
	}
	if os.Geteuid() == 0 {
		t.Skipf("cannot bind-mount %s read-only (%v), and root ignores permission bits", dir, err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	return func() error { return os.Chmod(dir, 0o755) }
}

// diskFault is one row of TestOutputDiskFaults: a way the first channel's
// output location can be broken, what the write error says, and the fix.
type diskFault struct {
	name    string
	inject  func(t *testing.T, dir string) (fix func() error)
	errSays string
}

func diskFaultRows() []diskFault {
	return []diskFault{
		{
			name:    "output directory missing",
			errSays: "does not exist",
			inject: func(t *testing.T, dir string) func() error {
				return func() error { return os.Mkdir(dir, 0o755) }
			},
		},
		{
			name:    "output directory read-only",
			errSays: "read-only file system",
			inject: func(t *testing.T, dir string) func() error {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				return readOnlyDir(t, dir)
			},
		},
		{
			name:    "output directory is a regular file",
			errSays: "is not a directory",
			inject: func(t *testing.T, dir string) func() error {
				if err := os.WriteFile(dir, []byte("not a directory\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return func() error {
					return errors.Join(os.Remove(dir), os.Mkdir(dir, 0o755))
				}
			},
		},
		{
			name:    "output path is a directory",
			errSays: "refusing to replace a directory",
			inject: func(t *testing.T, dir string) func() error {
				if err := os.MkdirAll(filepath.Join(dir, "bot-1.token"), 0o755); err != nil {
					t.Fatal(err)
				}
				return func() error { return os.Remove(filepath.Join(dir, "bot-1.token")) }
			},
		},
	}
}

// TestOutputDiskFaults breaks the first of three channels' output location
// from the start, through the rotation of every channel, then fixes it.
func TestOutputDiskFaults(t *testing.T) {
	for _, tt := range diskFaultRows() {
		t.Run(tt.name, func(t *testing.T) {
			e := newFaultEnv(t, 3, 2*time.Second, 7, func(_ int, ch *Channel) {
				ch.TokenTTL, ch.RotateBefore, ch.Jitter = 24*time.Hour, 10*time.Hour, 0
			})
			dir := filepath.Join(e.dir, "shared")
			e.chans[0].Outputs = []Output{
				{Path: filepath.Join(dir, "bot-1.token"), Format: "raw", Mode: 0o640},
				{Path: filepath.Join(dir, "bot-1.json"), Format: "json", Mode: 0o640},
			}
			fix := tt.inject(t, dir)
			broken, others := e.chans[0], e.chans[1:]

			e.start()
			first := make([]string, len(e.chans))
			for i := range e.chans {
				first[i] = e.current(i)
				if first[i] == "" {
					t.Fatalf("%s holds no token", e.chans[i].Name)
				}
			}
			if e.rot.Ready() {
				t.Error("ready although bot-1's outputs cannot be written")
			}
			// Through the rotation of every channel (at 14h).
			var attempts []time.Time
			seen := 0
			e.advance(15*time.Hour, func() {
				for i, ch := range others {
					if got := e.readFile(ch.Outputs[0].Path); got != e.current(i+1) {
						t.Fatalf("%s's output is not its current token at %s", ch.Name, e.clock.Now())
					}
				}
				if tok, st, _ := e.rot.Token(broken.ID); tok.AccessToken == "" || !st.Valid {
					t.Fatalf("bot-1 serves no token at %s", e.clock.Now())
				}
				if n := e.logs.FilterMessage("output write failed").Len(); n > seen {
					attempts = append(attempts, e.clock.Now())
					seen = n
				}
			})
			for i, ch := range others {
				if e.current(i+1) == first[i+1] {
					t.Errorf("%s did not rotate while bot-1's disk was broken", ch.Name)
				}
			}
			if e.current(0) == first[0] {
				t.Error("bot-1 did not rotate at LINE while its outputs were broken")
			}

			// The failure is logged with the path, counted, and retried with
			// the capped backoff.
			logs := e.logs.FilterMessage("output write failed").All()
			if len(logs) < 2 {
				t.Fatalf("%d \"output write failed\" log lines, want retries", len(logs))
			}
			for _, l := range logs {
				f := l.ContextMap()
				msg, _ := f["error"].(string)
				if f["channel"] != broken.Name || !strings.Contains(msg, dir) || !strings.Contains(msg, tt.errSays) {
					t.Fatalf("log line channel=%v error=%q; want bot-1, the path %s and %q", f["channel"], msg, dir, tt.errSays)
				}
			}
			errs := series(t, e.m.Registry(), "tokend_output_errors_total", nil)
			if want := float64(len(logs)); errs["channel=bot-1"] != want || errs["channel=bot-2"] != 0 || errs["channel=bot-3"] != 0 {
				t.Errorf("tokend_output_errors_total = %v, want %v for bot-1 and 0 for the others", errs, want)
			}
			fewest, most := attemptRange(DefaultRetry, t0, t0.Add(15*time.Hour), false, 0)
			if n := len(attempts); n != len(logs) || n < fewest || n > most+2 {
				// +2: the rotation at 14h adds an attempt and restarts the schedule.
				t.Errorf("%d write attempts (%d logged) in 15h; the policy allows %d..%d", n, len(logs), fewest, most+2)
			}
			for k := 1; k < len(attempts); k++ {
				if gap := attempts[k].Sub(attempts[k-1]); gap > DefaultRetry.Max {
					t.Errorf("output retry %d came %s after the previous one; the cap is %s", k, gap, DefaultRetry.Max)
				}
			}
			t.Logf("%s: %d failed writes in 15h (policy allows %d..%d)", tt.name, len(logs), fewest, most+2)

			// Fixed: the current token is written at the next retry.
			if err := fix(); err != nil {
				t.Fatal(err)
			}
			fixedAt := e.clock.Now()
			var writtenAt time.Time
			e.advance(DefaultRetry.Max+time.Second, func() {
				if b, err := os.ReadFile(broken.Outputs[0].Path); writtenAt.IsZero() && err == nil && string(b) == e.current(0) {
					writtenAt = e.clock.Now()
				}
			})
			if writtenAt.IsZero() {
				t.Fatalf("bot-1's output not written within %s of the fix", DefaultRetry.Max)
			}
			var js struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.Unmarshal([]byte(e.readFile(broken.Outputs[1].Path)), &js); err != nil || js.AccessToken != e.current(0) {
				t.Fatalf("bot-1's json output not written after the fix: %v", err)
			}
			if !e.rot.Ready() {
				t.Error("not ready once every output is written")
			}
			t.Logf("%s: written %s after the fix", tt.name, writtenAt.Sub(fixedAt))
		})
	}
}

// TestOutputFaultKeepsFileTokenUnrevoked: when a rotation cannot be
// published, the file still holds the superseded token and bots reading it
// keep using it. Revoking that token revoke_after later would cut them off
// while tokend holds a valid token it merely could not write: revocation
// must wait until the new token is published.
func TestOutputFaultKeepsFileTokenUnrevoked(t *testing.T) {
	e := newFaultEnv(t, 2, 2*time.Second, 11, func(_ int, ch *Channel) {
		ch.Jitter, ch.ReconcileEvery = 0, 6*time.Hour
	})
	dir := filepath.Join(e.dir, "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.chans[0].Outputs = []Output{{Path: filepath.Join(dir, "bot-1.token"), Format: "raw", Mode: 0o640}}
	ch := e.chans[0]
	e.start()
	old := e.current(0)
	_, st, _ := e.rot.Token(ch.ID)

	// The shared volume turns read-only the day before rotation (day 20)
	// and stays so until well past revoke_after (24h) after it.
	e.advance(st.NextRotation.Sub(e.clock.Now())-day, nil)
	fix := readOnlyDir(t, dir)
	e.advance(day+ch.RevokeAfter+time.Hour, nil)
	if e.current(0) == old {
		t.Fatal("no rotation")
	}
	if got := e.current(1); got == "" || e.readFile(e.chans[1].Outputs[0].Path) != got || !e.sim.IsValid(got) {
		t.Fatal("bot-2 does not publish a valid token")
	}
	if got := e.readFile(ch.Outputs[0].Path); got != old {
		t.Fatal("the read-only output changed")
	}
	if !e.sim.IsValid(old) {
		t.Errorf("the superseded token was revoked while bot-1's only output still holds it (the new token was never written): bots reading the file are cut off %s after the rotation", ch.RevokeAfter)
	}

	// Fixed: the new token is written, and the old one is revoked after that.
	if err := fix(); err != nil {
		t.Fatal(err)
	}
	fixed := e.clock.Now()
	e.advance(DefaultRetry.Max+time.Second, nil)
	if got := e.readFile(ch.Outputs[0].Path); got != e.current(0) {
		t.Fatal("new token not written after the fix")
	}
	// Bots get the whole revoke_after with the new token in the file,
	// counted from when it was written, not from the rotation.
	e.advance(fixed.Add(ch.RevokeAfter-time.Second).Sub(e.clock.Now()), nil)
	if !e.sim.IsValid(old) {
		t.Errorf("the superseded token was revoked less than revoke_after (%s) after the new one was written", ch.RevokeAfter)
	}
	e.advance(time.Hour, nil)
	if e.sim.IsValid(old) {
		t.Error("superseded token never revoked once the new one was published")
	}
}
