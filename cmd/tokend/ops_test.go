package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokend/tokend/internal/linefake"
)

// shortTTL rotates every channel about 5 s after it is issued.
const shortTTL = "defaults: {token_ttl: 1m, rotate_before: 55s, revoke_after: 1s, jitter: 0, reconcile_every: 1m}"

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func scrape(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := unixClient(sock).Get("http://tokend/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value returns the sample of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsAfterRotation(t *testing.T) {
	e := newEnv(t, 2, shortTTL)
	p := e.start(nil, "run")
	waitFor(t, "a rotation and its revocation", 30*time.Second, func() bool {
		log := p.stderr.String()
		return strings.Count(log, `"rotation":true`) >= 2 && strings.Count(log, "superseded token revoked") >= 2
	})
	fams := scrape(t, e.sock)
	var js struct {
		ExpiresAt time.Time `json:"expires_at"`
	}
	b, _ := os.ReadFile(e.out("bot-1.json"))
	if err := json.Unmarshal(b, &js); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
		desc   string
	}{
		{"tokend_rotations_total", map[string]string{"channel": "bot-1", "result": "ok"}, func(v float64) bool { return v >= 2 }, ">= 2 (issue + rotation)"},
		{"tokend_revocations_total", map[string]string{"channel": "bot-1", "result": "ok"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"tokend_line_requests_total", map[string]string{"endpoint": "issue_v2.1", "result": "ok"}, func(v float64) bool { return v >= 4 }, ">= 4 (2 channels × 2)"},
		{"tokend_line_requests_total", map[string]string{"endpoint": "revoke_v2.1", "result": "ok"}, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"tokend_line_requests_total", map[string]string{"endpoint": "kids_v2.1", "result": "ok"}, func(v float64) bool { return v >= 2 }, ">= 2 (reconcile at start)"},
		{"tokend_line_request_duration_seconds", map[string]string{"endpoint": "issue_v2.1"}, func(v float64) bool { return v >= 4 }, "count >= 4"},
		{"tokend_token_expiry_timestamp_seconds", map[string]string{"channel": "bot-1"}, func(v float64) bool { return math.Abs(v-float64(js.ExpiresAt.Unix())) <= 1 }, fmt.Sprintf("= expires_at of bot-1.json (%d)", js.ExpiresAt.Unix())},
		{"tokend_token_next_rotation_timestamp_seconds", map[string]string{"channel": "bot-1"}, func(v float64) bool {
			return math.Abs(v-float64(js.ExpiresAt.Add(-55*time.Second).Unix())) <= 1
		}, "= expires_at - rotate_before"},
		{"tokend_orphan_key_ids", map[string]string{"channel": "bot-2"}, func(v float64) bool { return v == 0 }, "0"},
		{"tokend_output_errors_total", map[string]string{"channel": "bot-2"}, func(v float64) bool { return v == 0 }, "0"},
		{"tokend_ready", nil, func(v float64) bool { return v == 1 }, "1"},
	}
	for _, c := range checks {
		v, ok := value(fams, c.name, c.labels)
		if !ok {
			t.Errorf("%s%v missing from /metrics", c.name, c.labels)
			continue
		}
		if !c.want(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.desc)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestHooksRunOnRotation(t *testing.T) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	e := newEnv(t, 0, shortTTL)
	k, _ := key(t)
	envFile := filepath.Join(e.dir, "hook-env")
	script := filepath.Join(e.dir, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nenv >> "+envFile+"\necho --- >> "+envFile+"\n"), 0o755)
	pidFile := filepath.Join(e.dir, "bot.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	os.WriteFile(filepath.Join(e.dir, "secret-hooked"), []byte("hook-secret"), 0o600)
	e.sim.AddChannel("1711111111", "hook-secret")
	e.sim.RegisterKey("1711111111", kid, &k.PublicKey)
	outDir := filepath.Join(e.dir, "out")
	ch := channelYAML("1711111111", "hooked", outDir) + fmt.Sprintf(`    on_rotate:
      - exec: [%q]
      - signal: USR1
        pid_file: %s
`, script, pidFile)
	e.writeConfig(ch, shortTTL)
	p := e.start([]string{"LINE_CHANNEL_ACCESS_TOKEN=must-not-leak", "TOKEND_SECRET=nor-this"}, "run")

	// First issue and the rotation ~5 s later each run both hooks.
	for i := range 2 {
		select {
		case <-sigs:
		case <-time.After(20 * time.Second):
			t.Fatalf("signal hook %d not delivered; stderr:\n%s", i+1, p.stderr.String())
		}
	}
	waitFor(t, "two exec hook runs", 10*time.Second, func() bool {
		b, _ := os.ReadFile(envFile)
		return strings.Count(string(b), "---") >= 2
	})
	b, _ := os.ReadFile(envFile)
	runs := strings.Split(string(b), "---\n")
	env := map[string]string{}
	for _, line := range strings.Split(runs[1], "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	want := map[string]string{
		"TOKEND_CHANNEL_ID":   "1711111111",
		"TOKEND_CHANNEL_NAME": "hooked",
		"TOKEND_OUTPUTS":      e.out("hooked.token") + ":" + e.out("hooked.json"),
		"TOKEND_OUTPUT_0":     e.out("hooked.token"),
		"TOKEND_OUTPUT_1":     e.out("hooked.json"),
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("hook env %s = %q, want %q", k, env[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, env["TOKEND_EXPIRES_AT"]); err != nil {
		t.Errorf("TOKEND_EXPIRES_AT = %q: %v", env["TOKEND_EXPIRES_AT"], err)
	}
	tok, _ := os.ReadFile(e.out("hooked.token"))
	for _, leak := range []string{string(tok), "must-not-leak", "nor-this", "hook-secret"} {
		if strings.Contains(string(b), leak) {
			t.Errorf("hook environment leaks %.12q…", leak)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestSocketServedByAnotherTokendIsRefused(t *testing.T) {
	e := newEnv(t, 1, "")
	p := e.start(nil, "run")
	waitFor(t, "socket", 10*time.Second, func() bool { return fileExists(e.sock) })
	// A second daemon with its own state_dir but the same socket path.
	cfg, _ := os.ReadFile(e.cfg)
	other := filepath.Join(e.dir, "other.yaml")
	os.WriteFile(other, []byte(strings.Replace(string(cfg), e.dir+"/state", e.dir+"/state2", 1)), 0o600)
	code, _, stderr := e.runCmd("run", "-config", other)
	if code != 2 || !strings.Contains(stderr, e.sock) || !strings.Contains(stderr, "another running tokend") {
		t.Fatalf("second daemon on a live socket: exit %d\n%s", code, stderr)
	}
	if code, _, _ := e.runCmd("token", "-socket", e.sock, "bot-1"); code != 0 {
		t.Fatal("the first daemon lost its socket")
	}
	// After a crash (SIGKILL) the stale socket file is replaced on restart.
	p.cmd.Process.Kill()
	p.exitCode(t, 5*time.Second)
	p = e.start(nil, "run")
	waitFor(t, "token over the replaced socket", 10*time.Second, func() bool {
		code, _, _ := e.runCmd("token", "-socket", e.sock, "bot-1")
		return code == 0
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestHooksRunAgainAfterKill: tokend killed (SIGKILL) while a token's hook
// runs, after every output had the token, runs the hook again at its next
// start, with the same token; a start after hooks that ran to the end runs
// none.
func TestHooksRunAgainAfterKill(t *testing.T) {
	e := newEnv(t, 0, "")
	k, _ := key(t)
	runs, block, hookPID := filepath.Join(e.dir, "hook-runs"), filepath.Join(e.dir, "block"), filepath.Join(e.dir, "hook.pid")
	script := filepath.Join(e.dir, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho run >> "+runs+"\nif [ -e "+block+" ]; then echo $$ > "+hookPID+"; exec sleep 60; fi\n"), 0o755)
	os.WriteFile(block, nil, 0o600)
	os.WriteFile(filepath.Join(e.dir, "secret-hooked"), []byte("hook-secret"), 0o600)
	e.sim.AddChannel("1711111111", "hook-secret")
	e.sim.RegisterKey("1711111111", kid, &k.PublicKey)
	e.writeConfig(channelYAML("1711111111", "hooked", filepath.Join(e.dir, "out"))+fmt.Sprintf(`    on_rotate:
      - exec: [%q]
`, script), "")
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run\n")
	}

	p := e.start(nil, "run")
	waitFor(t, "the hook running", 10*time.Second, func() bool { return fileExists(hookPID) })
	if b, err := os.ReadFile(hookPID); err == nil { // the orphaned sleep's process group
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
		}
	}
	tok, err := os.ReadFile(e.out("hooked.token"))
	if err != nil || len(tok) == 0 {
		t.Fatalf("the hook runs before the output holds the token: %v", err)
	}
	p.cmd.Process.Kill()
	p.exitCode(t, 5*time.Second)

	os.Remove(block)
	for i, want := range []int{2, 2} { // the killed run's again, then none
		p = e.start(nil, "run")
		c := relClient(e.sock, 2*time.Second)
		waitFor(t, "ready", 10*time.Second, func() bool {
			code, _, err := relGet(c, "/readyz")
			return err == nil && code == 200
		})
		p.cmd.Process.Signal(syscall.SIGTERM) // after hooks started at the publish, which came before ready
		if code := p.exitCode(t, 10*time.Second); code != 0 {
			t.Fatalf("start %d: exit %d\n%s", i+2, code, relTail(p.stderr.String(), 3000))
		}
		if n := count(); n != want {
			t.Fatalf("start %d: %d hook runs in all; want %d\n%s", i+2, n, want, relTail(p.stderr.String(), 3000))
		}
	}
	if now, _ := os.ReadFile(e.out("hooked.token")); string(now) != string(tok) {
		t.Error("the token changed across the restarts")
	}
	if n := e.sim.Count(linefake.EndpointIssueV21); n != 1 {
		t.Errorf("%d issue calls; want the recorded token reused", n)
	}
}
