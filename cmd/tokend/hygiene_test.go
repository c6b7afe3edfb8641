package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/store"
)

// TestSecretHygiene runs the real daemon through a whole lifecycle at debug
// log level: two v2.1 channels (one with a JWK key, one with a PEM key, one
// of them with an exec hook that prints its environment), one short-lived
// channel (channel secret); issuance, a LINE error on every kind of call,
// a malformed LINE answer holding a token, rotation, revocation, a SIGHUP
// reload, a metrics listener, `tokend status`, `token`, `check`, `run
// -once`, and a refused world-readable key. Then it searches everything
// tokend printed or served outside the token API (every log line, stderr,
// status output, /v1/channels, /metrics on the socket and on TCP, error
// answers) and everything this test logs, for every token the simulator
// issued, every assertion tokend signed, every channel secret, and the
// private key's fragments (JWK d, p, q, dp, dq, qi; PEM body lines), whole
// and truncated: zero hits. It also checks the modes of the output files
// and of the store, and that a private key readable by others is refused
// with a message that names the file and the fix.
//
// The test logs nothing until the end, and then only after redacting every
// secret it knows, so a failure cannot print what it found.
func TestSecretHygiene(t *testing.T) {
	start := time.Now()
	h := &hygRun{t: t}
	e := newRelEnv(t, nil)
	h.e = e

	// Keys: key.jwk (from newRelEnv) and the same key as PKCS#8 PEM.
	k, jwk := key(t)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(e.dir, "key.pem"), pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	h.keyJWK, h.keyPEM = jwk, pemKey

	// A free port for metrics_listen.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()

	const (
		idJWK   = "1600000001"
		idPEM   = "1600000002"
		idShort = "1600000003"
	)
	h.ids = []string{idJWK, idPEM, idShort}
	hook := "    on_rotate:\n      - exec: [\"/bin/sh\", \"-c\", \"env; echo hook-ran\"]\n"
	jwkYAML, secJWK := e.relChannel(idJWK, "hyg-jwk", relChanOpts{
		extra: hook, formats: []string{"raw", "json", "env"}, modes: []string{"0640"},
	})
	pemYAML, secPEM := e.relChannel(idPEM, "hyg-pem", relChanOpts{keyFile: "key.pem", formats: []string{"raw"}})
	// relChannel's channel YAML would give the short-lived channel a key:
	// write it by hand, with a secret shaped like LINE's (32 hex digits).
	var sb [16]byte
	_, _ = rand.Read(sb[:])
	secShort := hex.EncodeToString(sb[:])
	// Given through the environment (channel_secret: ${VAR}), which the
	// hook that prints its environment must not see.
	t.Setenv("HYG_SHORT_SECRET", secShort)
	e.sim.AddChannel(idShort, secShort)
	e.names = append(e.names, "hyg-short")
	// LINE fixes short-lived tokens at 30 days; rotating 5 s after issue
	// needs rotate_before 30d - 5s.
	shortYAML := fmt.Sprintf("\n  - id: %q\n    name: hyg-short\n    kind: short-lived\n    channel_secret: ${HYG_SHORT_SECRET}\n    rotate_before: 29d23h59m55s\n    outputs:\n      - {path: %s, format: env}\n",
		idShort, e.out("hyg-short.env"))
	h.secrets = []hygSecret{{"channel secret of hyg-jwk", secJWK}, {"channel secret of hyg-pem", secPEM}, {"channel secret of hyg-short", secShort}}

	extra := relShortDefaults + fmt.Sprintf("\nmetrics_listen: %q", metricsAddr)
	e.writeConfig(jwkYAML+pemYAML+shortYAML, extra)
	if cfg, _ := os.ReadFile(e.cfg); !strings.Contains(string(cfg), "level: debug") {
		t.Fatal("the test config does not log at debug level")
	}

	// One failure of every kind of LINE call, so the error paths log too:
	// a 5xx on the GET whose query holds an assertion, a reset, a 200 whose
	// body holds a token but is not a valid answer.
	h.planted = "hygplanted" + hex.EncodeToString(sb[:8]) + "TOKENinAbrokenANSWER"
	// (The reset is on a POST: net/http silently retries a GET that a
	// kept-alive connection's reset interrupted.)
	e.sim.SetFault(linefake.EndpointKeyIDsV21, linefake.Fault{Status: 500, Times: 1})
	e.sim.SetFault(linefake.EndpointIssueShort, linefake.Fault{Drop: true, Times: 1})
	e.sim.SetFault(linefake.EndpointIssueV21, linefake.Fault{Status: 200, Times: 1,
		Body: `{"access_token":"` + h.planted + `","expires_in":"soon","token_type":"Bearer","key_id":"k"}`})
	e.sim.SetFault(linefake.EndpointRevokeV21, linefake.Fault{Status: 503, Times: 1})
	e.sim.SetFault(linefake.EndpointVerifyShort, linefake.Fault{Drop: true, Times: 1})

	// The daemon.
	var mu sync.Mutex
	count := map[string]int{} // "msg channel" -> lines
	log := &relLog{onLine: func(_ []byte, f map[string]any) {
		if f == nil {
			return
		}
		msg, _ := f["msg"].(string)
		ch, _ := f["channel"].(string)
		mu.Lock()
		count[msg+" "+ch]++
		count[msg]++
		mu.Unlock()
	}}
	seen := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return count[key]
	}
	p := e.relStart(log, nil, "run")
	sock := relClient(e.sock, 5*time.Second)
	tcp := &http.Client{Timeout: 5 * time.Second}
	h.waitAlive(p, "readiness", 20*time.Second, func() bool {
		code, _, err := relGet(sock, "/readyz")
		return err == nil && code == http.StatusOK
	})
	h.collect(sock, tcp, metricsAddr, "before rotation")

	// Reload: hyg-pem's output becomes group-readable.
	e.writeConfig(jwkYAML+strings.Replace(pemYAML, "format: raw}", `format: raw, mode: "0640"}`, 1)+shortYAML, extra)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h.waitAlive(p, "the reload", 10*time.Second, func() bool { return seen("configuration reloaded") > 0 })

	// Rotation and revocation of every channel, the hook at issue and at
	// rotation.
	h.waitAlive(p, "a rotation and a revocation of every channel, and two hook runs", 30*time.Second, func() bool {
		for _, name := range e.names {
			if seen("superseded token revoked "+name) < 1 {
				return false
			}
		}
		return seen("hook ran hyg-jwk") >= 2
	})
	h.collect(sock, tcp, metricsAddr, "after rotation")

	// A reload that would read a private key others may read is rejected,
	// naming the file and the fix, and the channels stay served (the log
	// is scanned for the key below, with everything else).
	keyPath := filepath.Join(e.dir, "key.jwk")
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h.waitAlive(p, "the rejected reload", 10*time.Second, func() bool {
		return seen("reload rejected; the running configuration stays in force") > 0
	})
	if !strings.Contains(log.String(), "chmod 600 "+keyPath) {
		h.errorf("the rejected reload does not say to run chmod 600 %s; log:\n%s", keyPath, relTail(log.String(), 3000))
	}
	if code, _, err := relGet(sock, "/v1/channels/hyg-jwk/token"); err != nil || code != http.StatusOK {
		h.errorf("hyg-jwk after the rejected reload: %d %v, want 200", code, err)
	}
	if err := os.Chmod(keyPath, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.exitCode(p, 10*time.Second); code != 0 {
		h.fatalf("SIGTERM: exit %d; log:\n%s", code, relTail(log.String(), 3000))
	}
	h.add("daemon log", log.String())
	if seen("hook ran hyg-jwk") < 2 || !strings.Contains(log.String(), "hook-ran") {
		h.errorf("the hook's output is not in the debug log (hook ran %d times)", seen("hook ran hyg-jwk"))
	}
	for _, cause := range []string{`"cause":"network"`, `"cause":"malformed"`, `"level":"debug"`} {
		if !strings.Contains(log.String(), cause) {
			h.errorf("the log has no line with %s: the error or debug paths were not exercised", cause)
		}
	}

	// One more pass from cron, and check with LINE.
	for _, args := range [][]string{{"run", "-once"}, {"check"}, {"check", "-online"}} {
		code, stdout, stderr := e.runCmd(args...)
		h.add(strings.Join(args, " ")+" stdout", stdout)
		h.add(strings.Join(args, " ")+" stderr", stderr)
		if code != 0 {
			h.errorf("tokend %s: exit %d; stderr:\n%s", strings.Join(args, " "), code, stderr)
		}
	}

	// File modes: as configured, else 0600; the store 0600 in a 0700 dir.
	wantModes := map[string]os.FileMode{
		"hyg-jwk.raw": 0o640, "hyg-jwk.json": 0o600, "hyg-jwk.env": 0o600,
		"hyg-pem.raw": 0o640, "hyg-short.env": 0o600,
	}
	ents, err := os.ReadDir(filepath.Join(e.dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		want, ok := wantModes[ent.Name()]
		if !ok {
			h.errorf("unexpected file %s in the output directory", ent.Name())
			continue
		}
		delete(wantModes, ent.Name())
		if fi, err := ent.Info(); err != nil || fi.Mode() != want {
			h.errorf("output %s: mode %v, want %v (%v)", ent.Name(), hygMode(fi), want, err)
		}
	}
	for name := range wantModes {
		h.errorf("output %s missing", name)
	}
	stateDir := filepath.Join(e.dir, "state")
	if fi, err := os.Stat(stateDir); err != nil || fi.Mode().Perm() != 0o700 {
		h.errorf("state_dir: mode %v, want 0700 (%v)", hygMode(fi), err)
	}
	files, _ := os.ReadDir(stateDir)
	sawDB := false
	for _, ent := range files {
		fi, err := ent.Info()
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			h.errorf("state_dir/%s: mode %v, want a regular file with mode 0600 (%v)", ent.Name(), hygMode(fi), err)
		}
		sawDB = sawDB || ent.Name() == store.FileName
	}
	if !sawDB {
		h.errorf("state_dir holds no %s", store.FileName)
	}

	// A private key readable by group or others is refused by check, run
	// and run -once, with a message naming the file and the fix.
	for _, c := range []struct {
		file string
		mode os.FileMode
	}{{"key.jwk", 0o644}, {"key.pem", 0o640}} {
		path := filepath.Join(e.dir, c.file)
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"check"}, {"run"}, {"run", "-once"}} {
			code, stdout, stderr := e.runCmd(args...)
			what := fmt.Sprintf("tokend %s with %s at %04o", strings.Join(args, " "), c.file, c.mode)
			h.add(what+" stdout", stdout)
			h.add(what+" stderr", stderr)
			if code != 2 || !strings.Contains(stderr, "private key "+path) || !strings.Contains(stderr, "chmod 600 "+path) {
				h.errorf("%s: exit %d, want 2 and a message naming %s and chmod 600; stderr:\n%s", what, code, path, stderr)
			}
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Every secret involved, from the simulator and the test's files.
	needles := h.needles()
	h.checkScanner(needles, log.String())

	hits := hygScan(needles, h.hay)
	for _, hit := range hits {
		h.errorf("%s, line %d: holds %s", hit.source, hit.line, hit.label)
	}
	// The test's own output: every message it is about to print.
	testHits := hygScan(needles, []hygHay{{"test output", strings.Join(h.out, "\n")}})
	lines := 0
	for _, hy := range h.hay {
		lines += strings.Count(hy.text, "\n") + 1
	}
	summary := fmt.Sprintf("hygiene: secrets=%d needles=%d sources=%d lines_scanned=%d hits=%d test_output_hits=%d channels=%d tokens=%d time=%s",
		h.nSecrets, len(needles), len(h.hay), lines, len(hits), len(testHits), len(h.ids), h.nTokens, time.Since(start).Round(100*time.Millisecond))
	for _, m := range h.out {
		t.Error(hygRedact(needles, m))
	}
	if len(testHits) > 0 {
		t.Errorf("the test's own output held %d secrets (printed above redacted)", len(testHits))
	}
	relSummary(t, "TOKEND_HYGIENE_SUMMARY", summary)
}

