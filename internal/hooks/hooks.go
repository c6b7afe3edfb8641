// Package hooks runs a channel's on_rotate hooks after tokend has published
// a new token: a program to execute (argv, no shell) or a signal to send to
// a process named by a pid file. Hooks learn about the new token through
// environment variables that carry where it was written, never the token.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// DefaultTimeout bounds a hook whose Spec has no Timeout.
const DefaultTimeout = 30 * time.Second

// outputTail is how many trailing bytes of a hook's stdout and of its
// stderr are kept for the log.
const outputTail = 4 << 10

// waitDelay bounds how long Run waits, after an exec hook's process exited
// or was killed, for processes it left behind to close its stdout/stderr.
const waitDelay = 2 * time.Second

// maxPIDFile is the most of a pid file Run reads; a pid is a few digits.
const maxPIDFile = 64

// Spec is one hook: Exec (argv) or Signal with PIDFile, never both.
type Spec struct {
	Exec    []string      // program and arguments, run without a shell
	Signal  string        // HUP, USR1, USR2, TERM or INT ("SIGHUP" too)
	PIDFile string        // file holding the pid to signal
	Timeout time.Duration // 0: DefaultTimeout
}

// Event describes the rotation that triggers the hooks.
type Event struct {
	ChannelID string
	Name      string    // "" if the channel has no name
	Outputs   []string  // paths of the channel's file outputs
	ExpiresAt time.Time // of the new token
	// Redact lists what must never reach a log from a hook's output: the
	// channel's tokens and secret. A hook is free to print them (a
	// `curl -v` with the token in a header, a `cat` of an output), and
	// its output is logged; each occurrence is logged as [redacted]. It
	// never reaches the hook's environment.
	Redact []string
}

// timeout bounds the hook: Timeout, or DefaultTimeout if unset.
func (s Spec) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

// Kind names what the hook does: "exec", "signal" or "invalid".
func (s Spec) Kind() string {
	switch {
	case len(s.Exec) > 0 && s.Signal == "" && s.PIDFile == "":
		return "exec"
	case len(s.Exec) == 0 && (s.Signal != "" || s.PIDFile != ""):
		return "signal"
	}
	return "invalid"
}

// Run runs specs one after another, in order, each to completion (or to its
// timeout) before the next. A failing hook does not stop the following
// ones: each failure is logged as one warning and Run returns them all,
// joined. log may be nil.
func Run(ctx context.Context, specs []Spec, ev Event, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	label := ev.Name
	if label == "" {
		label = ev.ChannelID
	}
	var errs []error
	for i, s := range specs {
		start := time.Now()
		var out *tails
		var err error
		switch s.Kind() {
		case "exec":
			out, err = runExec(ctx, s, ev)
		case "signal":
			err = sendSignal(ctx, s)
		default:
			err = errors.New("a hook needs either exec or signal with pid_file")
		}
		fields := []zap.Field{
			zap.Int("hook", i), zap.String("kind", s.Kind()), zap.String("channel", label),
			zap.Duration("duration", time.Since(start)),
		}
		fields = append(fields, out.fields(ev.Redact)...)
		if err != nil {
			err = fmt.Errorf("hook %d (%s): %w", i, s.Kind(), err)
			log.Warn("hook failed", append(fields, zap.Error(err))...)
			errs = append(errs, err)
			continue
		}
		log.Debug("hook ran", fields...)
	}
	return errors.Join(errs...)
}

// runExec runs an exec hook in its own process group, killed as a whole
// when the timeout expires or ctx is done.
func runExec(ctx context.Context, s Spec, ev Event) (*tails, error) {
	if s.Exec[0] == "" {
		return nil, errors.New("exec: empty program name")
	}
	timeout := s.timeout()
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	out := &tails{}
	command := func() *exec.Cmd {
		// A bare program name is looked up in PATH here, which can hang
		// as the start can: startWithin calls this beside the hook.
		cmd := exec.CommandContext(hctx, s.Exec[0], s.Exec[1:]...)
		cmd.Env = Environ(os.Environ(), ev)
		cmd.Stdin = nil // /dev/null
		cmd.Stdout, cmd.Stderr = &out.stdout, &out.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error {
			// The hook may have started children (a shell script does):
			// kill the whole group, whose id is the leader's pid.
			err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			if errors.Is(err, syscall.ESRCH) {
				return os.ErrProcessDone
			}
			return err
		}
		cmd.WaitDelay = waitDelay
		return cmd
	}

	cmd, err := startWithin(hctx, command, s.Exec[0], timeout)
	if err == nil {
		err = cmd.Wait()
	}
	switch {
	case errors.Is(err, errNotStarted), errors.Is(err, errStartsStuck):
		return out, err
	case err == nil:
		return out, nil
	case errors.Is(err, exec.ErrWaitDelay):
		// The hook itself succeeded; something it started in the
		// background kept its output open. Not the hook's failure.
		return out, nil
	case ctx.Err() != nil:
		return out, fmt.Errorf("exec %s: canceled: %w", s.Exec[0], ctx.Err())
	case errors.Is(hctx.Err(), context.DeadlineExceeded):
		return out, fmt.Errorf("exec %s: timed out after %v; killed", s.Exec[0], timeout)
	}
	return out, fmt.Errorf("exec %s: %w", s.Exec[0], err)
}

