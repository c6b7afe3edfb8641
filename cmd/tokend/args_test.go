package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// argsRun runs the tokend binary in dir (the working directory; "" = the
// test's) with args and an environment without $TOKEND_CONFIG, and returns
// its exit code, stdout and stderr. A tokend still running after 30 s (a
// command that should have refused its arguments and ran instead) is
// killed: exit code -1.
func argsRun(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKEND_CONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return exitOf(t, cmd)
}

// TestCheckAndVersionRefuseArguments: check and version take no
// arguments. Before, "check new.yaml" (or "check x -config new.yaml", whose
// -config the flag parser never saw) checked the default config and said
// ok, and "check -config good.yaml junk" ignored junk.
func TestCheckAndVersionRefuseArguments(t *testing.T) {
	e := newEnv(t, 1, "")
	bad := filepath.Join(e.dir, "new.yaml")
	if err := os.WriteFile(bad, []byte("state_dir: [not a path]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const hint = "; name the config with -config FILE"
	tests := []struct {
		args []string
		arg  string // the argument the message must quote
	}{
		// $TOKEND_CONFIG (the default config) is the good one: each of
		// these used to print "ok" for it.
		{[]string{"check", bad}, bad},
		{[]string{"check", "extra-arg", "-config", bad}, "extra-arg"},
		{[]string{"check", "-config", e.cfg, "junk"}, "junk"},
		{[]string{"check", "-online", "junk"}, "junk"},
		{[]string{"check", "-config", e.cfg, "--", "junk"}, "junk"},
	}
	for _, tt := range tests {
		code, out, stderr := e.runCmd(tt.args...)
		want := `tokend check: unexpected argument "` + tt.arg + `"` + hint + "\n"
		if code != 2 || out != "" || stderr != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, no stdout, stderr %q", tt.args, code, out, stderr, want)
		}
	}
	// run and run -once say the same (they always refused, without the hint).
	for _, args := range [][]string{{"run", bad}, {"run", "-once", bad}} {
		code, out, stderr := e.runCmd(args...)
		want := `tokend run: unexpected argument "` + bad + `"` + hint + "\n"
		if code != 2 || out != "" || stderr != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, no stdout, stderr %q", args, code, out, stderr, want)
		}
	}
	// Without arguments check still works, with the config from either place.
	if code, out, stderr := e.runCmd("check"); code != 0 || !strings.Contains(out, "ok (1 channel)") {
		t.Errorf("check: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := argsRun(t, "", "check", "-config", e.cfg); code != 0 || !strings.Contains(out, "ok (1 channel)") {
		t.Errorf("check -config: exit %d\n%s%s", code, out, stderr)
	}
	if code, _, stderr := argsRun(t, "", "check", "-config", bad); code != 2 || !strings.Contains(stderr, "state_dir") {
		t.Errorf("check -config new.yaml (broken): exit %d\n%s", code, stderr)
	}

	for _, tt := range []struct {
		args []string
		arg  string
	}{
		{[]string{"version", "extra"}, "extra"},
		{[]string{"version", "extra", "more"}, "extra"},
		{[]string{"version", "--", "-x"}, "-x"},
	} {
		code, out, stderr := argsRun(t, "", tt.args...)
		want := `tokend version: unexpected argument "` + tt.arg + `"; run tokend version without arguments` + "\n"
		if code != 2 || out != "" || stderr != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, no stdout, stderr %q", tt.args, code, out, stderr, want)
		}
	}
	if code, out, _ := argsRun(t, "", "version"); code != 0 || !strings.HasPrefix(out, "tokend ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}

// TestDevRefusesArguments: "tokend dev junk -dir D" used to ignore junk and
// -dir with it, and ran in ./tokend-dev. It must fail before creating
// anything.
func TestDevRefusesArguments(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := argsRun(t, dir, "dev", "junk", "-dir", "d")
	want := `tokend dev: unexpected argument "junk"; usage: tokend dev [-dir D] [-token-ttl 2m] [-rotate-before 1m] [-revoke-after 20s]` + "\n"
	if code != 2 || stderr != want {
		t.Errorf("dev junk -dir d: exit %d, stderr %q; want exit 2, %q", code, stderr, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("dev with a stray argument created %v", ents)
	}
}

// TestConfigErrorsNameTheFile: run, run -once and check name the config
// file a config error is in, as check always did.
func TestConfigErrorsNameTheFile(t *testing.T) {
	e := newEnv(t, 1, "")
	bad := filepath.Join(e.dir, "new.yaml")
	if err := os.WriteFile(bad, []byte("state_dir: [not a path]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"run", "-config", bad}, {"run", "-once", "-config", bad}, {"check", "-config", bad}} {
		code, _, stderr := e.runCmd(args...)
		if want := "tokend " + args[0] + ": " + bad + ": "; code != 2 || !strings.HasPrefix(stderr, want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and a message starting %q", args, code, stderr, want)
		}
	}
}

// TestClientArgumentErrors: token and status say what to fix, exit 2: a
// flag after the channel (the flag package stops at the first argument),
// an empty channel, an empty -socket.
func TestClientArgumentErrors(t *testing.T) {
	e := newEnv(t, 0, "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "shop-bot", "-socket", "/run/x.sock"}, "tokend token: flags go before the channel: tokend token -socket /run/x.sock shop-bot\n"},
		{[]string{"token", ""}, "tokend token: usage: tokend token [-socket S] CHANNEL\n"},
		{[]string{"token", "-socket", "", "shop-bot"}, "tokend token: -socket: empty path\n"},
		{[]string{"status", "-socket", ""}, "tokend status: -socket: empty path\n"},
	} {
		code, out, stderr := e.runCmd(tt.args...)
		if code != 2 || out != "" || stderr != tt.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", tt.args, code, out, stderr, tt.want)
		}
	}
}

// TestBadFlagReportedOnce: a flag error is printed once, as every command
// error is ("tokend token: ..."), after the command's flags; -h prints the
// flags and exits 0.
func TestBadFlagReportedOnce(t *testing.T) {
	e := newEnv(t, 0, "")
	code, _, stderr := e.runCmd("token", "-nope", "x")
	const msg = "flag provided but not defined: -nope"
	if code != 2 || strings.Count(stderr, msg) != 1 || !strings.HasSuffix(stderr, "tokend token: "+msg+"\n") || !strings.Contains(stderr, "-socket string") {
		t.Errorf("bad flag: exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = e.runCmd("token", "-h")
	if code != 0 || !strings.Contains(stderr, "-socket string") {
		t.Errorf("-h: exit %d, stderr:\n%s", code, stderr)
	}
}
