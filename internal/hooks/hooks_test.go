package hooks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// script writes an executable shell script to dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = v
		}
	}
	return env
}

func TestRunExecEnvironment(t *testing.T) {
	const fakeToken = "eyJfake.token.value-abc"
	t.Setenv("LINE_CHANNEL_ACCESS_TOKEN", fakeToken)
	t.Setenv("TOKEND_CONFIG", "/etc/tokend/config.yaml")
	t.Setenv("TOKEND_CHANNEL_ID", "spoofed")
	t.Setenv("TOKEND_OUTPUT_7", "/spoofed")
	t.Setenv("HOOK_TEST_SECRET", "channel-secret-from-env")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LC_TIME", "C.UTF-8")

	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	hook := script(t, dir, "dump.sh", `env > "$1"`+"\n")
	ev := Event{
		ChannelID: "1657000000",
		Name:      "shop-bot",
		Outputs:   []string{"/shared/tokens/shop-bot.token", "/shared/tokens/shop-bot.json"},
		ExpiresAt: time.Date(2025, 4, 3, 14, 5, 6, 0, time.FixedZone("JST", 9*3600)),
	}
	if err := Run(context.Background(), []Spec{{Exec: []string{hook, envFile}}}, ev, nil); err != nil {
		t.Fatal(err)
	}
	env := readEnv(t, envFile)
	want := map[string]string{
		"TOKEND_CHANNEL_ID":   "1657000000",
		"TOKEND_CHANNEL_NAME": "shop-bot",
		"TOKEND_OUTPUTS":      "/shared/tokens/shop-bot.token:/shared/tokens/shop-bot.json",
		"TOKEND_OUTPUT_0":     "/shared/tokens/shop-bot.token",
		"TOKEND_OUTPUT_1":     "/shared/tokens/shop-bot.json",
		"TOKEND_EXPIRES_AT":   "2025-04-03T05:05:06Z",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q; want %q", k, env[k], v)
		}
	}
	for k, v := range env {
		if strings.HasPrefix(k, "TOKEND_") {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected %s=%q reached the hook", k, v)
			}
		}
		if k == "LINE_CHANNEL_ACCESS_TOKEN" || strings.Contains(v, fakeToken) {
			t.Errorf("token-looking variable %s reached the hook", k)
		}
	}
	for _, k := range []string{"HOOK_TEST_SECRET", "NOTIFY_SOCKET"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s reached the hook", k)
		}
	}
	if env["PATH"] != os.Getenv("PATH") || env["LC_TIME"] != "C.UTF-8" {
		t.Errorf("PATH = %q, LC_TIME = %q: the system's variables were not passed on", env["PATH"], env["LC_TIME"])
	}
}

func TestEnvironNoName(t *testing.T) {
	env := Environ([]string{"PATH=/bin", "TOKEND_X=1", "LINE_CHANNEL_ACCESS_TOKEN=t", "SHOP_SECRET=s", "LC_ALL=C", "PATHX=no"},
		Event{ChannelID: "1"})
	want := []string{"PATH=/bin", "LC_ALL=C", "TOKEND_CHANNEL_ID=1", "TOKEND_CHANNEL_NAME=",
		"TOKEND_OUTPUTS=", "TOKEND_EXPIRES_AT="}
	if strings.Join(env, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Environ =\n%s\nwant\n%s", strings.Join(env, "\n"), strings.Join(want, "\n"))
	}
}

