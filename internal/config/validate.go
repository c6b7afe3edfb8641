package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Defaults that are not per kind. The per-kind ones are in kindRules.
const (
	DefaultConfigPath = "/etc/tokend/config.yaml" // when neither -config nor $TOKEND_CONFIG is given
	DefaultStateDir   = "/var/lib/tokend"         // when neither state_dir nor $STATE_DIRECTORY is set
	DefaultSocketPath = "/run/tokend/tokend.sock" // when neither socket.path nor $RUNTIME_DIRECTORY is set

	defaultLogLevel       = "info"
	defaultLogFormat      = "json"
	defaultBaseURL        = "https://api.line.me"
	defaultTimeout        = 10 * time.Second
	defaultMaxInFlight    = 16
	defaultSocketMode     = 0o660
	defaultJitter         = 0.1
	defaultReconcileEvery = time.Hour
	defaultOutputFormat   = "raw"
	defaultOutputMode     = 0o600
	defaultHookTimeout    = 30 * time.Second
	socketName            = "tokend.sock"

	// storeFileName is the store's file in state_dir: store.FileName,
	// which TestStoreFileName keeps it equal to (config does not import
	// the store and bbolt for a name).
	storeFileName = "tokend.db"

	maxTimeout      = 5 * time.Minute
	maxInFlight     = 1024
	maxUID          = 1<<32 - 2 // (uid_t)-1 means "no user"
	maxSocketPath   = 107       // sun_path is 108 bytes with the NUL
	minTokenTTL     = time.Minute
	maxTokenTTL     = 30 * Day // LINE's limit for v2.1
	minReconcile    = time.Minute
	secretFileKey   = "channel_secret_file"
	credentialsEnv  = "CREDENTIALS_DIRECTORY"
	stateDirEnv     = "STATE_DIRECTORY"
	runtimeDirEnv   = "RUNTIME_DIRECTORY"
	kindList        = "v2.1, stateless or short-lived"
	signalList      = "HUP, USR1, USR2, TERM or INT"
	outputFormatSet = "raw, json or env"
)

// kindRule is what LINE allows, and tokend defaults to, for one kind.
type kindRule struct {
	tokenTTL     time.Duration
	fixedTTL     bool // LINE fixes the lifetime: token_ttl cannot be chosen
	rotateBefore time.Duration
	revokeAfter  time.Duration
	revocable    bool
}

var kindRules = map[Kind]kindRule{
	KindV21:        {tokenTTL: 30 * Day, rotateBefore: 10 * Day, revokeAfter: 24 * time.Hour, revocable: true},
	KindShortLived: {tokenTTL: 30 * Day, fixedTTL: true, rotateBefore: 10 * Day, revokeAfter: 24 * time.Hour, revocable: true},
	KindStateless:  {tokenTTL: 15 * time.Minute, fixedTTL: true, rotateBefore: 5 * time.Minute},
}

// The raw structs mirror the YAML exactly; pointers tell "not set" from a
// zero value, so defaults can be resolved channel > defaults block > kind.
type rawConfig struct {
	StateDir      *string      `yaml:"state_dir"`
	Log           rawLog       `yaml:"log"`
	LINE          rawLINE      `yaml:"line"`
	Socket        rawSocket    `yaml:"socket"`
	MetricsListen string       `yaml:"metrics_listen"`
	Defaults      rawDefaults  `yaml:"defaults"`
	Channels      []rawChannel `yaml:"channels"`
}

type rawLog struct {
	Level  *string `yaml:"level"`
	Format *string `yaml:"format"`
}

type rawLINE struct {
	BaseURL     *string   `yaml:"base_url"`
	Timeout     *Duration `yaml:"timeout"`
	MaxInFlight *int      `yaml:"max_in_flight"`
}

type rawSocket struct {
	Path        *string   `yaml:"path"` // nil = default, "" = no socket
	Mode        *FileMode `yaml:"mode"`
	AllowedUIDs []int     `yaml:"allowed_uids"`
}

type rawDefaults struct {
	Kind           *Kind     `yaml:"kind"`
	TokenTTL       *Duration `yaml:"token_ttl"`
	RotateBefore   *Duration `yaml:"rotate_before"`
	RevokeAfter    *Duration `yaml:"revoke_after"`
	Jitter         *float64  `yaml:"jitter"`
	ReconcileEvery *Duration `yaml:"reconcile_every"`
}

