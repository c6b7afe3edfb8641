package rotator

import "time"

// ChannelStatus is what tokend tells about one channel, never a token. The
// socket API serves it as JSON under /v1/channels.
type ChannelStatus struct {
	ID           string    `json:"channel_id"`
	Name         string    `json:"name,omitempty"`
	Kind         string    `json:"kind"`
	KeyID        string    `json:"key_id,omitempty"`
	IssuedAt     time.Time `json:"issued_at,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	NextRotation time.Time `json:"next_rotation,omitzero"`
	Valid        bool      `json:"valid"`
	Orphans      int       `json:"orphan_key_ids"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
}
