package rotator

import "github.com/tokend/tokend/internal/output"

// Token returns the current token of the channel named by ID or name, for
// tests (the socket reads TokenBody).
// ok is false for an unknown channel; the token's AccessToken is empty
// while the channel holds no valid token.
func (r *Rotator) Token(idOrName string) (output.Token, ChannelStatus, bool) {
	e, ok := (*r.lookup.Load())[idOrName]
	c := e.c
	if !ok {
		return output.Token{}, ChannelStatus{}, false
	}
	s := c.snap.Load()
	if s == nil {
		return output.Token{}, ChannelStatus{ID: c.cfg.ID, Name: c.cfg.Name, Kind: c.cfg.Kind}, true
	}
	st := s.status
	if !s.valid(r.clock.Now()) {
		st.Valid = false
		return output.Token{}, st, true
	}
	st.Valid = true
	return s.token, st, true
}