type rawChannel struct {
	ID                string      `yaml:"id"`
	Name              string      `yaml:"name"`
	Kind              *Kind       `yaml:"kind"`
	KeyID             string      `yaml:"key_id"`
	PrivateKeyFile    string      `yaml:"private_key_file"`
	ChannelSecret     Secret      `yaml:"channel_secret"`
	ChannelSecretFile string      `yaml:"channel_secret_file"`
	TokenTTL          *Duration   `yaml:"token_ttl"`
	RotateBefore      *Duration   `yaml:"rotate_before"`
	RevokeAfter       *Duration   `yaml:"revoke_after"`
	Jitter            *float64    `yaml:"jitter"`
	ReconcileEvery    *Duration   `yaml:"reconcile_every"`
	Outputs           []rawOutput `yaml:"outputs"`
	OnRotate          []rawHook   `yaml:"on_rotate"`
}

type rawOutput struct {
	Path   string    `yaml:"path"`
	Format string    `yaml:"format"`
	Mode   *FileMode `yaml:"mode"`
}

type rawHook struct {
	Exec    []string  `yaml:"exec"` // nil = not set, [] = set but empty
	Signal  string    `yaml:"signal"`
	PIDFile string    `yaml:"pid_file"`
	Timeout *Duration `yaml:"timeout"`
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// validator applies defaults, normalises and validates a rawConfig.
type validator struct {
	opts   ParseOptions
	file   string // the config file's absolute path, "" when parsed from a reader: no output may overwrite it
	lines  *lineFinder
	failed map[string]bool // paths the decoder could not read: present, but with no usable value
	errs   Errors
}

func (v *validator) add(path, value, msg string) {
	v.errs = append(v.errs, &FieldError{Path: path, Value: value, Msg: msg})
}

// without returns the validation errors that are not about a value the
// decoder already complained of (a key that failed to decode was left
// unset, so checking it again would only repeat the problem), each with
// its line filled in.
func (v *validator) without() Errors {
	var out Errors
next:
	for _, e := range v.errs {
		for p := e.Path; p != ""; p = parentPath(p) {
			if v.failed[p] {
				continue next
			}
		}
		for p := e.Path; p != "" && e.Line == 0; p = parentPath(p) {
			e.Line = v.lines.line(p)
		}
		out = append(out, e)
	}
	return out
}

// parentPath strips the last element of a YAML path: "a[1].b" -> "a[1]" -> "a".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// DefaultSocket is socket.path when the config does not set it:
// tokend.sock in the first directory of $RUNTIME_DIRECTORY (systemd's
// RuntimeDirectory=, a colon-separated list), else DefaultSocketPath.
// lookup is os.LookupEnv or a stand-in.
func DefaultSocket(lookup func(string) (string, bool)) string {
	if env, ok := lookup(runtimeDirEnv); ok && firstEntry(env) != "" {
		return filepath.Join(firstEntry(env), socketName)
	}
	return DefaultSocketPath
}

func firstEntry(list string) string {
	first, _, _ := strings.Cut(list, ":")
	return first
}

// resolve makes a path from the config absolute, relative to base.
func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// pathProblem says what is wrong with a path that must name a file, or "".
func pathProblem(p string) string {
	switch {
	case strings.ContainsRune(p, 0):
		return "must not contain a NUL byte"
	case p == "/" || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == ".":
		return "must name a file, not a directory"
	}
	return ""
}

func (v *validator) config(raw *rawConfig) *Config {
	cfg := &Config{}
	v.stateDir(cfg, raw)
	v.log(cfg, raw)
	v.line(cfg, raw)
	v.socket(cfg, raw)
	v.metrics(cfg, raw)
	v.defaults(&raw.Defaults)
	v.channels(cfg, raw)
	return cfg
}

func (v *validator) stateDir(cfg *Config, raw *rawConfig) {
	switch {
	case raw.StateDir != nil:
		cfg.StateDir = *raw.StateDir
	default:
		cfg.StateDir = DefaultStateDir
		if env, ok := v.opts.LookupEnv(stateDirEnv); ok && firstEntry(env) != "" {
			cfg.StateDir = firstEntry(env)
		}
	}
	switch {
	case cfg.StateDir == "":
		v.add("state_dir", "", "must not be empty; leave the key out for the default ($STATE_DIRECTORY, else "+DefaultStateDir+")")
	case strings.ContainsRune(cfg.StateDir, 0):
		v.add("state_dir", cfg.StateDir, "must not contain a NUL byte")
	case !filepath.IsAbs(cfg.StateDir):
		v.add("state_dir", cfg.StateDir, "must be an absolute path")
	default:
		cfg.StateDir = filepath.Clean(cfg.StateDir)
	}
}

func (v *validator) log(cfg *Config, raw *rawConfig) {
	cfg.Log = Log{Level: defaultLogLevel, Format: defaultLogFormat}
	if raw.Log.Level != nil {
		cfg.Log.Level = *raw.Log.Level
	}
	if raw.Log.Format != nil {
		cfg.Log.Format = *raw.Log.Format
	}
	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", cfg.Log.Level, "must be debug, info, warn or error")
	}
	switch cfg.Log.Format {
	case "json", "console":
	default:
		v.add("log.format", cfg.Log.Format, "must be json or console")
	}
}

