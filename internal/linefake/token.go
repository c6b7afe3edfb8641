package linefake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// TokenState is what the simulator knows about one issued token.
// Formatting it with fmt redacts AccessToken.
type TokenState struct {
	Kind        string // KindV21, KindShortLived or KindStateless
	KeyID       string // LINE key_id (v2.1 only)
	AccessToken string
	IssuedAt    time.Time
	ExpiresAt   time.Time
	Revoked     bool
}

// String describes the token without its access token.
func (t TokenState) String() string {
	return fmt.Sprintf("%s token key_id=%q issued=%s expires=%s revoked=%t access_token=<redacted>",
		t.Kind, t.KeyID, t.IssuedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339), t.Revoked)
}

// GoString is String: the access token is never printed.
func (t TokenState) GoString() string { return "linefake.TokenState{" + t.String() + "}" }

// Format makes every fmt verb print the redacted form.
func (t TokenState) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(t.GoString()))
		return
	}
	_, _ = f.Write([]byte(t.String()))
}

// token is the stored state of one token.
type token struct {
	TokenState
	channelID string
	seq       uint64 // issue order across the server
}

func (t *token) validAt(now time.Time) bool {
	return !t.Revoked && now.Before(t.ExpiresAt)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

var b64 = base64.RawURLEncoding

// newKeyID returns a key_id shaped like LINE's: 16 random bytes, base64url.
func newKeyID() string { return b64.EncodeToString(randomBytes(16)) }

// jwsHeader is the fixed header of the simulator's JWS-shaped tokens.
var jwsHeader = b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// jwsPayload is the body of a JWS-shaped token. Only stateless tokens are
// read back (they are not stored); v2.1 tokens are found by lookup.
type jwsPayload struct {
	Version   string `json:"ver"`
	ChannelID string `json:"cid,omitempty"`
	ID        string `json:"jti"`
	IssuedAt  int64  `json:"iat"`
	ExpiresNS int64  `json:"exp_ns,omitempty"` // stateless only: exact expiry, Unix ns
}

// newJWS returns a random, HMAC-signed JWS-shaped token.
func (s *Server) newJWS(p jwsPayload) string {
	p.ID = b64.EncodeToString(randomBytes(24))
	body, _ := json.Marshal(p) // a struct of strings and ints always encodes
	signing := jwsHeader + "." + b64.EncodeToString(body)
	return signing + "." + b64.EncodeToString(s.mac(signing))
}

func (s *Server) mac(signing string) []byte {
	m := hmac.New(sha256.New, s.hmacKey)
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// newShortLivedToken returns an opaque token shaped like LINE's: 128 random
// bytes in standard base64 (172 characters, may hold '+', '/' and '=').
func newShortLivedToken() string {
	return base64.StdEncoding.EncodeToString(randomBytes(128))
}

// isJWS reports whether tok has three non-empty base64url segments.
func isJWS(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		if _, err := b64.DecodeString(p); err != nil {
			return false
		}
	}
	return true
}

// stateless decodes a stateless token the server issued; ok is false for
// anything else (including v2.1 tokens and forgeries).
func (s *Server) stateless(tok string) (channelID string, expiresAt time.Time, ok bool) {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || !isJWS(tok) {
		return "", time.Time{}, false
	}
	sig, err := b64.DecodeString(tok[i+1:])
	if err != nil || !hmac.Equal(sig, s.mac(tok[:i])) {
		return "", time.Time{}, false
	}
	body, err := b64.DecodeString(tok[strings.IndexByte(tok, '.')+1 : i])
	if err != nil {
		return "", time.Time{}, false
	}
	var p jwsPayload
	if err := json.Unmarshal(body, &p); err != nil || p.Version != "3" {
		return "", time.Time{}, false
	}
	return p.ChannelID, time.Unix(0, p.ExpiresNS), true
}

// lookupLocked finds any token the server issued, with its channel. A
// stateless token comes back as a fresh *token that is not stored.
func (s *Server) lookupLocked(tok string) (*token, bool) {
	if t, ok := s.byToken[tok]; ok {
		return t, true
	}
	if ch, exp, ok := s.stateless(tok); ok {
		return &token{
			TokenState: TokenState{Kind: KindStateless, AccessToken: tok, IssuedAt: exp.Add(-StatelessTTL), ExpiresAt: exp},
			channelID:  ch,
		}, true
	}
	return nil, false
}

// issueLocked creates and stores a v2.1 or short-lived token.
func (s *Server) issueLocked(ch *channel, kind string, now time.Time, ttl time.Duration) *token {
	s.seq++
	t := &token{
		TokenState: TokenState{Kind: kind, IssuedAt: now, ExpiresAt: now.Add(ttl)},
		channelID:  ch.id,
		seq:        s.seq,
	}
	switch kind {
	case KindV21:
		t.KeyID = newKeyID()
		t.AccessToken = s.newJWS(jwsPayload{Version: "2.1", IssuedAt: now.Unix()})
	default:
		t.AccessToken = newShortLivedToken()
	}
	ch.history = append(ch.history, t)
	s.byToken[t.AccessToken] = t
	return t
}

// issueStatelessLocked creates a stateless token and remembers it among the
// channel's most recent ones.
func (s *Server) issueStatelessLocked(ch *channel, now time.Time) *token {
	s.seq++
	exp := now.Add(StatelessTTL)
	t := &token{
		TokenState: TokenState{
			Kind:        KindStateless,
			AccessToken: s.newJWS(jwsPayload{Version: "3", ChannelID: ch.id, IssuedAt: now.Unix(), ExpiresNS: exp.UnixNano()}),
			IssuedAt:    now,
			ExpiresAt:   exp,
		},
		channelID: ch.id,
		seq:       s.seq,
	}
	kept := ch.stateless[:0]
	for _, old := range ch.stateless {
		if old.validAt(now) {
			kept = append(kept, old)
		}
	}
	if len(kept) >= statelessKept {
		kept = append(kept[:0], kept[len(kept)-statelessKept+1:]...)
	}
	clear(ch.stateless[len(kept):])
	ch.stateless = append(kept, t)
	return t
}

// validLocked returns the channel's valid tokens of a kind, oldest first.
func (ch *channel) validLocked(kind string, now time.Time) []*token {
	var out []*token
	for _, t := range ch.history {
		if t.Kind == kind && t.validAt(now) {
			out = append(out, t)
		}
	}
	return out
}

// Tokens returns every v2.1 and short-lived token issued for the channel,
// and its most recent stateless tokens, in issue order.
func (s *Server) Tokens(channelID string) []TokenState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[channelID]
	if ch == nil {
		return nil
	}
	all := make([]*token, 0, len(ch.history)+len(ch.stateless))
	all = append(all, ch.history...)
	all = append(all, ch.stateless...)
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	out := make([]TokenState, len(all))
	for i, t := range all {
		out[i] = t.TokenState
	}
	return out
}

