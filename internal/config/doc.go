// Package config loads tokend's YAML configuration in four steps: defaults,
// a strict parse (unknown or repeated keys are errors), normalisation
// (relative paths made absolute, secrets read from files, signal names
// upper-cased) and validation. Every problem is reported at once, as Errors
// whose entries name the YAML path and the bad value:
//
//	channels[2].outputs[0].mode: "0999": not an octal file mode; write e.g. "0640"
//
// config.example.yaml at the repository root documents every key.
//
// # Environment
//
// ${NAME} in a string value is replaced by the environment variable NAME;
// an unset variable is an error. $$ is a literal $ (so $${NAME} is the
// literal text ${NAME}); any other $ is kept as written. Only values are
// expanded, never keys or the YAML text, so a variable cannot change the
// structure of the file.
//
// # Defaults
//
//	state_dir        first entry of $STATE_DIRECTORY, else /var/lib/tokend
//	log              level info, format json
//	line             base_url https://api.line.me, timeout 10s, max_in_flight 16
//	socket.path      $RUNTIME_DIRECTORY/tokend.sock, else /run/tokend/tokend.sock;
//	                 path: "" disables the socket (a missing or null path is the default)
//	socket.mode      0660
//	socket.allowed_uids  [] (anyone who can open the socket)
//	metrics_listen   "" (no TCP listener)
//	outputs          format raw, mode 0600
//	on_rotate        timeout 30s
//
// Each channel's kind, token_ttl, rotate_before, revoke_after, jitter and
// reconcile_every come from the channel, else from the `defaults:` block,
// else from its kind:
//
//	kind         token_ttl        rotate_before  revoke_after          jitter  reconcile_every
//	v2.1         30d (1m..30d)    10d            24h                   0.1     1h
//	short-lived  30d, fixed       10d            24h                   0.1     1h
//	stateless    15m, fixed       5m             none (not revocable)  0.1     1h
//
// The kind itself defaults to v2.1. Where LINE fixes a value (token_ttl of
// short-lived and stateless tokens, revoke_after of stateless ones) the
// `defaults:` block does not apply, and setting it on the channel is an
// error unless it equals LINE's value (revoke_after: never).
//
// # Files
//
// Relative private_key_file, outputs[].path, on_rotate[].pid_file,
// on_rotate[].exec[0] (when it holds a slash; a bare name is looked up in
// PATH) and socket.path are resolved against the config file's directory.
// channel_secret_file is read at load time (trailing CR and LF removed);
// a relative one is resolved against $CREDENTIALS_DIRECTORY (systemd
// LoadCredential=) when that is set, else the config file's directory.
// The private key is not read here: the oauth package loads it.
//
// Secrets are of type Secret, which never prints: %v, %+v, %#v, YAML and
// JSON all show "<redacted>", and no error message echoes one.
package config