func (v *validator) line(cfg *Config, raw *rawConfig) {
	cfg.LINE = LINE{BaseURL: defaultBaseURL, Timeout: defaultTimeout, MaxInFlight: defaultMaxInFlight}
	if raw.LINE.BaseURL != nil {
		cfg.LINE.BaseURL = *raw.LINE.BaseURL
		u, err := url.Parse(cfg.LINE.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" {
			v.add("line.base_url", cfg.LINE.BaseURL, "must be an http:// or https:// URL with a host and no query, e.g. "+defaultBaseURL)
		}
	}
	if raw.LINE.Timeout != nil {
		cfg.LINE.Timeout = time.Duration(*raw.LINE.Timeout)
		if cfg.LINE.Timeout <= 0 || cfg.LINE.Timeout > maxTimeout {
			v.add("line.timeout", raw.LINE.Timeout.String(), "must be greater than 0 and at most 5m")
		}
	}
	if raw.LINE.MaxInFlight != nil {
		cfg.LINE.MaxInFlight = *raw.LINE.MaxInFlight
		if cfg.LINE.MaxInFlight < 1 || cfg.LINE.MaxInFlight > maxInFlight {
			v.add("line.max_in_flight", strconv.Itoa(cfg.LINE.MaxInFlight), "must be between 1 and 1024")
		}
	}
}

func (v *validator) socket(cfg *Config, raw *rawConfig) {
	switch {
	case raw.Socket.Path == nil:
		cfg.Socket.Path = DefaultSocket(v.opts.LookupEnv)
	case *raw.Socket.Path == "":
		// explicitly disabled
	default:
		if msg := pathProblem(*raw.Socket.Path); msg != "" {
			v.add("socket.path", *raw.Socket.Path, msg)
			break
		}
		cfg.Socket.Path = *raw.Socket.Path
	}
	if cfg.Socket.Path != "" {
		cfg.Socket.Path = resolve(v.opts.Dir, cfg.Socket.Path)
	}
	if n := len(cfg.Socket.Path); n > maxSocketPath {
		v.add("socket.path", cfg.Socket.Path,
			fmt.Sprintf("is %d bytes long; a Unix socket path can have at most %d: choose a shorter one", n, maxSocketPath))
	}
	cfg.Socket.Mode = defaultSocketMode
	if raw.Socket.Mode != nil {
		cfg.Socket.Mode = os.FileMode(*raw.Socket.Mode)
	}
	cfg.Socket.AllowedUIDs = []int{}
	for i, uid := range raw.Socket.AllowedUIDs {
		if uid < 0 || uid > maxUID {
			v.add(fmt.Sprintf("socket.allowed_uids[%d]", i), strconv.Itoa(uid), "must be a user ID between 0 and 4294967294")
		}
		cfg.Socket.AllowedUIDs = append(cfg.Socket.AllowedUIDs, uid)
	}
}

func (v *validator) metrics(cfg *Config, raw *rawConfig) {
	cfg.MetricsListen = raw.MetricsListen
	if cfg.MetricsListen == "" {
		return
	}
	host, port, err := net.SplitHostPort(cfg.MetricsListen)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 0 || p > 65535 {
		v.add("metrics_listen", cfg.MetricsListen, `must be host:port with a numeric port, e.g. "127.0.0.1:9090" or ":9090"; leave it out to serve no metrics over TCP`)
		return
	}
	// A host of digits and dots is meant as an IPv4 address: one that is
	// not (256.1.1.1) would otherwise go to DNS and fail only at start.
	if host != "" && strings.Trim(host, "0123456789.") == "" {
		if _, err := netip.ParseAddr(host); err != nil {
			v.add("metrics_listen", cfg.MetricsListen, "host "+strconv.Quote(host)+" is not an IP address")
		}
	}
}

// Range checks shared by the defaults block and the channels; each returns
// "" when the value is fine.

// TokenTTLProblem says what is wrong with d as a v2.1 token_ttl, "" if
// nothing (tokend dev checks its -token-ttl flag with it).
func TokenTTLProblem(d time.Duration) string {
	switch {
	case d < minTokenTTL || d > maxTokenTTL:
		return "must be between 1m and 30d (LINE's limit for v2.1 tokens)"
	case d%time.Second != 0:
		return "must be a whole number of seconds"
	}
	return ""
}

func rotateBeforeProblem(d time.Duration) string {
	if d <= 0 {
		return "must be greater than 0"
	}
	return ""
}

func jitterProblem(j float64) string {
	if !(j >= 0 && j < 1) {
		return "must be at least 0 and less than 1 (a fraction of rotate_before)"
	}
	return ""
}