// hygRun is the state of TestSecretHygiene.
type hygRun struct {
	t       *testing.T
	e       *env
	ids     []string
	secrets []hygSecret // channel secrets
	planted string      // the token in a malformed LINE answer
	keyJWK  []byte
	keyPEM  []byte
	hay     []hygHay
	out     []string // failure messages, printed redacted at the end

	nSecrets, nTokens int
}

// hygSecret is one secret value and what it is (the label is what a
// failure prints, never the value).
type hygSecret struct{ label, value string }

// hygHay is one text tokend printed or served: where it came from and what.
type hygHay struct{ source, text string }

// hygHit is a secret found in a text.
type hygHit struct {
	source string
	line   int
	label  string
}

func (h *hygRun) add(source, text string) { h.hay = append(h.hay, hygHay{source, text}) }

// errorf records a failure, printed (redacted) at the end of the test.
func (h *hygRun) errorf(format string, args ...any) {
	h.out = append(h.out, fmt.Sprintf(format, args...))
}

// fatalf ends the test now, printing the message redacted.
func (h *hygRun) fatalf(format string, args ...any) {
	h.t.Helper()
	needles := h.needles()
	for _, m := range h.out {
		h.t.Error(hygRedact(needles, m))
	}
	h.t.Fatal(hygRedact(needles, fmt.Sprintf(format, args...)))
}

