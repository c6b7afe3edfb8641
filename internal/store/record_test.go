package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func TestRecordID(t *testing.T) {
	sum := sha256.Sum256([]byte("tok"))
	tests := []struct {
		keyID, token, want string
	}{
		{"kid-1", "tok", "kid-1"},
		{"", "tok", "sha256:" + hex.EncodeToString(sum[:])[:16]},
		{"", "", "sha256:e3b0c44298fc1c14"},
	}
	for _, tt := range tests {
		if got := RecordID(tt.keyID, tt.token); got != tt.want {
			t.Errorf("RecordID(%q, %q) = %q; want %q", tt.keyID, tt.token, got, tt.want)
		}
	}
	if got := RecordID("", "tok"); len(got) != len("sha256:")+16 || strings.Contains(got, "tok") {
		t.Errorf("RecordID = %q", got)
	}
}

func TestRecordRedacted(t *testing.T) {
	r := fullRecord()
	want := "record{channel=1657000000 kind=v2.1 id=536e453c-aa93-4449-8e90-add2608783c6 state=revoked " +
		"issued_at=2025-03-04T05:05:06Z expires_at=2025-04-03T05:05:06Z access_token=<redacted>}"
	if got := r.GoString(); got != want {
		t.Errorf("GoString() = %q", got)
	}
	if got := r.String(); got != want {
		t.Errorf("String() = %q\nwant       %q", got, want)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%[1]v %[1]d"} {
		for _, v := range []any{r, &r, []Record{r}, map[string]Record{"a": r}, struct{ R Record }{r}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, r.AccessToken) || strings.Contains(out, "secret-token") ||
				strings.Contains(strings.ToLower(out), strings.ToLower(hex.EncodeToString([]byte("secret")))) {
				t.Errorf("Sprintf(%q, %T) leaks the token: %s", verb, v, out)
			}
		}
	}
	if got := (Record{ChannelID: "c"}).String(); !strings.Contains(got, "access_token= ") && !strings.HasSuffix(got, "access_token=}") {
		t.Errorf("empty token printed as %q", got)
	}
}

// TestDiskRecordHooksDue: hooks_due is on disk only while set, so a record
// without it (every record before it existed) reads as nothing due.
func TestDiskRecordHooksDue(t *testing.T) {
	for _, due := range []bool{false, true} {
		data, err := encodeRecord(Record{ChannelID: "1", ID: "a", State: StateCurrent, HooksDue: due})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(data), `"hooks_due":true`); got != due {
			t.Errorf("HooksDue %t encoded as %s", due, data)
		}
		if !due && strings.Contains(string(data), "hooks_due") {
			t.Errorf("HooksDue false encoded as %s", data)
		}
		r, err := decodeRecord(data)
		if err != nil || r.HooksDue != due {
			t.Errorf("decode(%s) = %v, %v", data, r.HooksDue, err)
		}
	}
	r, err := decodeRecord([]byte(`{"channel_id":"1","id":"a","access_token":"t","state":"current"}`))
	if err != nil || r.HooksDue {
		t.Errorf("a record without hooks_due: HooksDue %t, %v", r.HooksDue, err)
	}
}
