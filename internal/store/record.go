package store

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the on-disk layout this build writes.
const SchemaVersion = 1

// State is where a token is in its lifecycle.
type State string

// The lifecycle states of a token record.
const (
	StateCurrent    State = "current"    // the token outputs publish
	StateSuperseded State = "superseded" // replaced, waiting to be revoked or to expire
	StateRevoked    State = "revoked"    // revoked at LINE, kept until it would have expired
)

// ErrNotFound is wrapped by the error Get returns for a record that does not
// exist.
var ErrNotFound = errors.New("not found")

// ErrClosed is wrapped by the error every method returns after Close.
var ErrClosed = errors.New("store is closed")

// Record is one token tokend holds for a channel.
type Record struct {
	ChannelID string // channel the token belongs to (required)
	Kind      string // "v2.1", "stateless" or "short-lived"
	ID        string // RecordID(KeyID, AccessToken) (required)

	AccessToken string // the secret; never printed
	TokenType   string
	KeyID       string // LINE key_id, "" for kinds without one

	IssuedAt     time.Time
	ExpiresAt    time.Time
	SupersededAt time.Time // zero unless superseded or revoked
	RevokedAt    time.Time // zero unless revoked

	State State

	// HooksDue: the channel's on_rotate hooks have not yet finished for
	// this token. Set when it is recorded (if the channel has hooks),
	// cleared once they have run, so a process stopped in between leaves
	// them to the next.
	HooksDue bool
}

// RecordID is the ID of a record for a token: its LINE key ID if it has one,
// else "sha256:" and the first 16 hex digits of the token's SHA-256, which
// identifies the token without revealing it.
func RecordID(keyID, accessToken string) string {
	if keyID != "" {
		return keyID
	}
	sum := sha256.Sum256([]byte(accessToken))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// String describes the record without its access token.
func (r Record) String() string {
	tok := ""
	if r.AccessToken != "" {
		tok = "<redacted>"
	}
	return fmt.Sprintf("record{channel=%s kind=%s id=%s state=%s issued_at=%s expires_at=%s access_token=%s}",
		r.ChannelID, r.Kind, r.ID, r.State, fmtTime(r.IssuedAt), fmtTime(r.ExpiresAt), tok)
}

// GoString is String, so %#v cannot print the access token either.
func (r Record) GoString() string { return r.String() }

// Format prints String for every verb, so no verb (%d, %x, %+v...) can
// reach the access token through fmt's field-by-field struct printing.
func (r Record) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, r.String()) }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// validate checks what both implementations need to store a record.
func (r Record) validate() error {
	switch {
	case r.ChannelID == "":
		return errors.New("empty channel id")
	case r.ID == "":
		return fmt.Errorf("channel %s: empty record id", r.ChannelID)
	case len(r.ChannelID) > bolt.MaxKeySize:
		return fmt.Errorf("channel id longer than %d bytes", bolt.MaxKeySize)
	case len(r.ID) > bolt.MaxKeySize:
		return fmt.Errorf("channel %s: record id longer than %d bytes", r.ChannelID, bolt.MaxKeySize)
	}
	return nil
}

// normalize is what both implementations hand back: times in UTC without a
// monotonic reading, as a JSON round trip yields them.
func (r Record) normalize() Record {
	r.IssuedAt = normTime(r.IssuedAt)
	r.ExpiresAt = normTime(r.ExpiresAt)
	r.SupersededAt = normTime(r.SupersededAt)
	r.RevokedAt = normTime(r.RevokedAt)
	return r
}

func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

// validateAll checks recs for Put, naming the first bad one.
func validateAll(recs []Record) error {
	for i, r := range recs {
		if err := r.validate(); err != nil {
			return fmt.Errorf("store: put: record %d: %w", i, err)
		}
	}
	return nil
}

func validateDelete(channelID string, ids []string) error {
	if channelID == "" {
		return errors.New("store: delete: empty channel id")
	}
	for i, id := range ids {
		if id == "" {
			return fmt.Errorf("store: delete: channel %s: id %d is empty", channelID, i)
		}
	}
	return nil
}

// sortRecords orders a channel's records by IssuedAt, then ID.
func sortRecords(recs []Record) {
	slices.SortFunc(recs, func(a, b Record) int {
		if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// diskRecord is the on-disk JSON form of a Record. It is a separate type so
// the file format does not change by accident with the Go type (the
// conversion below fails to compile if the two drift apart) and so Record
// itself never marshals its token anywhere else.
type diskRecord struct {
	ChannelID    string    `json:"channel_id"`
	Kind         string    `json:"kind,omitempty"`
	ID           string    `json:"id"`
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	KeyID        string    `json:"key_id,omitempty"`
	IssuedAt     time.Time `json:"issued_at,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	SupersededAt time.Time `json:"superseded_at,omitzero"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	State        State     `json:"state,omitempty"`
	HooksDue     bool      `json:"hooks_due,omitempty"`
}

func encodeRecord(r Record) ([]byte, error) {
	return json.Marshal(diskRecord(r.normalize()))
}

func decodeRecord(data []byte) (Record, error) {
	var d diskRecord
	if err := json.Unmarshal(data, &d); err != nil {
		return Record{}, err
	}
	return Record(d).normalize(), nil
}
