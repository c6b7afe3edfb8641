package output

import (
	"fmt"
	"time"
)

// Token is what an output publishes: the current token of one channel and
// the facts a bot needs about it.
type Token struct {
	ChannelID   string
	Name        string
	AccessToken string
	TokenType   string
	KeyID       string
	IssuedAt    time.Time
	ExpiresAt   time.Time
}

// String describes the token without its secret.
func (t Token) String() string {
	return fmt.Sprintf("token{channel=%s key_id=%s expires_at=%s access_token=<redacted>}",
		t.ChannelID, t.KeyID, t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString is String, so %#v cannot print the secret either.
func (t Token) GoString() string { return t.String() }
