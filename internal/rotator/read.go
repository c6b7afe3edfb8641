package rotator

import (
	"strings"
	"sync/atomic"

	"github.com/tokend/tokend/internal/output"
)

// The socket's token reads are the daemon's hot path: tens of thousands a
// second, each for any of up to 10,000 channels, so most find their data
// out of the CPU caches, and each cache miss costs more than the rest of
// the lookup. The read path is laid out to miss as little as it can:
//
//   - the lookup map's keys (IDs and names) are cut from one string, so
//     comparing a key reads memory that stays cached, not a string
//     allocated somewhere with its channel's config;
//   - the map's value leads straight to the channel's read slot, and the
//     slots of the channels New was given lie side by side in one array;
//   - a slot holds a served: the expiry and the JSON and raw bodies,
//     without further indirection. A body is rendered on its first read
//     and published with a copy of the served (compare-and-swap), so a
//     channel nobody reads holds no bodies.
//
// Everything else a channel holds (config, state, snapshot) is not read.

// served is what the socket serves for a channel's current token; it is
// immutable once published.
type served struct {
	expires int64  // token.ExpiresAt, Unix nanoseconds
	json    []byte // token in output.FormatJSON; nil until first read
	raw     []byte // token in output.FormatRaw; nil until first read
	token   output.Token
}

// readEntry is a lookup map value.
type readEntry struct {
	read  *atomic.Pointer[served] // the channel's read slot
	c     *channel                // for Status
	ident *ident                  // for Status: c's names when the map was built
}

// ident is a channel's ID, name and kind as a lookup map was built with
// them. Status reads these, not c.cfg, which a reload replaces under c.mu
// (a lock Status does not take: a step holds it through a LINE call).
type ident struct{ ID, Name, Kind string }

// identLabel is the label (Channel.Label) of the channel id names: its
// name, else its ID.
func identLabel(id *ident) string {
	if id.Name != "" {
		return id.Name
	}
	return id.ID
}

// rebuildLookup replaces the lookup map with one for the current channels;
// r.mu must be held, or r not yet shared.
func (r *Rotator) rebuildLookup() {
	n := 0
	for _, c := range r.chans {
		n += len(c.cfg.ID) + len(c.cfg.Name)
	}
	var b strings.Builder
	b.Grow(n)
	chans := make([]*channel, 0, len(r.chans))
	for _, c := range r.chans {
		chans = append(chans, c)
		b.WriteString(c.cfg.ID)
	}
	for _, c := range chans {
		b.WriteString(c.cfg.Name)
	}
	arena := b.String()
	m := make(map[string]readEntry, 2*len(r.chans))
	off := 0
	key := func(s string) string {
		k := arena[off : off+len(s)]
		off += len(s)
		return k
	}
	idents := make([]ident, len(chans))
	for i, c := range chans {
		idents[i] = ident{ID: c.cfg.ID, Name: c.cfg.Name, Kind: c.cfg.Kind}
		m[key(c.cfg.ID)] = readEntry{read: c.read, c: c, ident: &idents[i]}
	}
	// Names after every ID, as the arena has them.
	for i, c := range chans {
		if name := key(c.cfg.Name); name != "" {
			m[name] = readEntry{read: c.read, c: c, ident: &idents[i]}
		}
	}
	r.lookup.Store(&m)
}

// setServed publishes s's token to c's read slot, unless the slot
// already serves the same token (and keeps the bodies rendered for it);
// c.mu must be held.
func (c *channel) setServed(s *snapshot) {
	if s.token.AccessToken == "" {
		c.read.Store(nil)
		return
	}
	if sv := c.read.Load(); sv != nil && sameToken(sv.token, s.token) {
		return
	}
	c.read.Store(&served{expires: s.token.ExpiresAt.UnixNano(), token: s.token})
}

// sameToken reports whether a and b render the same.
func sameToken(a, b output.Token) bool {
	return a.AccessToken == b.AccessToken && a.ChannelID == b.ChannelID && a.Name == b.Name &&
		a.TokenType == b.TokenType && a.KeyID == b.KeyID && a.IssuedAt.Equal(b.IssuedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

// TokenBody returns the current token of the channel named by ID or name
// rendered in format (see output.Render), for the socket: found is false
// for an unknown channel, and body is nil while the channel holds no valid
// token. Bodies are rendered once per token and shared: callers must not
// modify them. Errors are Render's, which never hold the token.
func (r *Rotator) TokenBody(idOrName, format string) (body []byte, found bool, err error) {
	e, ok := (*r.lookup.Load())[idOrName]
	return r.tokenBody(e, ok, format)
}

// TokenBodyBytes is TokenBody for a name in bytes, which it does not copy
// (the socket's fast path reads names into its own buffer).
func (r *Rotator) TokenBodyBytes(idOrName []byte, format string) (body []byte, found bool, err error) {
	e, ok := (*r.lookup.Load())[string(idOrName)]
	return r.tokenBody(e, ok, format)
}

func (r *Rotator) tokenBody(e readEntry, ok bool, format string) (body []byte, found bool, err error) {
	if !ok {
		return nil, false, nil
	}
	now := r.clock.Now()
	sv := e.read.Load()
	if sv == nil || now.UnixNano() >= sv.expires {
		return nil, true, nil
	}
	switch format {
	case output.FormatJSON:
		if sv.json != nil {
			return sv.json, true, nil
		}
	case output.FormatRaw:
		if sv.raw != nil {
			return sv.raw, true, nil
		}
	default: // not cached: the socket asks for JSON and raw only
		body, err = output.Render(format, sv.token)
		return body, true, err
	}
	body, err = fill(e.read, sv, format)
	return body, true, err
}

// fill renders sv's token in format (JSON or raw) and publishes a copy of
// sv holding the body, unless the slot has moved on from sv meanwhile (a
// new token, or another read's fill): the body is served all the same,
// and a later read fills the slot.
func fill(slot *atomic.Pointer[served], sv *served, format string) ([]byte, error) {
	b, err := output.Render(format, sv.token)
	if err != nil {
		return nil, err
	}
	next := *sv
	if format == output.FormatJSON {
		next.json = b
	} else {
		next.raw = b
	}
	slot.CompareAndSwap(sv, &next)
	return b, nil
}