func reconcileProblem(d time.Duration) string {
	if d < minReconcile {
		return "must be at least 1m"
	}
	return ""
}

func validKind(k Kind) bool {
	_, ok := kindRules[k]
	return ok
}

func (v *validator) defaults(d *rawDefaults) {
	if d.Kind != nil && !validKind(*d.Kind) {
		v.add("defaults.kind", string(*d.Kind), "must be "+kindList)
	}
	if d.TokenTTL != nil {
		if msg := TokenTTLProblem(time.Duration(*d.TokenTTL)); msg != "" {
			v.add("defaults.token_ttl", d.TokenTTL.String(), msg)
		}
	}
	if d.RotateBefore != nil {
		if msg := rotateBeforeProblem(time.Duration(*d.RotateBefore)); msg != "" {
			v.add("defaults.rotate_before", d.RotateBefore.String(), msg)
		}
	}
	if d.Jitter != nil {
		if msg := jitterProblem(*d.Jitter); msg != "" {
			v.add("defaults.jitter", formatFloat(*d.Jitter), msg)
		}
	}
	if d.ReconcileEvery != nil {
		if msg := reconcileProblem(time.Duration(*d.ReconcileEvery)); msg != "" {
			v.add("defaults.reconcile_every", d.ReconcileEvery.String(), msg)
		}
	}
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// validName says whether s may be a channel name: it becomes part of
// socket URLs and metric labels, so no "/", "..", spaces or NUL. It is
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ written out: the regexp took 1.2 ms
// for 10,000 names, this 0.04 ms.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// channelPath is the YAML path of channels[i].
func channelPath(i int) string { return indexPath("channels", i) }

// outputPath is the YAML path of channels[i].outputs[j].path.
func outputPath(i, j int) string { return indexPath(channelPath(i)+".outputs", j) + ".path" }

// channels resolves and validates every channel, and checks that ids,
// names and output files are not shared, and that no output overwrites a
// file of tokend's own (outputFiles). The maps of first uses hold
// indexes, and a path is spelled out only for an error. With three paths
// built for every channel, the maps and the list grown as they filled
// and a regexp for names, validating 10,000 channels took 21 ms; now 9.
func (v *validator) channels(cfg *Config, raw *rawConfig) {
	if len(raw.Channels) == 0 {
		v.add("channels", "", "no channels configured; add one (see config.example.yaml)")
		return
	}
	ids := make(map[string]int, len(raw.Channels)) // id -> index of the channel that has it first
	for i, rc := range raw.Channels {
		if _, dup := ids[rc.ID]; isDigits(rc.ID) && !dup {
			ids[rc.ID] = i
		}
	}
	names := make(map[string]int, len(raw.Channels)) // name -> index of its first use
	secretFiles := make([]string, len(raw.Channels)) // channels[i]'s channel_secret_file, resolved; "" if none
	cfg.Channels = make([]Channel, 0, len(raw.Channels))
	for i := range raw.Channels {
		p := channelPath(i)
		switch id := raw.Channels[i].ID; {
		case id == "":
			v.add(p+".id", "", "required: the channel ID shown in the LINE Developers Console")
		case !isDigits(id):
			v.add(p+".id", id, "must be the numeric channel ID shown in the LINE Developers Console")
		case ids[id] != i:
			v.add(p+".id", id, "duplicate of "+channelPath(ids[id])+".id")
		}
		var ch Channel
		ch, secretFiles[i] = v.channel(p, &raw.Channels[i], &raw.Defaults)
		if ch.Name != "" {
			first, dupName := names[ch.Name]
			idOf, isID := ids[ch.Name]
			switch {
			case !validName(ch.Name):
				v.add(p+".name", ch.Name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
			case dupName:
				v.add(p+".name", ch.Name, "already used by "+channelPath(first)+".name")
			case isID && idOf != i:
				v.add(p+".name", ch.Name, "is the id of "+channelPath(idOf)+"; names and ids must not collide")
			default:
				names[ch.Name] = i
			}
		}
		cfg.Channels = append(cfg.Channels, ch)
	}
	v.outputFiles(cfg, raw, secretFiles)
}

// ownFile is a file tokend reads or keeps, which an output must not
// overwrite: what it is, and the channel it belongs to (-1 for none).
type ownFile struct {
	what ownKind
	ch   int
}

type ownKind int

const (
	ownConfig ownKind = iota
	ownStore
	ownSocket
	ownKey
	ownSecret
)

// collision says, for an error, which of tokend's own files an output path
// names and what writing the output there would do.
func (f ownFile) collision(cfg *Config) string {
	switch f.what {
	case ownConfig:
		return "is the config file itself; the output would overwrite it: choose another path"
	case ownStore:
		return "is tokend's store (" + storeFileName + " in state_dir " + cfg.StateDir +
			"); the output would overwrite every token record: choose another path"
	case ownSocket:
		return "is socket.path, tokend's socket; the output would replace it: choose another path"
	case ownKey:
		return "is the private key file of " + channelKey(cfg, f.ch, "private_key_file") +
			"; the output would overwrite the key: choose another path"
	default:
		return "is the channel secret file of " + channelKey(cfg, f.ch, secretFileKey) +
			"; the output would overwrite the secret: choose another path"
	}
}

// channelKey names channels[i]'s key for a message: "channel shop-bot
// (channels[2].private_key_file)".
func channelKey(cfg *Config, i int, key string) string {
	p := channelPath(i) + "." + key
	if label := cfg.Channels[i].Label(); label != "" {
		return "channel " + label + " (" + p + ")"
	}
	return p
}

// outputFiles checks that no two outputs share a file, and that no output
// is one of tokend's own files: the config file, the store in state_dir
// (bbolt keeps its lock on that file: state_dir holds nothing else), the
// socket, and every channel's private key and channel secret file. Paths
// are compared as the config resolves them, cleaned and absolute; like the
// check between outputs, this does not resolve symlinks, so an output
// reaching one of those files through a link or another mount is not
// caught here.
func (v *validator) outputFiles(cfg *Config, raw *rawConfig, secretFiles []string) {
	own := make(map[string]ownFile, 2*len(cfg.Channels)+3) // path -> the first own file there
	claim := func(path string, f ownFile) {
		if _, dup := own[path]; path != "" && !dup {
			own[path] = f
		}
	}
	claim(v.file, ownFile{what: ownConfig, ch: -1})
	if filepath.IsAbs(cfg.StateDir) {
		claim(filepath.Join(cfg.StateDir, storeFileName), ownFile{what: ownStore, ch: -1})
	}
	claim(cfg.Socket.Path, ownFile{what: ownSocket, ch: -1})
	for i, ch := range cfg.Channels {
		claim(ch.PrivateKeyFile, ownFile{what: ownKey, ch: i})
		claim(secretFiles[i], ownFile{what: ownSecret, ch: i})
	}

	type at struct{ i, j int }
	outputs := make(map[string]at, len(cfg.Channels)) // output path -> channels[i].outputs[j], its first use
	for i, ch := range cfg.Channels {
		for j, o := range ch.Outputs {
			if o.Path == "" {
				continue // reported by channel
			}
			if f, ok := own[o.Path]; ok {
				v.add(outputPath(i, j), raw.Channels[i].Outputs[j].Path, f.collision(cfg))
				continue
			}
			if first, dup := outputs[o.Path]; dup {
				v.add(outputPath(i, j), raw.Channels[i].Outputs[j].Path,
					"already written by "+outputPath(first.i, first.j)+"; give each output its own file")
				continue
			}
			outputs[o.Path] = at{i, j}
		}
	}
}

// source says where a resolved value came from, for error messages.
type source int

const (
	fromChannel source = iota
	fromDefaults
	fromKind
)

func pickDuration(ch, def *Duration, kindDefault time.Duration) (time.Duration, source) {
	switch {
	case ch != nil:
		return time.Duration(*ch), fromChannel
	case def != nil:
		return time.Duration(*def), fromDefaults
	}
	return kindDefault, fromKind
}

// fromWhere finishes a message about a value the channel did not set itself.
func fromWhere(src source, key string, kind Kind) string {
	switch src {
	case fromDefaults:
		return "; it comes from defaults." + key + ": set " + key + " on this channel"
	case fromKind:
		return "; it is the default for kind " + string(kind) + ": set " + key + " on this channel"
	}
	return ""
}

// channel resolves and validates one channel (all but the cross-channel
// checks, which are in channels). It also returns the channel secret
// file's resolved path, "" if none.
func (v *validator) channel(p string, rc *rawChannel, def *rawDefaults) (Channel, string) {
	ch := Channel{ID: rc.ID, Name: rc.Name, KeyID: rc.KeyID, Kind: KindV21}
	switch {
	case rc.Kind != nil:
		ch.Kind = *rc.Kind
		if !validKind(ch.Kind) {
			v.add(p+".kind", string(ch.Kind), "must be "+kindList)
		}
	case def.Kind != nil:
		ch.Kind = *def.Kind // reported at defaults.kind if bad
	}
	rule, kindOK := kindRules[ch.Kind]

	if rc.PrivateKeyFile != "" {
		if msg := pathProblem(rc.PrivateKeyFile); msg != "" {
			v.add(p+".private_key_file", rc.PrivateKeyFile, msg)
		} else {
			ch.PrivateKeyFile = resolve(v.opts.Dir, rc.PrivateKeyFile)
		}
	}
	secretFile := v.secret(p, rc, &ch)
	if kindOK {
		v.credentials(p, rc, &ch)
	}

	// Lifetimes: channel value, else the defaults block, else the kind's.
	ttlOK := kindOK
	switch {
	case !kindOK:
	case rule.fixedTTL:
		ch.TokenTTL = rule.tokenTTL
		if rc.TokenTTL != nil && time.Duration(*rc.TokenTTL) != rule.tokenTTL {
			v.add(p+".token_ttl", rc.TokenTTL.String(),
				fmt.Sprintf("LINE fixes %s tokens at %s; leave token_ttl out", ch.Kind, Duration(rule.tokenTTL)))
		}
	default:
		var src source
		ch.TokenTTL, src = pickDuration(rc.TokenTTL, def.TokenTTL, rule.tokenTTL)
		if msg := TokenTTLProblem(ch.TokenTTL); msg != "" {
			ttlOK = false
			if src == fromChannel {
				v.add(p+".token_ttl", Duration(ch.TokenTTL).String(), msg)
			}
		}
	}

	var src source
	ch.RotateBefore, src = pickDuration(rc.RotateBefore, def.RotateBefore, rule.rotateBefore)
	if msg := rotateBeforeProblem(ch.RotateBefore); msg != "" {
		if src == fromChannel {
			v.add(p+".rotate_before", Duration(ch.RotateBefore).String(), msg)
		}
	} else if ttlOK && ch.RotateBefore >= ch.TokenTTL {
		v.add(p+".rotate_before", Duration(ch.RotateBefore).String(),
			"must be shorter than token_ttl ("+Duration(ch.TokenTTL).String()+")"+fromWhere(src, "rotate_before", ch.Kind))
	}

	switch {
	case !kindOK:
	case !rule.revocable:
		if rc.RevokeAfter != nil {
			v.add(p+".revoke_after", rc.RevokeAfter.String(), string(ch.Kind)+" tokens cannot be revoked; leave revoke_after out")
		}
	default:
		ch.RevokeAfter, src = pickDuration(rc.RevokeAfter, def.RevokeAfter, rule.revokeAfter)
		if ttlOK && ch.RevokeAfter >= ch.TokenTTL {
			v.add(p+".revoke_after", Duration(ch.RevokeAfter).String(),
				"must be shorter than token_ttl ("+Duration(ch.TokenTTL).String()+")"+fromWhere(src, "revoke_after", ch.Kind))
		}
	}

	ch.Jitter = defaultJitter
	switch {
	case rc.Jitter != nil:
		ch.Jitter = *rc.Jitter
		if msg := jitterProblem(ch.Jitter); msg != "" {
			v.add(p+".jitter", formatFloat(ch.Jitter), msg)
		}
	case def.Jitter != nil:
		ch.Jitter = *def.Jitter
	}

	if ttlOK && kindOK && rule.revocable && ch.RotateBefore < ch.TokenTTL && ch.RevokeAfter < ch.TokenTTL &&
		rotateBeforeProblem(ch.RotateBefore) == "" && jitterProblem(ch.Jitter) == "" {
		if n := HeldAtOnce(ch.TokenTTL, ch.RotateBefore, ch.RevokeAfter, ch.Jitter); n > MaxHeldAtOnce {
			v.add(p+".revoke_after", Duration(ch.RevokeAfter).String(), fmt.Sprintf(
				"with token_ttl %s, rotate_before %s and jitter %s, tokend would keep up to %d of this channel's tokens valid at LINE at once, more than %d of LINE's 30 (LINE recommends 2 a consumer: the current one and the next); shorten revoke_after or rotate_before",
				Duration(ch.TokenTTL), Duration(ch.RotateBefore), formatFloat(ch.Jitter), n, MaxHeldAtOnce))
		}
	}

	ch.ReconcileEvery, src = pickDuration(rc.ReconcileEvery, def.ReconcileEvery, defaultReconcileEvery)
	if msg := reconcileProblem(ch.ReconcileEvery); msg != "" && src == fromChannel {
		v.add(p+".reconcile_every", Duration(ch.ReconcileEvery).String(), msg)
	}

	if len(rc.Outputs) > 0 {
		ch.Outputs = make([]Output, 0, len(rc.Outputs))
	}
	for j := range rc.Outputs {
		ch.Outputs = append(ch.Outputs, v.output(indexPath(p+".outputs", j), &rc.Outputs[j]))
	}
	for j := range rc.OnRotate {
		ch.OnRotate = append(ch.OnRotate, v.hook(fmt.Sprintf("%s.on_rotate[%d]", p, j), &rc.OnRotate[j]))
	}
	return ch, secretFile
}

// secret fills ch.ChannelSecret from channel_secret or channel_secret_file,
// and returns the channel_secret_file's resolved path ("" if none), read
// or not.
func (v *validator) secret(p string, rc *rawChannel, ch *Channel) string {
	switch {
	case rc.ChannelSecret != "" && rc.ChannelSecretFile != "":
		v.add(p, "", "set only one of channel_secret or channel_secret_file")
	case rc.ChannelSecret != "":
		ch.ChannelSecret = rc.ChannelSecret
	case rc.ChannelSecretFile != "":
		key := p + "." + secretFileKey
		if msg := pathProblem(rc.ChannelSecretFile); msg != "" {
			v.add(key, rc.ChannelSecretFile, msg)
			return ""
		}
		base := v.opts.Dir
		if dir, ok := v.opts.LookupEnv(credentialsEnv); ok && dir != "" {
			base = dir // systemd LoadCredential=
		}
		name := resolve(base, rc.ChannelSecretFile)
		where := ""
		if name != rc.ChannelSecretFile {
			where = name + ": "
		}
		data, err := readFile(name, maxSecretSize)
		if err != nil {
			v.add(key, rc.ChannelSecretFile, where+fileErr(err))
			return name
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			v.add(key, rc.ChannelSecretFile, where+"the file is empty; put the channel secret in it")
			return name
		}
		ch.ChannelSecret = Secret(s)
		return name
	}
	return ""
}

// credentials checks that the channel has what its kind needs to issue
// and revoke tokens.
func (v *validator) credentials(p string, rc *rawChannel, ch *Channel) {
	hasSecret := rc.ChannelSecret != "" || rc.ChannelSecretFile != "" ||
		v.failed[p+".channel_secret"] || v.failed[p+"."+secretFileKey]
	hasKeyID := rc.KeyID != "" || v.failed[p+".key_id"]
	hasKeyFile := rc.PrivateKeyFile != "" || v.failed[p+".private_key_file"]
	switch ch.Kind {
	case KindV21:
		if !hasKeyID {
			v.add(p+".key_id", "", "required for kind v2.1: the key ID the LINE Developers Console showed when you registered the public key")
		}
		if !hasKeyFile {
			v.add(p+".private_key_file", "", "required for kind v2.1: the private key (JWK or PEM) that signs assertions; `tokend keygen` makes one")
		}
		if !hasSecret {
			v.add(p+".channel_secret", "", "required for kind v2.1 (set channel_secret or channel_secret_file): revoking superseded tokens needs the channel secret")
		}
	case KindShortLived:
		if rc.KeyID != "" {
			v.add(p+".key_id", rc.KeyID, "not used by kind short-lived, whose tokens LINE issues for the channel secret; leave it out")
		}
		if rc.PrivateKeyFile != "" {
			v.add(p+".private_key_file", rc.PrivateKeyFile, "not used by kind short-lived, whose tokens LINE issues for the channel secret; leave it out")
		}
		if !hasSecret {
			v.add(p+".channel_secret", "", "required for kind short-lived (set channel_secret or channel_secret_file): LINE issues these tokens for the channel secret")
		}
	case KindStateless:
		switch {
		case hasKeyID && !hasKeyFile:
			v.add(p+".private_key_file", "", "required with key_id: the private key (JWK or PEM) that signs assertions")
		case !hasKeyID && hasKeyFile:
			v.add(p+".key_id", "", "required with private_key_file: the key ID the LINE Developers Console showed when you registered the public key")
		case !hasKeyID && !hasSecret:
			v.add(p, "", "kind stateless needs key_id and private_key_file, or channel_secret (or channel_secret_file)")
		}
	}
}

// maxOutputName is the longest output file name whose temporary file
// (".NAME.tmp-" and up to 10 digits) fits a 255-byte name.
const maxOutputName = 255 - len(".") - len(".tmp-") - 10

func (v *validator) output(p string, ro *rawOutput) Output {
	o := Output{Format: defaultOutputFormat, Mode: defaultOutputMode}
	switch {
	case ro.Path == "":
		v.add(p+".path", "", "required: the file to write the token to")
	case pathProblem(ro.Path) != "":
		v.add(p+".path", ro.Path, pathProblem(ro.Path))
	case len(filepath.Base(ro.Path)) > maxOutputName:
		v.add(p+".path", ro.Path, fmt.Sprintf("the file name is %d bytes; at most %d: tokend writes it through a temporary file named .NAME.tmp-NNNNNNNNNN beside it, which must fit the file system's 255", len(filepath.Base(ro.Path)), maxOutputName))
	default:
		o.Path = resolve(v.opts.Dir, ro.Path)
	}
	if ro.Format != "" {
		o.Format = ro.Format
		switch o.Format {
		case "raw", "json", "env":
		default:
			v.add(p+".format", ro.Format, "must be "+outputFormatSet)
		}
	}
	if ro.Mode != nil {
		o.Mode = os.FileMode(*ro.Mode)
		if o.Mode&0o022 != 0 {
			v.add(p+".mode", fmt.Sprintf("%04o", uint32(o.Mode)),
				"must not let group or others write: the file holds a token, and whoever may write it may hand bots a token of their own; drop the write bits (e.g. \"0640\")")
		}
	}
	return o
}

// signalName normalises "sighup", "SIGHUP" and "HUP" to "HUP".
func signalName(s string) (string, bool) {
	n := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	switch n {
	case "HUP", "USR1", "USR2", "TERM", "INT":
		return n, true
	}
	return "", false
}

func (v *validator) hook(p string, rh *rawHook) Hook {
	h := Hook{Timeout: defaultHookTimeout}
	if v.failed[p+".exec"] || v.failed[p+".signal"] {
		return h // what the hook is could not be read; that was reported
	}
	switch {
	case rh.Exec != nil && rh.Signal != "":
		v.add(p, "", "set only one of exec or signal; add a second on_rotate entry for the other")
	case rh.Exec == nil && rh.Signal == "":
		v.add(p, "", `set exec (a command to run) or signal (with pid_file), e.g. exec: ["/usr/bin/systemctl", "reload", "bot.service"]`)
	case rh.Exec != nil:
		if len(rh.Exec) == 0 {
			v.add(p+".exec", "", `must name a program and its arguments, e.g. ["/usr/bin/systemctl", "reload", "bot.service"]`)
		}
		for i, arg := range rh.Exec {
			switch {
			case i == 0 && arg == "":
				v.add(p+".exec[0]", "", "must name a program: an absolute path, or a name looked up in PATH")
			case strings.ContainsRune(arg, 0):
				v.add(fmt.Sprintf("%s.exec[%d]", p, i), arg, "must not contain a NUL byte")
			}
		}
		h.Exec = rh.Exec
		if len(h.Exec) > 0 && strings.ContainsRune(h.Exec[0], '/') && !filepath.IsAbs(h.Exec[0]) {
			// A relative path to a program (hooks/reload.sh), like every
			// other relative path here, is the config directory's: tokend's
			// own working directory is / under systemd. A bare name is
			// looked up in PATH.
			h.Exec = append([]string{resolve(v.opts.Dir, h.Exec[0])}, h.Exec[1:]...)
		}
		if rh.PIDFile != "" {
			v.add(p+".pid_file", rh.PIDFile, "only used with signal; leave it out")
		}
	default:
		name, ok := signalName(rh.Signal)
		if !ok {
			v.add(p+".signal", rh.Signal, "must be "+signalList)
		}
		h.Signal = name
		switch {
		case rh.PIDFile == "":
			v.add(p+".pid_file", "", "required with signal: the file holding the ID of the process to signal")
		case pathProblem(rh.PIDFile) != "":
			v.add(p+".pid_file", rh.PIDFile, pathProblem(rh.PIDFile))
		default:
			h.PIDFile = resolve(v.opts.Dir, rh.PIDFile)
		}
	}
	if rh.Timeout != nil {
		h.Timeout = time.Duration(*rh.Timeout)
		if h.Timeout <= 0 {
			v.add(p+".timeout", rh.Timeout.String(), "must be greater than 0")
		}
	}
	return h
}

// MaxHeldAtOnce is the most of a channel's tokens a config may have tokend
// keep valid at LINE at once (HeldAtOnce): half of LINE's 30, which leaves
// room for the channel's other consumers and for a token lost in an issue
// whose answer never came back.
const MaxHeldAtOnce = 15

// HeldAtOnce is how many of a channel's tokens tokend keeps valid at LINE
// at once, at most, in steady state: the current one, and those superseded
// and neither revoked (revoke_after) nor expired yet. A token is rotated
// no sooner than token_ttl - rotate_before after its issue, less jitter's
// spread of up to jitter x rotate_before, and never sooner than half that
// gap (rotator.RotateAt). Superseded, it lives on until revoke_after or its
// expiry, whichever comes first. A step issues before it revokes, so a
// revocation due at the instant of a rotation still counts; a token that
// expires at that instant no longer does.
func HeldAtOnce(ttl, rotateBefore, revokeAfter time.Duration, jitter float64) int {
	gap := ttl - rotateBefore
	period := max(gap-time.Duration(float64(rotateBefore)*jitter), gap/2)
	if period <= 0 {
		return math.MaxInt
	}
	life := ttl - period
	if revokeAfter < life {
		return 2 + int(revokeAfter/period)
	}
	return 1 + int((life+period-1)/period)
}
