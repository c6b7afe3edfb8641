// Package rotator keeps one LINE channel access token valid per configured
// channel: it issues, records, publishes, rotates, revokes and reconciles,
// following the lifecycle in DESIGN.md.
//
// Every decision ("rotate now?", "when is the next attempt?") is a pure
// function of the time in policy.go; the Rotator around them runs each
// channel's first steps in a start pass on a bounded set of workers, then
// as one gocron job on an injectable clockwork clock, re-armed after every
// step for the earliest moment something is due.
package rotator