// waitAlive waits for cond while p runs, failing (redacted) if p exits or
// within passes.
func (h *hygRun) waitAlive(p *proc, what string, within time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if !p.alive() {
			h.fatalf("tokend exited (%v) waiting for %s; log:\n%s", p.err, what, relTail(p.stderr.String(), 3000))
		}
		if time.Now().After(deadline) {
			h.fatalf("timed out after %s waiting for %s; log:\n%s", within, what, relTail(p.stderr.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode is proc.exitCode without printing an unredacted log.
func (h *hygRun) exitCode(p *proc, within time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(within):
		h.fatalf("tokend did not exit within %s; log:\n%s", within, relTail(p.stderr.String(), 3000))
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if p.err != nil {
		h.fatalf("wait: %v", p.err)
	}
	return 0
}

// collect fetches everything a client can see without asking for a token,
// checks that `tokend token` prints a valid token and nothing else, and
// keeps the texts for the scan.
func (h *hygRun) collect(sock, tcp *http.Client, metricsAddr, when string) {
	h.t.Helper()
	e := h.e
	code, stdout, stderr := e.runCmd("status", "-socket", e.sock)
	h.add("tokend status stdout "+when, stdout)
	h.add("tokend status stderr "+when, stderr)
	if code != 0 || !strings.Contains(stdout, "hyg-short") {
		h.errorf("tokend status %s: exit %d", when, code)
	}
	for _, name := range e.names {
		code, stdout, stderr := e.runCmd("token", "-socket", e.sock, name)
		h.add("tokend token "+name+" stderr "+when, stderr)
		if code != 0 || stderr != "" || !e.sim.IsValid(stdout) {
			h.errorf("tokend token %s %s: exit %d, stdout is a valid token: %t, stderr %q", name, when, code, e.sim.IsValid(stdout), stderr)
		}
	}
	code, _, stderr = e.runCmd("token", "-socket", e.sock, "no-such-bot")
	h.add("tokend token no-such-bot stderr "+when, stderr)
	if code != 1 {
		h.errorf("tokend token no-such-bot: exit %d", code)
	}
	for _, path := range []string{"/v1/channels", "/metrics", "/healthz", "/readyz", "/v1/channels/no-such-bot/token", "/v1/channels/hyg-jwk", "/nope"} {
		code, body, err := relGet(sock, path)
		if err != nil {
			h.errorf("GET %s on the socket: %v", path, err)
		}
		h.add(fmt.Sprintf("socket GET %s (%d) %s", path, code, when), string(body))
		if (path == "/v1/channels" || path == "/metrics") && code != http.StatusOK {
			h.errorf("GET %s on the socket: %d", path, code)
		}
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/v1/channels", "/v1/channels/hyg-jwk/token"} {
		resp, err := tcp.Get("http://" + metricsAddr + path)
		if err != nil {
			h.errorf("GET %s on metrics_listen: %v", path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h.add(fmt.Sprintf("metrics_listen GET %s (%d) %s", path, resp.StatusCode, when), string(body))
		if path == "/metrics" && resp.StatusCode != http.StatusOK {
			h.errorf("GET /metrics on metrics_listen: %d", resp.StatusCode)
		}
		if strings.HasPrefix(path, "/v1/") && resp.StatusCode == http.StatusOK {
			h.errorf("GET %s on metrics_listen answered 200", path)
		}
	}
}

// needles lists every secret involved so far, each whole and in the
// truncated and encoded forms a careless log line would hold.
func (h *hygRun) needles() []hygSecret {
	var secrets []hygSecret
	add := func(label, v string) {
		if v != "" {
			secrets = append(secrets, hygSecret{label, v})
		}
	}
	// Tokens, as LINE issued them (every one, valid or not).
	h.nTokens = 0
	for _, id := range h.ids {
		for i, ts := range h.e.sim.Tokens(id) {
			add(fmt.Sprintf("token #%d of channel %s (%s)", i+1, id, ts.Kind), ts.AccessToken)
			h.nTokens++
		}
	}
	add("the token in a malformed LINE answer", h.planted)
	secrets = append(secrets, h.secrets...)
	// Assertions tokend signed (each lets its holder issue tokens).
	for i, r := range h.e.sim.Requests() {
		for _, a := range r.Form["client_assertion"] {
			add(fmt.Sprintf("assertion of LINE request #%d", i+1), a)
		}
		for _, s := range r.Form["client_secret"] {
			add(fmt.Sprintf("client_secret of LINE request #%d", i+1), s)
		}
	}
	// The private key: JWK members and PEM body lines.
	var jwk map[string]any
	if err := json.Unmarshal(h.keyJWK, &jwk); err != nil {
		h.t.Fatal("the test key is not JSON")
	}
	for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		v, _ := jwk[m].(string)
		if len(v) < 32 {
			h.t.Fatalf("the test JWK has no %s member", m)
		}
		add("private JWK member "+m, v)
	}
	body := 0
	for i, line := range strings.Split(string(h.keyPEM), "\n") {
		if !strings.HasPrefix(line, "-----") && len(line) >= 16 {
			add(fmt.Sprintf("PEM key line %d", i+1), line)
			body++
		}
	}
	if body < 10 {
		h.t.Fatalf("the PEM key has %d body lines", body)
	}
	h.nSecrets = len(dedupSecrets(secrets))
	return hygNeedles(secrets)
}

func dedupSecrets(s []hygSecret) []hygSecret {
	seen := map[string]bool{}
	var out []hygSecret
	for _, x := range s {
		if !seen[x.value] {
			seen[x.value] = true
			out = append(out, x)
		}
	}
	return out
}

var hygAlphabet = regexp.MustCompile(`^[A-Za-z0-9+/=._~-]+$`)

// hygNeedles expands secrets into what to search for: the whole value, the
// signature of a JWS (its header and claims are not secret), the first and
// last 16 characters of anything of 32 or more (a value printed truncated),
// and the URL-encoded forms. Values must be of base64/hex/JWS characters,
// which JSON never escapes, so a plain substring search of a JSON log line
// is enough.
func hygNeedles(secrets []hygSecret) []hygSecret {
	seen := map[string]bool{}
	var out []hygSecret
	put := func(label, v string) {
		if v == "" || seen[v] {
			return
		}
		seen[v] = true
		out = append(out, hygSecret{label, v})
		if q := url.QueryEscape(v); q != v && !seen[q] {
			seen[q] = true
			out = append(out, hygSecret{label + " (URL-encoded)", q})
		}
	}
	for _, s := range secrets {
		if !hygAlphabet.MatchString(s.value) {
			panic("hygNeedles: secret outside the base64/JWS alphabet: " + s.label)
		}
		put(s.label, s.value)
		frag := s.value
		if parts := strings.Split(s.value, "."); len(parts) == 3 {
			frag = parts[2]
			put(s.label+" (signature)", frag)
			if len(frag) < 32 {
				continue
			}
		}
		if len(frag) >= 32 {
			put(s.label+" (first 16 characters)", frag[:16])
			put(s.label+" (last 16 characters)", frag[len(frag)-16:])
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].value) > len(out[j].value) })
	return out
}

// hygScan reports every line of every text that holds a needle (the
// longest needle on that line).
func hygScan(needles []hygSecret, hay []hygHay) []hygHit {
	var hits []hygHit
	for _, hy := range hay {
		for i, line := range strings.Split(hy.text, "\n") {
			for _, n := range needles {
				if strings.Contains(line, n.value) {
					hits = append(hits, hygHit{hy.source, i + 1, n.label})
					break
				}
			}
		}
	}
	return hits
}

// hygRedact replaces every needle in s (longest first) by its label.
func hygRedact(needles []hygSecret, s string) string {
	for _, n := range needles {
		s = strings.ReplaceAll(s, n.value, "<"+n.label+">")
	}
	return s
}

// checkScanner proves the scan can fail: a secret of each kind planted in
// a real log line (whole, truncated, URL-encoded) is found and named, and
// redacted away.
func (h *hygRun) checkScanner(needles []hygSecret, log string) {
	h.t.Helper()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) < 10 {
		h.fatalf("the daemon logged only %d lines", len(lines))
	}
	base := lines[len(lines)/2]
	// byLabel is the whole-value needle whose label is prefix or starts
	// with prefix and a space.
	byLabel := func(prefix string) hygSecret {
		for _, n := range needles {
			if (n.label == prefix || strings.HasPrefix(n.label, prefix+" ")) && !strings.HasSuffix(n.label, "characters)") &&
				!strings.HasSuffix(n.label, "(URL-encoded)") && !strings.HasSuffix(n.label, "(signature)") {
				return n
			}
		}
		h.fatalf("no needle labelled %q", prefix)
		return hygSecret{}
	}
	tok := byLabel("token #1 of channel " + h.ids[2]) // short-lived: base64 with + and /
	jws := byLabel("token #2 of channel " + h.ids[0])
	for _, c := range []struct {
		planted string
		label   string
	}{
		{`"token":"` + tok.value + `"`, tok.label},
		{`token=` + url.QueryEscape(tok.value), tok.label + " (URL-encoded)"},
		{`"token":"` + jws.value[:len(jws.value)-3] + `…"`, jws.label + " (first 16 characters)"},
		{`"secret":"` + h.secrets[2].value[:20] + `"`, h.secrets[2].label + " (first 16 characters)"},
		{`"secret":"x` + h.secrets[0].value + `x"`, h.secrets[0].label},
		{`"d":"` + byLabel("private JWK member d").value + `"`, "private JWK member d"},
		{`"pem":"` + byLabel("PEM key line 5").value + `\n"`, "PEM key line 5"},
		{`"a":"` + byLabel("assertion of LINE request").value + `"`, byLabel("assertion of LINE request").label},
	} {
		line := strings.Replace(base, `"msg":`, c.planted+`,"msg":`, 1)
		hits := hygScan(needles, []hygHay{{"planted", "first line\n" + line}})
		if len(hits) != 1 || hits[0].line != 2 || hits[0].label != c.label {
			h.errorf("the scanner missed a planted %s: %v", c.label, hits)
		}
		if got := hygScan(needles, []hygHay{{"redacted", hygRedact(needles, line)}}); len(got) != 0 {
			h.errorf("redacting a planted %s left %v", c.label, got)
		}
	}
	if hits := hygScan(needles, []hygHay{{"clean", base}}); len(hits) != 0 {
		h.errorf("the scanner finds %v in a clean line", hits)
	}
	if !slices.ContainsFunc(needles, func(n hygSecret) bool { return strings.HasSuffix(n.label, "(signature)") }) {
		h.errorf("no JWS token among the needles")
	}
}

// hygMode is fi's mode, or 0 for a nil fi.
func hygMode(fi os.FileInfo) os.FileMode {
	if fi == nil {
		return 0
	}
	return fi.Mode()
}
