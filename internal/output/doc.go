// Package output renders a channel's current token in the file formats
// operators configure (raw, json, env) and writes such files atomically: a
// reader of the target path sees the old bytes or the new ones, never a
// partial or empty file.
package output
