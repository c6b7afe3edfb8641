package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is a loaded, validated configuration with every default applied.
type Config struct {
	Path          string // absolute path of the file it came from ("" if parsed from a reader)
	StateDir      string // absolute
	Log           Log
	LINE          LINE
	Socket        Socket
	MetricsListen string    // host:port for /metrics, /healthz, /readyz; "" = off
	Channels      []Channel // the `defaults:` block already resolved into each
}

// Log is the `log:` section.
type Log struct {
	Level  string // "debug", "info", "warn" or "error"
	Format string // "json" or "console"
}

// LINE is the `line:` section.
type LINE struct {
	BaseURL     string        // http(s) URL with a host
	Timeout     time.Duration // per call, 0 < Timeout <= 5m
	MaxInFlight int           // concurrent LINE calls, all channels together, 1..1024
}

// Socket is the `socket:` section.
type Socket struct {
	Path        string      // absolute; "" = no socket
	Mode        os.FileMode // permission bits of the socket file
	AllowedUIDs []int       // peers allowed to connect; empty = anyone who can open the socket
}

// Channel is one LINE channel whose token tokend keeps valid.
type Channel struct {
	ID             string // numeric channel ID
	Name           string // optional alias used in socket paths, logs and metrics
	KeyID          string // assertion signing key ID (v2.1; stateless by assertion)
	PrivateKeyFile string // absolute path of the signing key (not read by this package)
	ChannelSecret  Secret // from channel_secret or channel_secret_file; "" if neither
	Kind           Kind

	TokenTTL       time.Duration // lifetime asked of LINE (fixed by LINE for stateless and short-lived)
	RotateBefore   time.Duration // rotate this long before expiry
	RevokeAfter    time.Duration // revoke a superseded token this long after it was superseded (0 for stateless)
	ReconcileEvery time.Duration // how often to compare key IDs with LINE
	Jitter         float64       // fraction of RotateBefore by which a rotation may come early, [0, 1)

	Outputs  []Output
	OnRotate []Hook
}

// Label names the channel in logs, metrics and the socket: Name if set, else ID.
func (c Channel) Label() string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// Output is a file a channel's current token is written to.
type Output struct {
	Path   string      // absolute
	Format string      // "raw", "json" or "env"
	Mode   os.FileMode // permission bits, default 0600
}

// Hook is something run after a channel's token was rotated: either a
// command (Exec) or a signal sent to the process named in PIDFile.
type Hook struct {
	Exec    []string      // program and arguments; the program is absolute (a relative path resolved against the config's directory) or a bare name looked up in PATH
	Signal  string        // "HUP", "USR1", "USR2", "TERM" or "INT" (no SIG prefix)
	PIDFile string        // absolute; set exactly when Signal is
	Timeout time.Duration // how long the hook may take, default 30s
}

// ParseOptions tell Parse where the config came from.
type ParseOptions struct {
	// Dir is the directory relative paths are resolved against (Load sets
	// it to the config file's directory); "" means the working directory.
	Dir string
	// LookupEnv reads the environment for ${NAME}, $STATE_DIRECTORY,
	// $RUNTIME_DIRECTORY and $CREDENTIALS_DIRECTORY; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)

	file string // the config file's absolute path, set by Load: no output may overwrite it
}

// Limits on what is read.
const (
	maxConfigSize = 4 << 20  // bytes of YAML
	maxSecretSize = 64 << 10 // bytes of a channel_secret_file
)

// DefaultPath returns the config file used when none is given: $TOKEND_CONFIG,
// else DefaultConfigPath.
func DefaultPath() string {
	if p := os.Getenv("TOKEND_CONFIG"); p != "" {
		return p
	}
	return DefaultConfigPath
}

// Load reads, parses and validates the config file at path, resolving
// relative paths in it against the file's directory. Problems in the file
// come back as Errors.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	data, err := readFile(abs, maxConfigSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("config file %s: no such file; set -config or $TOKEND_CONFIG", abs)
	case err != nil:
		return nil, fmt.Errorf("config file %s: %w", abs, bare(err))
	}
	cfg, err := parse(data, ParseOptions{Dir: filepath.Dir(abs), LookupEnv: os.LookupEnv, file: abs})
	if err != nil {
		return nil, err
	}
	cfg.Path = abs
	return cfg, nil
}

// Parse reads a config from r, applies defaults and validates it. Every
// problem found comes back together as Errors.
func Parse(r io.Reader, o ParseOptions) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > maxConfigSize {
		return nil, Errors{{Msg: fmt.Sprintf("the config is larger than %d MiB", maxConfigSize>>20)}}
	}
	return parse(data, o)
}

// parse is the four steps: defaults (in validate), strict decode,
// normalise and validate.
func parse(data []byte, o ParseOptions) (*Config, error) {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("config directory %q: %w", o.Dir, err)
	}
	o.Dir = dir

	root, fe := parseDocument(data)
	if fe != nil {
		return nil, Errors{fe}
	}
	var raw rawConfig
	d := newDecoder(o.LookupEnv)
	if root != nil && !isNull(root) {
		d.decode(root, reflectValue(&raw))
		switch {
		case d.budget < 0:
			return nil, Errors{d.budgetErr} // the rest is noise from a partial decode
		case len(d.errs) > 0 && d.errs[0].Path == "" && root.Kind != yaml.MappingNode:
			return nil, d.errs // the file is not a mapping: nothing to validate
		}
	}
	v := &validator{opts: o, file: o.file, lines: newLineFinder(root), failed: map[string]bool{}}
	for _, e := range d.errs {
		v.failed[e.Path] = true
	}
	cfg := v.config(&raw)
	errs := append(d.errs, v.without()...)
	if len(errs) > 0 {
		return nil, tidy(errs)
	}
	return cfg, nil
}

// maxErrors is how many problems are listed; a file with more has
// something systematically wrong, and the first ones show what.
const maxErrors = 100

// tidy puts errors in file order (those without a line, about keys left
// out at the top level, last) and cuts the list at maxErrors.
func tidy(errs Errors) Errors {
	line := func(e *FieldError) int {
		if e.Line == 0 {
			return math.MaxInt
		}
		return e.Line
	}
	sort.SliceStable(errs, func(i, j int) bool { return line(errs[i]) < line(errs[j]) })
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &FieldError{Msg: fmt.Sprintf("and %d more problems", more)})
	}
	return errs
}

// readFile reads a regular file of at most limit bytes.
func readFile(name string, limit int64) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d KiB", limit>>10)
	}
	return data, nil
}

// bare strips the *fs.PathError around err: callers name the file already.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// fileErr is a short description of a file error, without the path that
// *fs.PathError repeats.
func fileErr(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	return bare(err).Error()
}