// ValidKeyIDs returns the key IDs of the channel's valid (not expired, not
// revoked) v2.1 tokens, oldest first.
func (s *Server) ValidKeyIDs(channelID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.validKeyIDsLocked(channelID)
}

func (s *Server) validKeyIDsLocked(channelID string) []string {
	out := []string{}
	ch := s.channels[channelID]
	if ch == nil {
		return out
	}
	for _, t := range ch.validLocked(KindV21, s.clock.Now()) {
		out = append(out, t.KeyID)
	}
	return out
}

// IsValid reports whether accessToken is a token the simulator issued that
// is neither expired nor revoked.
func (s *Server) IsValid(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.lookupLocked(accessToken)
	return ok && t.validAt(s.clock.Now())
}

// RevokeKeyID revokes the channel's v2.1 token with that key ID, as someone
// using the LINE console behind tokend's back would. It reports whether a
// valid token was revoked.
func (s *Server) RevokeKeyID(channelID, keyID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[channelID]
	if ch == nil {
		return false
	}
	now := s.clock.Now()
	for _, t := range ch.history {
		if t.Kind == KindV21 && t.KeyID == keyID && t.validAt(now) {
			t.Revoked = true
			return true
		}
	}
	return false
}

// MaxValid returns the most valid v2.1 tokens the channel ever held at once.
func (s *Server) MaxValid(channelID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := s.channels[channelID]; ch != nil {
		return ch.maxValid
	}
	return 0
}
