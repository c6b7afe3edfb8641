package store

import (
	"errors"
	"fmt"
	"sync"
)

// Memory is an in-memory store with the same semantics as Store, for tests
// of the packages that consume the store. Records are copied in and out.
// The zero value is not ready; use NewMemory.
type Memory struct {
	mu       sync.RWMutex
	closed   bool
	channels map[string]map[string]Record
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{channels: map[string]map[string]Record{}}
}

// Close makes every later call fail with ErrClosed. Closing twice is harmless.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.channels = nil
	return nil
}

func closedError(op string) error { return fmt.Errorf("store: %s: %w", op, ErrClosed) }

// Put stores recs, all or none; see Store.Put.
func (m *Memory) Put(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := validateAll(recs); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return closedError("put")
	}
	for _, r := range recs {
		ch := m.channels[r.ChannelID]
		if ch == nil {
			ch = map[string]Record{}
			m.channels[r.ChannelID] = ch
		}
		ch[r.ID] = r.normalize()
	}
	return nil
}

// Delete removes records of a channel; see Store.Delete.
func (m *Memory) Delete(channelID string, ids ...string) error {
	if err := validateDelete(channelID, ids); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return closedError("delete")
	}
	ch := m.channels[channelID]
	for _, id := range ids {
		delete(ch, id)
	}
	if ch != nil && len(ch) == 0 {
		delete(m.channels, channelID)
	}
	return nil
}

// DeleteChannel removes every record of a channel; see Store.DeleteChannel.
func (m *Memory) DeleteChannel(channelID string) error {
	if channelID == "" {
		return errors.New("store: delete channel: empty channel id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return closedError("delete channel")
	}
	delete(m.channels, channelID)
	return nil
}

// Get returns one record, or an error wrapping ErrNotFound.
func (m *Memory) Get(channelID, id string) (Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Record{}, closedError("get")
	}
	r, ok := m.channels[channelID][id]
	if !ok {
		return Record{}, fmt.Errorf("store: get: %w", notFound(channelID, id))
	}
	return r, nil
}

// Channel returns a channel's records; see Store.Channel.
func (m *Memory) Channel(channelID string) ([]Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, closedError("channel")
	}
	return m.channelLocked(channelID), nil
}

func (m *Memory) channelLocked(channelID string) []Record {
	ch := m.channels[channelID]
	if len(ch) == 0 {
		return nil
	}
	recs := make([]Record, 0, len(ch))
	for _, r := range ch {
		recs = append(recs, r)
	}
	sortRecords(recs)
	return recs
}

// All returns every channel's records; see Store.All.
func (m *Memory) All() (map[string][]Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, closedError("all")
	}
	out := make(map[string][]Record, len(m.channels))
	for id := range m.channels {
		if recs := m.channelLocked(id); len(recs) > 0 {
			out[id] = recs
		}
	}
	return out, nil
}