// TestRunExecTimeout runs a hook that starts a background child holding its
// stdout and then sleeps: the whole process group must die at the timeout,
// well before WaitDelay would have cut the pipes.
func TestRunExecTimeout(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	hook := script(t, dir, "slow.sh", "sleep 30 &\necho $! > \"$1\"\nsleep 30\n")
	log, logs := observed()
	start := time.Now()
	err := Run(context.Background(), []Spec{{Exec: []string{hook, pidFile}, Timeout: 200 * time.Millisecond}},
		Event{ChannelID: "1", Name: "bot"}, log)
	elapsed := time.Since(start)
	want := "hook 0 (exec): exec " + hook + ": timed out after 200ms; killed"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if elapsed > 1500*time.Millisecond {
		t.Fatalf("Run took %v: the process group was not killed at the timeout", elapsed)
	}
	if logs.FilterMessage("hook failed").Len() != 1 {
		t.Fatalf("logs: %v", logs.All())
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	// Dead: gone, or a zombie waiting for whoever reaps orphans here.
	deadline := time.Now().Add(2 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		if err != nil {
			break
		}
		if _, rest, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(rest, "Z") {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("background child %d survived the timeout", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunExecBackgroundChildIsNotAFailure: a hook that exits 0 after
// starting a process that keeps its output open (a script's `daemon &`)
// has succeeded. Run stops waiting for the output after waitDelay and
// reports nothing; the hook's own output is kept.
func TestRunExecBackgroundChildIsNotAFailure(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	hook := script(t, dir, "starts.sh", "sleep 30 &\necho $! > \"$1\"\necho started\n")
	t.Cleanup(func() {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	log, logs := observed()
	if err := Run(context.Background(), []Spec{{Exec: []string{hook, pidFile}}}, Event{ChannelID: "1", Name: "bot"}, log); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ran := logs.FilterMessage("hook ran").All()
	if logs.FilterMessage("hook failed").Len() != 0 || len(ran) != 1 {
		t.Fatalf("logs: %v", logs.All())
	}
	if out := ran[0].ContextMap()["stdout"]; out != "started" {
		t.Errorf("stdout logged as %q, want the hook's own output", out)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Run(ctx, []Spec{{Exec: []string{"/bin/true"}}}, Event{ChannelID: "1"}, nil)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
}

// TestRunContinuesAfterFailures checks that every hook runs, in order, and
// every failure is logged once and returned.
func TestRunContinuesAfterFailures(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	step := func(name string) string {
		return script(t, dir, name+".sh", "echo "+name+" >> \""+order+"\"\n")
	}
	fail := script(t, dir, "fail.sh", "echo "+"fail >> \""+order+"\"\necho 'bad things happened' >&2\nexit 3\n")
	specs := []Spec{
		{Exec: []string{step("one")}},
		{Exec: []string{fail}},
		{Exec: []string{filepath.Join(dir, "missing")}},
		{Signal: "HUP", PIDFile: filepath.Join(dir, "missing.pid")},
		{Exec: []string{"/bin/true"}, Signal: "HUP"},
		{},
		{Exec: []string{""}},
		{Exec: []string{step("last")}},
	}
	log, logs := observed()
	err := Run(context.Background(), specs, Event{ChannelID: "1657000000"}, log)
	if err == nil {
		t.Fatal("no error")
	}
	wantErrs := []string{
		"hook 1 (exec): exec " + fail + ": exit status 3",
		"hook 2 (exec): exec " + filepath.Join(dir, "missing") + ": fork/exec " + filepath.Join(dir, "missing") + ": no such file or directory",
		"hook 3 (signal): signal: pid file: open " + filepath.Join(dir, "missing.pid") + ": no such file or directory",
		"hook 4 (invalid): a hook needs either exec or signal with pid_file",
		"hook 5 (invalid): a hook needs either exec or signal with pid_file",
		"hook 6 (exec): exec: empty program name",
	}
	if got := err.Error(); got != strings.Join(wantErrs, "\n") {
		t.Fatalf("err =\n%s\nwant\n%s", got, strings.Join(wantErrs, "\n"))
	}
	data, _ := os.ReadFile(order)
	if string(data) != "one\nfail\nlast\n" {
		t.Fatalf("hooks ran as %q", data)
	}
	warns := logs.FilterMessage("hook failed").All()
	if len(warns) != len(wantErrs) {
		t.Fatalf("%d warnings; want %d: %v", len(warns), len(wantErrs), warns)
	}
	for i, w := range warns {
		m := w.ContextMap()
		if w.Level != zapcore.WarnLevel || m["channel"] != "1657000000" || m["error"] != wantErrs[i] || m["kind"] == nil || m["hook"] == nil {
			t.Errorf("warning %d: %v %v", i, w.Level, m)
		}
	}
	if got := warns[0].ContextMap()["stderr"]; got != "bad things happened" {
		t.Errorf("stderr of the failing hook = %q", got)
	}
	if n := logs.FilterMessage("hook ran").Len(); n != 2 {
		t.Errorf("%d debug lines for successful hooks; want 2", n)
	}
}

func TestRunOutputCapped(t *testing.T) {
	dir := t.TempDir()
	hook := script(t, dir, "loud.sh", "i=0\nwhile [ $i -lt 300 ]; do echo \"line $i: $(printf '%040d' 0)\"; i=$((i+1)); done\necho END\n")
	log, logs := observed()
	if err := Run(context.Background(), []Spec{{Exec: []string{hook}}}, Event{ChannelID: "1"}, log); err != nil {
		t.Fatal(err)
	}
	out, _ := logs.FilterMessage("hook ran").All()[0].ContextMap()["stdout"].(string)
	if len(out) > outputTail+3 || !strings.HasPrefix(out, "...") || !strings.HasSuffix(out, "END") {
		t.Fatalf("stdout logged as %d bytes: %.40q...%q", len(out), out, out[max(0, len(out)-20):])
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	b.Write([]byte("hello\n"))
	if b.String() != "hello" {
		t.Fatalf("%q", b.String())
	}
	big := strings.Repeat("x", outputTail-2) + "yz"
	b.Write([]byte(big))
	if s := b.String(); s != "..."+big {
		t.Fatalf("len %d", len(s))
	}
	b = tailBuffer{}
	b.Write([]byte(strings.Repeat("a", outputTail+10) + "end"))
	if s := b.String(); len(s) != outputTail+3 || !strings.HasSuffix(s, "end") {
		t.Fatalf("len %d", len(s))
	}
}

// startTrap starts a shell that, sent SIGUSR1, writes "usr1" to the file
// it returns and exits; it returns once the trap is set.
func startTrap(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	dir := t.TempDir()
	got, ready := filepath.Join(dir, "got"), filepath.Join(dir, "ready")
	cmd := exec.Command("sh", "-c", `trap 'echo usr1 > "$1"; exit 0' USR1; : > "$2"; while :; do sleep 0.01; done`, "sh", got, ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return cmd, got
		}
		if time.Now().After(deadline) {
			t.Fatal("the trap shell did not start")
		}
	}
}

func TestRunSignal(t *testing.T) {
	for _, name := range []string{"USR1", "SIGUSR1", "usr1"} {
		t.Run(name, func(t *testing.T) {
			cmd, got := startTrap(t)
			pidFile := filepath.Join(t.TempDir(), "bot.pid")
			if err := os.WriteFile(pidFile, []byte(" "+strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Run(context.Background(), []Spec{{Signal: name, PIDFile: pidFile}}, Event{ChannelID: "1"}, nil); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the signalled shell: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the shell did not get SIGUSR1")
			}
			if b, err := os.ReadFile(got); err != nil || strings.TrimSpace(string(b)) != "usr1" {
				t.Fatalf("the shell's trap wrote %q, %v", b, err)
			}
		})
	}
}

// TestSignalBounded: a pid file that does not answer (a hung network file
// system) costs the hook its timeout, not the hooks after it and a stop.
func TestSignalBounded(t *testing.T) {
	hang := make(chan struct{})
	defer waitUnstuck(t, "/nfs/bot.pid")
	defer close(hang)
	readPID = func(string) (int, error) { <-hang; return 0, errors.New("unblocked") }
	defer func() { readPID = ReadPID }()
	send := func(ctx context.Context, s Spec) error { return sendWithin(t, ctx, s) }
	err := send(context.Background(), Spec{Signal: "HUP", PIDFile: "/nfs/bot.pid", Timeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "pid file /nfs/bot.pid not read within 50ms") {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = send(ctx, Spec{Signal: "HUP", PIDFile: "/nfs/bot.pid", Timeout: time.Hour})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("with ctx done: err = %v", err)
	}
}

// TestSignalNotSentLate: a pid file read that outlasts the hook's timeout
// does not signal when it finally returns.
func TestSignalNotSentLate(t *testing.T) {
	cmd, got := startTrap(t)
	release, returned := make(chan struct{}), make(chan struct{})
	readPID = func(string) (int, error) {
		<-release
		defer close(returned)
		return cmd.Process.Pid, nil
	}
	defer func() { readPID = ReadPID }()
	err := sendSignal(context.Background(), Spec{Signal: "USR1", PIDFile: "/nfs/bot.pid", Timeout: 20 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not read within") {
		t.Fatalf("err = %v", err)
	}
	close(release)
	<-returned
	waitUnstuck(t, "/nfs/bot.pid")
	time.Sleep(200 * time.Millisecond) // the trap would have written by now
	if _, err := os.Stat(got); err == nil {
		t.Fatal("the signal went out after the hook had timed out")
	}
}

// TestSignalRefusesOwnThread: a pid file naming one of tokend's threads
// (a reused number) is refused: kill(2) with a thread ID signals the
// whole process.
func TestSignalRefusesOwnThread(t *testing.T) {
	// A goroutine locked to a thread other than the main one (whose ID
	// is the pid): each try holds its thread until the test ends.
	release := make(chan struct{})
	defer close(release)
	tid := os.Getpid()
	for try := 0; tid == os.Getpid() && try < 100; try++ {
		tids := make(chan int)
		go func() {
			runtime.LockOSThread()
			tids <- syscall.Gettid()
			<-release
		}()
		tid = <-tids
	}
	if tid == os.Getpid() {
		t.Fatal("no thread other than the main one")
	}
	pidFile := filepath.Join(t.TempDir(), "bot.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(tid)), 0o644); err != nil {
		t.Fatal(err)
	}
	err := sendSignal(context.Background(), Spec{Signal: "USR1", PIDFile: pidFile})
	want := fmt.Sprintf("signal: pid file %s names one of tokend's own threads (%d); refusing", pidFile, tid)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

func TestSignalErrors(t *testing.T) {
	dir := t.TempDir()
	pf := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := pf("good", strconv.Itoa(os.Getpid()))
	// A FIFO blocks an open for reading until a writer comes: refused
	// without opening it so.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"unknown signal", Spec{Signal: "KILL", PIDFile: good}, `signal: unknown signal "KILL" (want HUP, USR1, USR2, TERM or INT)`},
		{"no signal", Spec{PIDFile: good}, `signal: unknown signal "" (want HUP, USR1, USR2, TERM or INT)`},
		{"no pid file", Spec{Signal: "HUP"}, "signal: no pid_file"},
		{"empty", Spec{Signal: "HUP", PIDFile: pf("empty", " \n")}, "signal: pid file " + dir + "/empty is empty"},
		{"text", Spec{Signal: "HUP", PIDFile: pf("text", "abc\n")}, "signal: pid file " + dir + `/text holds "abc", not a process ID (1 to 4194304)`},
		{"zero", Spec{Signal: "HUP", PIDFile: pf("zero", "0")}, "signal: pid file " + dir + `/zero holds "0", not a process ID (1 to 4194304)`},
		{"negative", Spec{Signal: "HUP", PIDFile: pf("neg", "-1")}, "signal: pid file " + dir + `/neg holds "-1", not a process ID (1 to 4194304)`},
		{"two numbers", Spec{Signal: "HUP", PIDFile: pf("two", "12 34")}, "signal: pid file " + dir + `/two holds "12 34", not a process ID (1 to 4194304)`},
		{"control bytes", Spec{Signal: "HUP", PIDFile: pf("ctl", "1\x1b[2J")}, "signal: pid file " + dir + `/ctl holds "1\x1b[2J", not a process ID (1 to 4194304)`},
		{"huge", Spec{Signal: "HUP", PIDFile: pf("huge", strings.Repeat("9", 100))}, "signal: pid file " + dir + "/huge is too long to hold a pid"},
		{"overflow", Spec{Signal: "HUP", PIDFile: pf("overflow", strings.Repeat("9", 30))}, "signal: pid file " + dir + `/overflow holds "` + strings.Repeat("9", 30) + `", not a process ID (1 to 4194304)`},
		// kill(2) takes a 32-bit pid_t: these would arrive as 0 (tokend's
		// own process group), -1 (every process it may signal) and -25529
		// (process group 25529).
		{"wraps to 0", Spec{Signal: "HUP", PIDFile: pf("w0", "4294967296")}, "signal: pid file " + dir + `/w0 holds "4294967296", not a process ID (1 to 4194304)`},
		{"wraps to -1", Spec{Signal: "HUP", PIDFile: pf("wm1", "4294967295")}, "signal: pid file " + dir + `/wm1 holds "4294967295", not a process ID (1 to 4194304)`},
		{"wraps to a group", Spec{Signal: "HUP", PIDFile: pf("wg", "4294941767")}, "signal: pid file " + dir + `/wg holds "4294941767", not a process ID (1 to 4194304)`},
		{"past pid_max", Spec{Signal: "HUP", PIDFile: pf("big", "4194305")}, "signal: pid file " + dir + `/big holds "4194305", not a process ID (1 to 4194304)`},
		{"init", Spec{Signal: "HUP", PIDFile: pf("init", "1\n")}, "signal: pid file " + dir + "/init names pid 1, the init process of tokend's PID namespace; refusing. A bot in another container must share its process namespace with tokend (its pid file then holds the pid tokend sees), or use an exec hook"},
		{"tokend itself", Spec{Signal: "TERM", PIDFile: good}, "signal: pid file " + dir + "/good names tokend's own pid " + strconv.Itoa(os.Getpid()) + "; refusing"},
		{"directory", Spec{Signal: "HUP", PIDFile: dir}, "signal: pid file " + dir + " is not a regular file"},
		{"fifo", Spec{Signal: "HUP", PIDFile: fifo}, "signal: pid file " + fifo + " is not a regular file"},
		{"no such process", Spec{Signal: "HUP", PIDFile: pf("gone", "4194304")}, "signal HUP to pid 4194304 (from " + dir + "/gone): no such process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sendSignal(context.Background(), tt.spec)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant  %s", err, tt.want)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	for name, want := range map[string]syscall.Signal{
		"HUP": syscall.SIGHUP, "SIGHUP": syscall.SIGHUP, "hup": syscall.SIGHUP, "USR1": syscall.SIGUSR1,
		"USR2": syscall.SIGUSR2, "SIGTERM": syscall.SIGTERM, "INT": syscall.SIGINT,
	} {
		if got, err := ParseSignal(name); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	for _, name := range []string{"", "SIG", "KILL", "9", "SIGSIGHUP", "HUP "} {
		if _, err := ParseSignal(name); err == nil {
			t.Errorf("ParseSignal(%q) accepted", name)
		}
	}
}

func TestSpecKind(t *testing.T) {
	tests := []struct {
		s    Spec
		want string
	}{
		{Spec{Exec: []string{"x"}}, "exec"},
		{Spec{Exec: []string{"x"}, Timeout: time.Second}, "exec"},
		{Spec{Signal: "HUP", PIDFile: "/p"}, "signal"},
		{Spec{PIDFile: "/p"}, "signal"},
		{Spec{Exec: []string{"x"}, PIDFile: "/p"}, "invalid"},
		{Spec{}, "invalid"},
	}
	for _, tt := range tests {
		if got := tt.s.Kind(); got != tt.want {
			t.Errorf("%+v.Kind() = %s; want %s", tt.s, got, tt.want)
		}
	}
}

// TestRunRedacts: a hook may print the channel's token or secret (a
// `curl -v` with the token in a header, a `cat` of an output); its output
// is logged with every one of them, and a tail cut off inside one, as
// [redacted]. They never reach the hook's environment.
func TestRunRedacts(t *testing.T) {
	const token, old, secret = "eyJhbGciOiJIUzI1NiJ9.current-token-0123456789", "eyJold-superseded-token-abcdefghij", "channel-secret-0123456789abcdef"
	dir := t.TempDir()
	ev := Event{ChannelID: "1", Redact: []string{token, old, "", secret}}
	loud := script(t, dir, "loud.sh", "echo \"Authorization: Bearer "+token+"\"\necho old="+old+" >&2\necho secret="+secret+"\nexit 3\n")
	// A tail that begins inside the token: only its last 20 bytes kept.
	cut := script(t, dir, "cut.sh", fmt.Sprintf("printf '%%s' '%s'\nprintf ' x%%.0s' $(seq %d)\necho\n", token, (outputTail-20)/2))
	env := filepath.Join(dir, "env")
	dump := script(t, dir, "env.sh", "env > "+env+"\n")
	log, logs := observed()
	_ = Run(context.Background(), []Spec{{Exec: []string{loud}}, {Exec: []string{cut}}, {Exec: []string{dump}}}, ev, log)

	var text []string
	for _, e := range logs.All() {
		text = append(text, e.Message+" "+fmt.Sprint(e.ContextMap()))
	}
	all := strings.Join(text, "\n")
	for _, s := range []string{token, old, secret, token[len(token)-20:]} {
		if strings.Contains(all, s) {
			t.Errorf("a log line holds %q:\n%s", s, all)
		}
	}
	failed := logs.FilterMessage("hook failed").All()
	if len(failed) != 1 {
		t.Fatalf("%d failed hooks logged; want 1", len(failed))
	}
	f := failed[0].ContextMap()
	if f["stdout"] != "Authorization: Bearer [redacted]\nsecret=[redacted]" || f["stderr"] != "old=[redacted]" {
		t.Errorf("failed hook logged stdout %q, stderr %q", f["stdout"], f["stderr"])
	}
	ran := logs.FilterMessage("hook ran").All()
	if len(ran) != 2 {
		t.Fatalf("%d hooks ran; want 2", len(ran))
	}
	if out, _ := ran[0].ContextMap()["stdout"].(string); !strings.HasPrefix(out, "...[redacted] x x") {
		t.Errorf("a tail cut inside the token logged as %.40q...", out)
	}
	b, err := os.ReadFile(env)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ev.Redact {
		if s != "" && strings.Contains(string(b), s) {
			t.Errorf("the hook's environment holds %q", s)
		}
	}
}

func TestRedactAll(t *testing.T) {
	secrets := []string{"0123456789abcdef", "short"}
	// A short-lived token's shape: 128 random bytes in standard base64.
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xef, 0xff}, 43)[:128])
	for _, c := range []struct{ in, want string }{
		{"a 0123456789abcdef b 0123456789abcdef", "a [redacted] b [redacted]"},
		{"...89abcdef tail", "...[redacted] tail"}, // the last 8 bytes of a secret, at a cut
		{"...9abcdef tail", "...9abcdef tail"},     // 7 bytes: too little to be sure
		{"89abcdef at the start, uncut", "[redacted] at the start, uncut"},
		{"a short one", "a [redacted] one"},
		{"nothing here", "nothing here"},
		// Another channel's token, which redactAll was not given.
		{"Authorization: Bearer " + other + "\n", "Authorization: Bearer [redacted]\n"},
		{`{"access_token":"` + other + `"}`, `{"access_token":"[redacted]"}`},
		{"tok: " + other[:63] + " " + other[:64], "tok: " + other[:63] + " [redacted]"},                                  // 63 and 64 characters
		{`{"token":"` + strings.ReplaceAll(other, "/", `\/`) + `"}`, `{"token":"[redacted]"}`},                           // JSON-escaped slashes
		{"t=" + strings.ReplaceAll(other, "/", "%2F") + "&x", "[redacted]&x"},                                            // URL-encoded
		{other[:76] + "\n" + other[76:152] + "\n" + other[152:] + "\n", "[redacted]\n[redacted]\n" + other[152:] + "\n"}, // wrapped at 76: the last 20 characters only
		{"..." + other[len(other)-16:] + " ok", "...[redacted] ok"},                                                      // a cut tail starting in one
		{"..." + other[len(other)-15:] + " ok", "..." + other[len(other)-15:] + " ok"},                                   // 15: too few to tell
		{other[len(other)-16:] + " uncut", other[len(other)-16:] + " uncut"},
		{"/run/tokend/tokens/shop-bot.token written", "/run/tokend/tokens/shop-bot.token written"},
	} {
		if got := redactAll(c.in, secrets); got != c.want {
			t.Errorf("redactAll(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// sendWithin is sendSignal, failing t if it has not returned within 30s.
func sendWithin(t *testing.T, ctx context.Context, s Spec) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- sendSignal(ctx, s) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second): // a hang guard, not a measurement
		t.Fatal("sendSignal still waiting for the pid file after 30s")
		return nil
	}
}

// waitUnstuck waits until no read of path that sendSignal gave up on is
// still counted (its goroutine has returned), so that tests after this
// one find the pid file readable.
func waitUnstuck(t *testing.T, path string) { t.Helper(); waitReturned(t, &stuck, path) }

// waitReturned waits until calls counts nothing under key: every call
// given up on has returned.
func waitReturned(t *testing.T, calls *stuckCalls, key string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); calls.count(key) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a call for %s given up on is still counted as stuck after 10s", key)
		}
	}
}

// TestSignalStuckReadNotRepeated: while a pid file read that a hook gave
// up on has not returned, later hooks for that file fail at once without
// reading it (each read would hold a thread), and read it again once it
// has. Reads that return in time run side by side.
func TestSignalStuckReadNotRepeated(t *testing.T) {
	const hung, fine = "/nfs/stuck.pid", "/run/fine.pid"
	var mu sync.Mutex
	reads := map[string]int{}
	hang, entered := make(chan struct{}), make(chan struct{}, 2)
	both := make(chan struct{})
	readPID = func(path string) (int, error) {
		mu.Lock()
		reads[path]++
		mu.Unlock()
		if path == hung {
			<-hang
			return 0, errors.New("unblocked")
		}
		entered <- struct{}{}
		select {
		case <-both:
		case <-time.After(10 * time.Second):
		}
		return 0, errors.New("no such process, say")
	}
	defer func() { readPID = ReadPID }()
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return reads[path]
	}

	err := sendSignal(context.Background(), Spec{Signal: "HUP", PIDFile: hung, Timeout: 20 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not read within") {
		t.Fatalf("first hook: err = %v", err)
	}
	for range 3 {
		err = sendWithin(t, context.Background(), Spec{Signal: "HUP", PIDFile: hung, Timeout: time.Hour})
		if err == nil || !strings.Contains(err.Error(), "1 earlier read(s) of it, given up on at their hook's timeout or a stop, have not returned") {
			t.Fatalf("a hook while the read hangs: err = %v", err)
		}
	}
	if n := count(hung); n != 1 {
		t.Errorf("%d reads of the hung pid file; want 1", n)
	}

	// Two hooks for another pid file read it at the same time.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			errs <- sendSignal(context.Background(), Spec{Signal: "HUP", PIDFile: fine, Timeout: time.Hour})
		}()
	}
	for range 2 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("two hooks did not read the same pid file at once")
		}
	}
	close(both)
	for range 2 {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "no such process, say") {
			t.Errorf("a hook reading alongside another: err = %v", err)
		}
	}

	close(hang) // the file system answers again
	waitUnstuck(t, hung)
	err = sendWithin(t, context.Background(), Spec{Signal: "HUP", PIDFile: hung, Timeout: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "unblocked") {
		t.Fatalf("after the read returned: err = %v", err)
	}
	if n := count(hung); n != 2 {
		t.Errorf("%d reads of the pid file in all; want 2 (it is read again once the first returned)", n)
	}
}

// TestStuckReadsOrder: a read that returns just before its hook gives up
// on it (both at its timeout) is not counted as stuck; one given up on
// first is, until it returns.
func TestStuckReadsOrder(t *testing.T) {
	s := stuckCalls{paths: make(map[string]int)}
	early := new(pendingCall)
	s.returned("/p", early)
	s.givenUp("/p", early)
	if n := s.count("/p"); n != 0 {
		t.Fatalf("a read that returned, then was given up on: %d stuck; want 0", n)
	}
	late := new(pendingCall)
	s.givenUp("/p", late)
	if n := s.count("/p"); n != 1 {
		t.Fatalf("a read given up on: %d stuck; want 1", n)
	}
	s.returned("/p", late)
	if n := s.count("/p"); n != 0 || len(s.paths) != 0 {
		t.Fatalf("after it returned: %d stuck, %d paths kept; want 0 and 0", n, len(s.paths))
	}
}

// execWithin is runExec, failing t if it has not returned within 30s.
func execWithin(t *testing.T, s Spec) (*tails, error) {
	t.Helper()
	type result struct {
		out *tails
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := runExec(context.Background(), s, Event{})
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(30 * time.Second): // a hang guard, not a measurement
		t.Fatal("runExec still waiting after 30s")
		return nil, nil
	}
}

// TestExecStartHangs: an exec hook whose start hangs (its program on a
// file system that stopped answering: execve holds the thread) fails at
// its timeout; while that start has not returned, hooks running the same
// program fail at once instead of holding another thread; the process
// the late start makes is killed, not left running; and once the start
// has returned the program runs again.
func TestExecStartHangs(t *testing.T) {
	const prog = "/bin/sh"
	marker := filepath.Join(t.TempDir(), "ran")
	var mu sync.Mutex
	starts, latePID := 0, 0
	release, returned := make(chan struct{}), make(chan struct{})
	startCmd = func(c *exec.Cmd) error {
		mu.Lock()
		starts++
		mu.Unlock()
		// The process is made, then its start does not return until
		// release: as a vfork parent waits for its child's execve.
		err := c.Start()
		if err == nil {
			latePID = c.Process.Pid
		}
		<-release
		close(returned)
		return err
	}
	defer func() { startCmd = (*exec.Cmd).Start }()

	_, err := execWithin(t, Spec{Exec: []string{prog, "-c", "sleep 0.3; touch " + marker}, Timeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "exec /bin/sh: not started within 50ms") {
		t.Fatalf("a hung start: err = %v", err)
	}
	_, err = execWithin(t, Spec{Exec: []string{prog, "-c", "true"}, Timeout: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "1 earlier start(s) of it") {
		t.Fatalf("a hook while the start hangs: err = %v", err)
	}
	mu.Lock()
	if starts != 1 {
		t.Errorf("%d starts of the program; want 1", starts)
	}
	mu.Unlock()

	close(release) // the file system answers: the start returns
	<-returned
	waitReturned(t, &stuckStarts, prog)
	if latePID == 0 {
		t.Fatal("the late start made no process")
	}
	// Killed and reaped: kill(2) finds no such process, not even a zombie.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(latePID, 0) == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the late start's process %d is still there (running or a zombie) after 10s", latePID)
		}
	}
	time.Sleep(time.Second) // the late process would have touched the marker by now
	if _, err := os.Stat(marker); err == nil {
		t.Error("the process of a start given up on ran to its end")
	}

	startCmd = (*exec.Cmd).Start
	out, err := execWithin(t, Spec{Exec: []string{prog, "-c", "echo again"}, Timeout: 10 * time.Second})
	if err != nil || out.stdout.String() != "again" {
		t.Fatalf("after the start returned: stdout %q, err %v", out.stdout.String(), err)
	}
}

// TestExecStartHangsStopped: a stop while an exec hook's start hangs
// ends the hook at once, as canceled.
func TestExecStartHangsStopped(t *testing.T) {
	const prog = "/bin/true"
	release := make(chan struct{})
	startCmd = func(c *exec.Cmd) error {
		<-release
		return c.Start()
	}
	defer func() { startCmd = (*exec.Cmd).Start }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := runExec(ctx, Spec{Exec: []string{prog}, Timeout: time.Hour}, Event{})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "exec /bin/true: canceled before it started") {
			t.Errorf("err = %v", err)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a measurement
		t.Fatal("runExec still waiting for a hung start 30s after a stop")
	}
	close(release)
	waitReturned(t, &stuckStarts, prog)
}
