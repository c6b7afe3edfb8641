// Package store keeps tokend's token records durably.
//
// Store is the embedded implementation: a bbolt file (FileName, mode 0600)
// in the state directory (mode 0700), held by one process at a time. Its
// layout is a bucket "channels" holding one nested bucket per channel ID,
// whose keys are record IDs and whose values are compact JSON records, plus a
// bucket "meta" that records SchemaVersion. Every change touches only the
// records it names, in one small transaction that is on disk before the
// call returns. A write with no other under way commits at once; writes
// that overlap share commits (bbolt's Batch, which waits up to 50ms for
// more), so a burst of rotations costs a few commits, not one each.
//
// Memory is an in-memory implementation with the same semantics, for tests
// of the packages that consume the store. Both run through one contract
// test.
//
// Semantics shared by both implementations:
//   - Put stores (inserts or replaces) the given records, all or none.
//   - Delete and DeleteChannel are idempotent: deleting what is not there
//     is not an error.
//   - Channel returns a channel's records sorted by IssuedAt (then ID), and
//     no records (nil, nil) for a channel it does not know.
//   - Get returns an error wrapping ErrNotFound for a missing record.
//   - Times come back in UTC, without a monotonic clock reading, with their
//     nanoseconds intact.
//   - After Close every method returns an error wrapping ErrClosed.
//
// All methods are safe for concurrent use.
package store
