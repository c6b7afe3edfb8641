package rotator

import (
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/tokend/tokend/internal/output"
)

// TestExpiredTokenSaid: a token that expires with no replacement (LINE
// refuses the channel's key from its rotation on) is said once, at error
// level, when it lapses; the status still names it (key ID, expiry, not
// valid) with the next try and the error, instead of looking like a channel
// that never had a token; nothing is served. The next token clears it.
func TestExpiredTokenSaid(t *testing.T) {
	h := newHarness(t, 1, rotatingAt14h)
	h.start()
	ch := h.chans[0]
	oldTok, st, _ := h.rot.Token(ch.ID)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h.sim.RegisterKey(ch.ID, testKID, &other.PublicKey) // LINE no longer knows the key
	h.advance(st.NextRotation.Sub(h.clock.Now()), nil)
	const msg = "token expired with no replacement: bots have no valid token for this channel"
	if n := h.logCount(msg); n != 0 {
		t.Fatalf("%d lines %q before the token expired", n, msg)
	}
	h.advance(oldTok.ExpiresAt.Sub(h.clock.Now())+2*time.Hour, nil)
	lines := h.logs.FilterMessage(msg).All()
	if len(lines) != 1 || lines[0].Level != zapcore.ErrorLevel || lines[0].ContextMap()["key_id"] != oldTok.KeyID {
		t.Fatalf("%d lines %q (want 1 at error level naming the key ID): %v", len(lines), msg, lines)
	}
	s := h.rot.Status()[0]
	if s.Valid || s.KeyID != oldTok.KeyID || !s.ExpiresAt.Equal(oldTok.ExpiresAt) || !s.NextRotation.After(h.clock.Now()) ||
		!strings.Contains(s.LastError, "invalid_client") {
		t.Errorf("status %+v: want the expired token's key ID and expiry, not valid, the next try ahead, the error", s)
	}
	if body, found, _ := h.rot.TokenBody(ch.Name, output.FormatRaw); !found || body != nil {
		t.Errorf("TokenBody: found %v, %d bytes; want the channel known and no token", found, len(body))
	}
	h.sim.RegisterKey(ch.ID, testKID, &sharedKey(t).PublicKey)
	h.advance(DefaultRetry.Slow*11/10+time.Second, nil)
	if s := h.rot.Status()[0]; !s.Valid || s.KeyID == oldTok.KeyID || s.LastError != "" {
		t.Errorf("status after recovery %+v: want a new valid token and no error", s)
	}
}

// TestLastErrorClearedByItsOperation: a channel's last_error is cleared
// when the operation that failed goes through, and not by another's
// success: an output write that failed is cleared by the write that
// succeeds, not left until the next issue; a failing revocation is not
// cleared by an issue that succeeds while it still fails, and is once
// nothing is left to revoke (the token it could not revoke expired).
func TestLastErrorClearedByItsOperation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "late")
	h := newHarness(t, 1, func(_ int, ch *Channel) {
		// Rotations every 4 h 10 min; each old token's revocation due an
		// hour after, and failing, retried every 30 minutes.
		ch.TokenTTL, ch.RotateBefore, ch.RevokeAfter, ch.Jitter = 24*time.Hour, 19*time.Hour+50*time.Minute, time.Hour, 0
		ch.Outputs = []Output{{Path: filepath.Join(dir, "tok"), Format: "raw", Mode: 0o600}}
	})
	h.chans[0].Secret = "not the channel's secret" // revocations fail; v2.1 issues do not need it
	h.start()
	if s := h.rot.Status()[0]; !strings.Contains(s.LastError, "output") {
		t.Fatalf("last_error %q, want the output write's", s.LastError)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h.advance(2*time.Second, nil) // the write's retry
	if s := h.rot.Status()[0]; s.LastError != "" || !s.Valid {
		t.Fatalf("last_error %q after the output was written: want it cleared", s.LastError)
	}
	// Rotations at 4:10 and 8:20; the first token's revocation failing
	// from 5:10, last at 8:10. Just after the second rotation its issue
	// went through; the revocations' error stays.
	h.advance(8*time.Hour+21*time.Minute-h.clock.Since(t0), nil)
	if n := len(h.sim.Tokens(h.chans[0].ID)); n != 3 {
		t.Fatalf("%d tokens issued, want 3", n)
	}
	if s := h.rot.Status()[0]; !strings.Contains(s.LastError, "revoke") {
		t.Errorf("last_error %q after a successful rotation while revocations fail: want the revocation's error kept", s.LastError)
	}
}

// TestRevokeErrorEndsWithTheToken: a revocation's error is cleared once the
// token it could not revoke has expired and nothing else waits to be
// revoked; before, it stayed until some later revocation went through,
// about 21 days with the defaults.
func TestRevokeErrorEndsWithTheToken(t *testing.T) {
	h := newHarness(t, 1, func(i int, ch *Channel) { rotatingAt14h(i, ch); ch.RevokeAfter = time.Hour })
	h.chans[0].Secret = "not the channel's secret"
	h.start()
	h.advance(16*time.Hour-h.clock.Since(t0), nil) // rotated at 14 h; revocation failing from 15 h
	if s := h.rot.Status()[0]; !strings.Contains(s.LastError, "revoke") {
		t.Fatalf("last_error %q, want the failing revocation's", s.LastError)
	}
	h.advance(24*time.Hour+time.Minute-h.clock.Since(t0), nil) // the first token expired at 24 h
	if s := h.rot.Status()[0]; s.LastError != "" {
		t.Errorf("last_error %q after the token it could not revoke expired, with nothing else to revoke: want it cleared", s.LastError)
	}
}
