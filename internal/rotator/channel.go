package rotator

import (
	"crypto/rsa"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tokend/tokend/internal/hooks"
)

// Token kinds, as in the config's `kind` key.
const (
	KindV21        = "v2.1"
	KindStateless  = "stateless"
	KindShortLived = "short-lived"
)

// Channel is everything the rotator needs to manage one channel's token.
type Channel struct {
	ID     string
	Name   string
	Kind   string
	KeyID  string          // assertion signing key ID (v2.1, stateless by assertion)
	Key    *rsa.PrivateKey // assertion signing key
	Secret string          // channel secret (short-lived, revoking v2.1, stateless by secret)

	TokenTTL       time.Duration
	RotateBefore   time.Duration
	RevokeAfter    time.Duration
	ReconcileEvery time.Duration
	Jitter         float64

	Outputs []Output
	Hooks   []hooks.Spec
}

// Output is one file a channel's current token is written to.
type Output struct {
	Path   string
	Format string // raw | json | env
	Mode   os.FileMode
}

// Label names the channel in logs and metrics: its name, else its ID.
func (c Channel) Label() string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// String describes the channel without its secret or key.
func (c Channel) String() string {
	return fmt.Sprintf("channel{id=%s name=%s kind=%s}", c.ID, c.Name, c.Kind)
}

// GoString is String, so %#v cannot print the secret either.
func (c Channel) GoString() string { return c.String() }

// Format is String for every verb: without it fmt prints a struct's fields
// for verbs that take no string (%d, %x of a field), the secret and the
// key's numbers among them.
func (c Channel) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }
