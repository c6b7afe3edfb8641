// Package deploy holds tokend's deployment examples: a systemd unit
// (systemd/), a Docker Compose project (compose/) and a Kubernetes
// Deployment (kubernetes/), with the Dockerfile at the repository root.
// It has no code; its tests check that the examples agree with tokend and
// with each other: every config validates with `tokend check`, and tokend
// run in the file system each example describes serves its socket and
// writes its token files where the healthchecks, probes and bots look.
package deploy