// startCmd is exec.Cmd.Start; a test replaces it with one that hangs.
var startCmd = (*exec.Cmd).Start

var (
	errNotStarted  = errors.New("not started")
	errStartsStuck = errors.New("earlier starts stuck")
)

// startWithin makes the command (command: its PATH lookup) and starts it,
// unless ctx ends first. Both can hang where nothing can kill them: a
// stat(2) in PATH, or the new process's execve, reading a file system
// that stopped answering holds the thread until it returns. Then the
// hook fails at its timeout (or a stop) instead of holding its turn, the
// start is left to finish alone (the process it makes, if any, is killed
// at once, ctx having ended, and reaped), and while it has not, hooks
// running the same program fail at once rather than hold another thread
// each (as pid file reads; see stuck).
func startWithin(ctx context.Context, command func() *exec.Cmd, prog string, timeout time.Duration) (*exec.Cmd, error) {
	if n := stuckStarts.count(prog); n > 0 {
		return nil, fmt.Errorf("exec %s: %d earlier start(s) of it, given up on at their hook's timeout or a stop, have not returned (its file system is not answering?); not starting it again until they do: %w", prog, n, errStartsStuck)
	}
	type start struct {
		cmd *exec.Cmd
		err error
	}
	st, ok := beside(ctx, &stuckStarts, prog, func() start {
		cmd := command()
		return start{cmd, startCmd(cmd)}
	}, func(st start) {
		if st.err == nil {
			_ = st.cmd.Wait() // ctx has ended: the process is killed; reap it
		}
	})
	if ok { // a process that started as ctx ended is killed; Wait says so
		return st.cmd, st.err
	}
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("exec %s: not started within %v (its file system is not answering?): %w", prog, timeout, errNotStarted)
	}
	return nil, fmt.Errorf("exec %s: canceled before it started: %w", prog, errors.Join(errNotStarted, ctx.Err()))
}

// Environ returns the environment of an exec hook: the variables of base
// (the daemon's environment) that describe the system rather than tokend
// (see passed), plus the variables describing ev:
//
//	TOKEND_CHANNEL_ID     the channel ID
//	TOKEND_CHANNEL_NAME   its name ("" if none)
//	TOKEND_OUTPUTS        the output paths, joined with ":" (ambiguous for a path holding one)
//	TOKEND_OUTPUT_0 ...   each output path
//	TOKEND_EXPIRES_AT     the new token's expiry, RFC 3339 UTC
//
// Nothing else of the daemon's environment reaches a hook: it may hold a
// channel secret (channel_secret: ${VAR}) and a hook's output is logged;
// NOTIFY_SOCKET would let a hook speak to systemd for tokend. The token
// itself is never in it: a hook reads it from an output.
func Environ(base []string, ev Event) []string {
	env := make([]string, 0, 8+len(ev.Outputs))
	for _, kv := range base {
		if name, _, _ := strings.Cut(kv, "="); passed(name) {
			env = append(env, kv)
		}
	}
	expires := ""
	if !ev.ExpiresAt.IsZero() {
		expires = ev.ExpiresAt.UTC().Format(time.RFC3339)
	}
	env = append(env,
		"TOKEND_CHANNEL_ID="+ev.ChannelID,
		"TOKEND_CHANNEL_NAME="+ev.Name,
		"TOKEND_OUTPUTS="+strings.Join(ev.Outputs, ":"),
		"TOKEND_EXPIRES_AT="+expires,
	)
	for i, p := range ev.Outputs {
		env = append(env, "TOKEND_OUTPUT_"+strconv.Itoa(i)+"="+p)
	}
	return env
}

// passed reports whether the daemon's variable name reaches hooks: what a
// program needs to find commands and files and to speak the user's
// language, nothing that could carry a secret.
func passed(name string) bool {
	switch name {
	case "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR":
		return true
	}
	return strings.HasPrefix(name, "LC_")
}

// signals maps the names a hook may use to signals.
var signals = map[string]syscall.Signal{
	"HUP":  syscall.SIGHUP,
	"USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
	"TERM": syscall.SIGTERM,
	"INT":  syscall.SIGINT,
}

