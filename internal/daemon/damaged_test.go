package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/store"
)

// TestDamagedRecordLeftOut: a store record whose value no longer decodes
// (a flipped byte) is logged and left out; every other channel starts
// from its records as before, and the damaged one's channel gets a new
// token. It used to stop the start of every channel.
func TestDamagedRecordLeftOut(t *testing.T) {
	dir := t.TempDir()
	keyPath, sim, srv := simFor(t, dir, "1657000001", "1657000002")
	out := func(n int) string { return filepath.Join(dir, fmt.Sprintf("bot%d.token", n)) }
	cfgPath, state := writeChannelsConfig(t, dir, srv.URL, keyPath, []string{"1657000001", "1657000002"}, []string{out(1), out(2)})
	once := func() *observer.ObservedLogs {
		t.Helper()
		d, logs := newObserved(t, cfgPath)
		defer d.Close()
		if err := d.Once(context.Background()); err != nil {
			t.Fatalf("run -once: %v", err)
		}
		return logs
	}
	read := func(n int) string {
		b, err := os.ReadFile(out(n))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	once()
	tok1, tok2 := read(1), read(2)

	// Damage every record of channel 1, as one flipped byte would.
	db, err := bolt.Open(filepath.Join(state, store.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("channels")).Bucket([]byte("1657000001"))
		var keys [][]byte
		_ = b.ForEach(func(k, _ []byte) error { keys = append(keys, k); return nil })
		for _, k := range keys {
			v := append([]byte(nil), b.Get(k)...)
			v[0] = '['
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	issued := sim.Count(linefake.EndpointIssueV21)
	logs := once()
	if n := sim.Count(linefake.EndpointIssueV21) - issued; n != 1 {
		t.Errorf("%d issues after the damage; want 1 (channel 1's)", n)
	}
	if read(2) != tok2 {
		t.Error("channel 2's token changed: its records were not used")
	}
	if read(1) == tok1 {
		t.Error("channel 1 kept a token whose record is damaged")
	}
	logged := logs.FilterMessage("token records damaged; left out").All()
	if len(logged) != 1 {
		t.Fatalf("%d damage logs; want 1", len(logged))
	}
	msg := fmt.Sprint(logged[0].ContextMap())
	if !strings.Contains(msg, `channel "1657000001" record`) || strings.Contains(msg, tok1) {
		t.Errorf("damage logged as %s", msg)
	}
}
