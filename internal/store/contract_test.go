package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// storeAPI is what both implementations offer; testStoreContract holds them
// to the same behaviour.
type storeAPI interface {
	Put(recs ...Record) error
	Delete(channelID string, ids ...string) error
	DeleteChannel(channelID string) error
	Get(channelID, id string) (Record, error)
	Channel(channelID string) ([]Record, error)
	All() (map[string][]Record, error)
	Close() error
}

var (
	_ storeAPI = (*Store)(nil)
	_ storeAPI = (*Memory)(nil)
)

func TestContract(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		testStoreContract(t, func(t *testing.T) storeAPI {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
	t.Run("memory", func(t *testing.T) {
		testStoreContract(t, func(t *testing.T) storeAPI { return NewMemory() })
	})
}

// fullRecord sets every field, with times carrying nanoseconds and a
// monotonic reading in a non-UTC zone.
func fullRecord() Record {
	tz := time.FixedZone("JST", 9*3600)
	base := time.Date(2025, 3, 4, 14, 5, 6, 123456789, tz)
	return Record{
		ChannelID:    "1657000000",
		Kind:         "v2.1",
		ID:           "536e453c-aa93-4449-8e90-add2608783c6",
		AccessToken:  "eyJhbGciOiJIUzI1NiJ9.secret-token",
		TokenType:    "Bearer",
		KeyID:        "536e453c-aa93-4449-8e90-add2608783c6",
		IssuedAt:     base,
		ExpiresAt:    base.Add(30*24*time.Hour + 1),
		SupersededAt: base.Add(20 * 24 * time.Hour),
		RevokedAt:    time.Now().In(tz), // has a monotonic reading
		State:        StateRevoked,
		HooksDue:     true,
	}
}

func rec(ch, id string, issued int) Record {
	return Record{
		ChannelID:   ch,
		ID:          id,
		Kind:        "v2.1",
		AccessToken: "token-" + ch + "-" + id,
		IssuedAt:    time.Date(2025, 1, 1, 0, 0, issued, 0, time.UTC),
		ExpiresAt:   time.Date(2025, 1, 31, 0, 0, issued, 0, time.UTC),
		State:       StateCurrent,
	}
}

func ids(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func testStoreContract(t *testing.T, open func(t *testing.T) storeAPI) {
	t.Run("empty", func(t *testing.T) {
		s := open(t)
		recs, err := s.Channel("1")
		if err != nil || len(recs) != 0 {
			t.Fatalf("Channel = %v, %v; want none, nil", recs, err)
		}
		all, err := s.All()
		if err != nil || len(all) != 0 {
			t.Fatalf("All = %v, %v; want empty, nil", all, err)
		}
		_, err = s.Get("1", "a")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get err = %v; want ErrNotFound", err)
		}
		if want := "store: get: channel 1 record a: not found"; err.Error() != want {
			t.Fatalf("Get err = %q; want %q", err, want)
		}
		if err := s.Put(); err != nil {
			t.Fatalf("Put() = %v", err)
		}
	})

	t.Run("round trip of every field", func(t *testing.T) {
		s := open(t)
		in := fullRecord()
		if err := s.Put(in); err != nil {
			t.Fatal(err)
		}
		r := in
		want := Record{
			ChannelID: r.ChannelID, Kind: r.Kind, ID: r.ID,
			AccessToken: r.AccessToken, TokenType: r.TokenType, KeyID: r.KeyID,
			IssuedAt:     time.Date(2025, 3, 4, 5, 5, 6, 123456789, time.UTC),
			ExpiresAt:    time.Date(2025, 4, 3, 5, 5, 6, 123456790, time.UTC),
			SupersededAt: time.Date(2025, 3, 24, 5, 5, 6, 123456789, time.UTC),
			RevokedAt:    time.Unix(0, r.RevokedAt.UnixNano()).UTC(),
			State:        StateRevoked,
			HooksDue:     true,
		}
		got, err := s.Get(in.ChannelID, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got != want { // == also compares location and monotonic reading
			t.Fatalf("Get:\n got %#v\nwant %#v\n(times %v %v %v %v)", got, want, got.IssuedAt, got.ExpiresAt, got.SupersededAt, got.RevokedAt)
		}
		if got.AccessToken != in.AccessToken {
			t.Fatal("access token changed")
		}
		chRecs, err := s.Channel(in.ChannelID)
		if err != nil || len(chRecs) != 1 || chRecs[0] != want {
			t.Fatalf("Channel = %v, %v", chRecs, err)
		}
		all, err := s.All()
		if err != nil || len(all) != 1 || len(all[in.ChannelID]) != 1 || all[in.ChannelID][0] != want {
			t.Fatalf("All = %v, %v", all, err)
		}
	})

	t.Run("zero times and empty fields", func(t *testing.T) {
		s := open(t)
		in := Record{ChannelID: "c", ID: "i"}
		if err := s.Put(in); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get("c", "i")
		if err != nil || got != in {
			t.Fatalf("Get = %#v, %v; want %#v", got, err, in)
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		s := open(t)
		a := rec("1", "a", 1)
		if err := s.Put(a, rec("1", "b", 2)); err != nil {
			t.Fatal(err)
		}
		a.State = StateSuperseded
		a.SupersededAt = time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
		if err := s.Put(a); err != nil {
			t.Fatal(err)
		}
		recs, err := s.Channel("1")
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0] != a || recs[1].ID != "b" {
			t.Fatalf("Channel = %v", recs)
		}
	})

	t.Run("channel sorted by issued_at then id", func(t *testing.T) {
		s := open(t)
		if err := s.Put(rec("1", "z", 3), rec("1", "y", 1), rec("1", "b", 2), rec("1", "a", 2)); err != nil {
			t.Fatal(err)
		}
		recs, err := s.Channel("1")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(recs), []string{"y", "a", "b", "z"}; !slices.Equal(got, want) {
			t.Fatalf("order %v; want %v", got, want)
		}
	})

	t.Run("put spans channels, all reads everything", func(t *testing.T) {
		s := open(t)
		if err := s.Put(rec("1", "a", 1), rec("2", "b", 1), rec("2", "c", 0)); err != nil {
			t.Fatal(err)
		}
		all, err := s.All()
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || !slices.Equal(ids(all["1"]), []string{"a"}) || !slices.Equal(ids(all["2"]), []string{"c", "b"}) {
			t.Fatalf("All = %v", all)
		}
	})

	t.Run("invalid put stores nothing", func(t *testing.T) {
		tests := []struct {
			name string
			recs []Record
			want string
		}{
			{"empty channel", []Record{rec("1", "a", 1), {ID: "x"}}, "store: put: record 1: empty channel id"},
			{"empty id", []Record{{ChannelID: "1"}}, "store: put: record 0: channel 1: empty record id"},
			{"long id", []Record{{ChannelID: "1", ID: string(make([]byte, 32769))}}, "store: put: record 0: channel 1: record id longer than 32768 bytes"},
			{"long channel", []Record{{ChannelID: string(make([]byte, 32769)), ID: "a"}}, "store: put: record 0: channel id longer than 32768 bytes"},
		}
		s := open(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := s.Put(tt.recs...)
				if err == nil || err.Error() != tt.want {
					t.Fatalf("Put err = %v; want %q", err, tt.want)
				}
				all, err := s.All()
				if err != nil || len(all) != 0 {
					t.Fatalf("All after failed Put = %v, %v", all, err)
				}
			})
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := open(t)
		if err := s.Put(rec("1", "a", 1), rec("1", "b", 2), rec("1", "c", 3), rec("2", "a", 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete("1", "a", "c", "missing"); err != nil {
			t.Fatal(err)
		}
		recs, err := s.Channel("1")
		if err != nil || !slices.Equal(ids(recs), []string{"b"}) {
			t.Fatalf("Channel after Delete = %v, %v", ids(recs), err)
		}
		if _, err := s.Get("1", "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get deleted = %v; want ErrNotFound", err)
		}
		if err := s.Delete("unknown", "a"); err != nil {
			t.Fatalf("Delete on unknown channel = %v", err)
		}
		if err := s.Delete("1"); err != nil {
			t.Fatalf("Delete without ids = %v", err)
		}
		// Deleting the last record drops the channel.
		if err := s.Delete("1", "b"); err != nil {
			t.Fatal(err)
		}
		all, err := s.All()
		if err != nil || len(all) != 1 || len(all["2"]) != 1 {
			t.Fatalf("All = %v, %v; want only channel 2", all, err)
		}
		for _, tt := range []struct {
			ch   string
			ids  []string
			want string
		}{
			{"", []string{"a"}, "store: delete: empty channel id"},
			{"1", []string{"a", ""}, "store: delete: channel 1: id 1 is empty"},
		} {
			if err := s.Delete(tt.ch, tt.ids...); err == nil || err.Error() != tt.want {
				t.Errorf("Delete(%q, %q) = %v; want %q", tt.ch, tt.ids, err, tt.want)
			}
		}
	})

	t.Run("delete channel", func(t *testing.T) {
		s := open(t)
		if err := s.Put(rec("1", "a", 1), rec("1", "b", 2), rec("2", "a", 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteChannel("1"); err != nil {
			t.Fatal(err)
		}
		if recs, err := s.Channel("1"); err != nil || len(recs) != 0 {
			t.Fatalf("Channel after DeleteChannel = %v, %v", recs, err)
		}
		if recs, err := s.Channel("2"); err != nil || len(recs) != 1 {
			t.Fatalf("other channel = %v, %v", recs, err)
		}
		if err := s.DeleteChannel("1"); err != nil {
			t.Fatalf("DeleteChannel twice = %v", err)
		}
		if err := s.DeleteChannel(""); err == nil || err.Error() != "store: delete channel: empty channel id" {
			t.Fatalf("DeleteChannel(\"\") = %v", err)
		}
		// The channel can be used again.
		if err := s.Put(rec("1", "c", 1)); err != nil {
			t.Fatal(err)
		}
		if recs, err := s.Channel("1"); err != nil || !slices.Equal(ids(recs), []string{"c"}) {
			t.Fatalf("Channel = %v, %v", recs, err)
		}
	})

	t.Run("results are copies", func(t *testing.T) {
		s := open(t)
		in := rec("1", "a", 1)
		if err := s.Put(in); err != nil {
			t.Fatal(err)
		}
		recs, _ := s.Channel("1")
		recs[0].AccessToken = "changed"
		all, _ := s.All()
		all["1"][0].State = StateRevoked
		got, _ := s.Get("1", "a")
		got.KeyID = "changed"
		if again, err := s.Get("1", "a"); err != nil || again != in {
			t.Fatalf("Get = %#v, %v; want %#v", again, err, in)
		}
	})

	t.Run("concurrent puts", func(t *testing.T) {
		s := open(t)
		const n = 64
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				errs <- s.Put(rec(fmt.Sprint(i%4), fmt.Sprint(i), i))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.All()
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, recs := range all {
			total += len(recs)
		}
		if total != n {
			t.Fatalf("stored %d records; want %d", total, n)
		}
	})

	t.Run("closed", func(t *testing.T) {
		s := open(t)
		if err := s.Put(rec("1", "a", 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		_, errGet := s.Get("1", "a")
		_, errChannel := s.Channel("1")
		_, errAll := s.All()
		for _, tt := range []struct {
			err  error
			want string
		}{
			{s.Put(rec("1", "b", 1)), "store: put: store is closed"},
			{s.Delete("1", "a"), "store: delete: store is closed"},
			{s.DeleteChannel("1"), "store: delete channel: store is closed"},
			{errGet, "store: get: store is closed"},
			{errChannel, "store: channel: store is closed"},
			{errAll, "store: all: store is closed"},
		} {
			if !errors.Is(tt.err, ErrClosed) || tt.err.Error() != tt.want {
				t.Errorf("err = %v; want %q wrapping ErrClosed", tt.err, tt.want)
			}
		}
	})
}