// ParseSignal maps "HUP", "SIGHUP", "hup"... to the signal.
func ParseSignal(name string) (syscall.Signal, error) {
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	if !ok {
		return 0, fmt.Errorf("unknown signal %q (want HUP, USR1, USR2, TERM or INT)", name)
	}
	return sig, nil
}

// maxPID is the largest process ID Linux hands out (PID_MAX_LIMIT on
// 64-bit systems). A larger number is no process: kill(2) takes a 32-bit
// pid_t, so 4294967296 would arrive as 0 (tokend's own process group) and
// 4294967295 as -1 (every process tokend may signal).
const maxPID = 1 << 22

// ReadPID reads the process ID in path: a decimal integer from 1 to
// 4194304, surrounded by optional white space. path must be a regular
// file: a FIFO or a device there is refused without blocking.
func ReadPID(path string) (int, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	} else if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("pid file %s is not a regular file", path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, maxPIDFile+1))
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	if len(buf) > maxPIDFile {
		return 0, fmt.Errorf("pid file %s is too long to hold a pid", path)
	}
	s := strings.TrimSpace(string(buf))
	if s == "" {
		return 0, fmt.Errorf("pid file %s is empty", path)
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || pid > maxPID {
		return 0, fmt.Errorf("pid file %s holds %q, not a process ID (1 to %d)", path, s, maxPID)
	}
	return pid, nil
}

// sendSignal sends s.Signal to the process in s.PIDFile, within the
// hook's timeout and ctx: a pid file on a file system that stopped
// answering leaves its read behind, not the hooks (and a stop) waiting.
func sendSignal(ctx context.Context, s Spec) error {
	sig, err := ParseSignal(s.Signal)
	if err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	if s.PIDFile == "" {
		return errors.New("signal: no pid_file")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	if n := stuck.count(s.PIDFile); n > 0 {
		return fmt.Errorf("signal: pid file %s: %d earlier read(s) of it, given up on at their hook's timeout or a stop, have not returned (its file system is not answering?); not reading it again until they do", s.PIDFile, n)
	}
	timeout := s.timeout()
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	read := readPID
	err, ok := beside(hctx, &stuck, s.PIDFile, func() error { return signalPID(hctx, s, sig, read) }, nil)
	if !ok {
		return fmt.Errorf("signal: pid file %s not read within %v: %w", s.PIDFile, timeout, hctx.Err())
	}
	return err
}

// beside runs fn on a goroutine of its own and waits for its result until
// ctx ends. Then fn is left to finish alone, counted in calls under key
// until it returns (the caller refuses new calls for key meanwhile), and
// late, if not nil, gets its result. ok is false if ctx ended first; a
// result that came as ctx ended (select takes either) is returned, ok.
func beside[T any](ctx context.Context, calls *stuckCalls, key string, fn func() T, late func(T)) (res T, ok bool) {
	done := make(chan T, 1)
	r := new(pendingCall)
	go func() {
		v := fn()
		calls.returned(key, r)
		done <- v
	}()
	select {
	case v := <-done:
		return v, true
	case <-ctx.Done():
	}
	select {
	case v := <-done:
		return v, true
	default:
	}
	calls.givenUp(key, r)
	if late != nil {
		go func() { late(<-done) }()
	}
	return res, false
}

// stuckStarts is stuck's count for exec hooks' programs (startWithin).
var stuckStarts = stuckCalls{paths: make(map[string]int)}

// stuck counts, per pid file, the reads sendSignal gave up on that have
// not returned. While one has not, no new read of that file starts: each
// holds a thread blocked in the kernel, and channels rotating with a pid
// file on a file system that stopped answering would otherwise add one
// at every hook, up to Go's limit of 10,000 threads, which ends the
// process. Reads that return in time run side by side.
var stuck = stuckCalls{paths: make(map[string]int)}

type stuckCalls struct {
	mu    sync.Mutex
	paths map[string]int
}

// pendingCall is one pid file read's or start's state, under stuckCalls.mu.
type pendingCall struct{ returned, givenUp bool }

func (s *stuckCalls) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[path]
}

func (s *stuckCalls) givenUp(path string, r *pendingCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.returned {
		r.givenUp = true
		s.paths[path]++
	}
}

func (s *stuckCalls) returned(path string, r *pendingCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.returned = true
	if r.givenUp {
		if s.paths[path]--; s.paths[path] <= 0 {
			delete(s.paths, path)
		}
	}
}

// readPID is ReadPID; a test replaces it with one that hangs.
var readPID = ReadPID

// signalPID reads the pid file and signals its process, unless ctx ended
// meanwhile: a read that outlasted the hook's timeout (sendSignal has
// given up on it) or a stop must not signal minutes later.
func signalPID(ctx context.Context, s Spec, sig syscall.Signal, readPID func(string) (int, error)) error {
	pid, err := readPID(s.PIDFile)
	if err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("signal: pid file %s read too late: %w", s.PIDFile, err)
	}
	switch pid {
	case 1:
		// Init: systemd (which takes SIGINT for ctrl-alt-del), or in a
		// container tokend itself. A bot in another container writes
		// the pid its own namespace gave it, often 1, which is not a
		// process tokend can reach.
		return fmt.Errorf("signal: pid file %s names pid 1, the init process of tokend's PID namespace; refusing. A bot in another container must share its process namespace with tokend (its pid file then holds the pid tokend sees), or use an exec hook", s.PIDFile)
	case os.Getpid():
		return fmt.Errorf("signal: pid file %s names tokend's own pid %d; refusing", s.PIDFile, pid)
	}
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(pid)); err == nil {
		// kill(2) with one of tokend's thread IDs signals tokend itself.
		return fmt.Errorf("signal: pid file %s names one of tokend's own threads (%d); refusing", s.PIDFile, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s to pid %d (from %s): %w", s.Signal, pid, s.PIDFile, err)
	}
	return nil
}

// tails keeps the end of a hook's stdout and stderr.
type tails struct{ stdout, stderr tailBuffer }

// fields logs the captured output, if any, without the secrets in redact.
func (t *tails) fields(redact []string) []zap.Field {
	if t == nil {
		return nil
	}
	var fs []zap.Field
	if s := t.stdout.String(); s != "" {
		fs = append(fs, zap.String("stdout", redactAll(s, redact)))
	}
	if s := t.stderr.String(); s != "" {
		fs = append(fs, zap.String("stderr", redactAll(s, redact)))
	}
	return fs
}

// redactAll replaces every secret in s with [redacted]. A tail cut off
// inside a secret starts with its end: a start of s that is the last 8 or
// more bytes of a secret is redacted too. Then so is anything that could
// be another channel's token (redactTokenLike): a hook shared by several
// channels may print theirs.
func redactAll(s string, secrets []string) string {
	return redactTokenLike(redactSecrets(s, secrets))
}

// Token-like text: LINE's tokens are base64 (short-lived, 172 characters)
// or JWTs (v2.1 and stateless, longer), so any run of tokenRun or more
// base64 and JWT characters is logged as [redacted]; so is a run of
// cutRun or more at the start of a tail whose start was dropped, which
// may be a token's end. A backslash and a percent sign count too, so a
// token whose slashes a JSON encoder escaped (\/) or a URL encoded (%2F)
// is still one run; tokenRun is under 76, so a token that a base64
// encoder wrapped leaves at most its short last line (reviewed on
// 2026-12-06: both leaked the whole token, in pieces under 100).
const tokenRun, cutRun = 64, 16

func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '+' || c == '/' || c == '=' || c == '\\' || c == '%'
}

func redactTokenLike(s string) string {
	const mark = "[redacted]"
	var b strings.Builder
	body, cut := strings.CutPrefix(s, "...")
	if cut {
		b.WriteString("...")
	}
	for i := 0; i < len(body); {
		j := i
		for j < len(body) && tokenChar(body[j]) {
			j++
		}
		switch {
		case j-i >= tokenRun, cut && i == 0 && j-i >= cutRun:
			b.WriteString(mark)
		default:
			b.WriteString(body[i:j])
		}
		if j == len(body) {
			break
		}
		b.WriteByte(body[j])
		i = j + 1
	}
	return b.String()
}

func redactSecrets(s string, secrets []string) string {
	const mark, minPart = "[redacted]", 8
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		s = strings.ReplaceAll(s, sec, mark)
		body, dots := strings.CutPrefix(s, "...") // a truncated tail's mark
		for k := min(len(sec)-1, len(body)); k >= minPart; k-- {
			if strings.HasPrefix(body, sec[len(sec)-k:]) {
				s = mark + body[k:]
				if dots {
					s = "..." + s
				}
				break
			}
		}
	}
	return s
}

// tailBuffer is an io.Writer keeping only the last outputTail bytes
// written. exec copies a pipe to it from its own goroutine, hence the lock.
type tailBuffer struct {
	mu        sync.Mutex
	buf       []byte
	truncated bool
}

// Write keeps the tail of p.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= outputTail {
		b.buf = append(b.buf[:0], p[len(p)-outputTail:]...)
		b.truncated = true
		return n, nil
	}
	if over := len(b.buf) + len(p) - outputTail; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.truncated = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// String is the kept output, marked when its start was dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimRight(string(b.buf), "\n")
	if b.truncated {
		s = "..." + s
	}
	return s
}
