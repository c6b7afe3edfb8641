package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/rotator"
	"github.com/tokend/tokend/internal/store"
)

// TestCrashConsistency SIGKILLs the real daemon hundreds of times while it
// issues, rotates and revokes tokens against the simulator, restarting it
// after each kill, and checks what a crash may never break:
//
//   - readers of the output files and of the socket never see an empty,
//     partial or foreign token (only connection errors while it is down);
//   - the store opens after every kill, and every token tokend committed
//     that LINE still holds is still tracked: a kill never loses a record;
//   - a token LINE issued but tokend had not committed when it died is
//     reported as an orphan by the next reconcile;
//   - the outputs only ever hold committed tokens;
//   - a restart reuses a committed current token instead of issuing, and
//     only superseded tokens are revoked;
//   - no channel ever holds more than 3 valid tokens at LINE.
//
// Some kills are aimed at the window between LINE answering an issue
// request and tokend committing the token: the simulator's handler is
// wrapped so that, right after it answers, the test kills tokend. A kill is
// held back while it could leave a channel more than one lost token still
// valid at LINE (the test's own budget that keeps the channel at <= 3).
func TestCrashConsistency(t *testing.T) {
	const (
		channels = 6
		kills    = 200
		minDelay = 20 * time.Millisecond
		maxDelay = 600 * time.Millisecond
		aimP     = 0.6 // chance that an answered issue request is followed by a kill
	)
	start := time.Now()
	r := &crashRun{
		t:        t,
		toks:     map[string]*crashTok{},
		kids:     map[string]*crashTok{},
		inflight: map[string]int{},
		pending:  map[string]map[string]bool{},
		curRec:   map[string]crashCur{},
		names:    map[string]string{},
		seen:     map[string]bool{},
		warnings: map[string]int{},
		aimP:     aimP,

		revokeOrphanP: 0.75,
	}
	e := newRelEnv(t, r.wrap)
	r.e = e
	var chans strings.Builder
	for i := range channels {
		id, name := fmt.Sprintf("18%08d", i+1), fmt.Sprintf("crash-%d", i+1)
		y, _ := e.relChannel(id, name, relChanOpts{})
		chans.WriteString(y)
		r.ids = append(r.ids, id)
		r.names[id] = name
	}
	e.writeConfig(chans.String(), relShortDefaults)
	r.stateDir = filepath.Join(e.dir, "state")

	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); r.readFiles(stop) }()
	go func() { defer readers.Done(); r.readSocket(stop) }()
	stopReaders := sync.OnceFunc(func() { close(stop); readers.Wait() })
	defer stopReaders()

	for r.killCount() < kills {
		p := r.startProc()
		delay := minDelay + rand.N(maxDelay-minDelay)
		timer := time.NewTimer(delay)
		select {
		case <-p.done: // an aimed kill, or it died by itself (checked below)
		case <-timer.C:
			r.killWhenSafe(p)
		}
		timer.Stop()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("tokend did not die within 10s of SIGKILL")
		}
		r.mu.Lock()
		killed := r.killed
		r.mu.Unlock()
		if !killed {
			t.Fatalf("tokend exited by itself (%v); stderr:\n%s", p.err, relTail(p.stderr.String(), 4000))
		}
		r.check(true)
		if t.Failed() {
			t.FailNow()
		}
	}
	killPhase := time.Since(start)

	// A final run: it must become ready, report every lost token that is
	// still valid as an orphan, and stop cleanly.
	r.mu.Lock()
	r.final = true
	r.mu.Unlock()
	p := r.startProc()
	finalGen := r.gen
	c := relClient(e.sock, 2*time.Second)
	waitFor(t, "readiness after the last restart", 20*time.Second, func() bool {
		code, _, err := relGet(c, "/readyz")
		return err == nil && code == http.StatusOK
	})
	waitFor(t, "the last run to report every lost token still valid as an orphan", 20*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		now := time.Now()
		for _, ct := range r.kids {
			if ct.lost && ct.seenGen != finalGen && !ct.revokedByTest && ct.expiresAt.After(now.Add(2*time.Second)) {
				return false
			}
		}
		return true
	})
	// Status agrees with the log: a channel with lost tokens counts them.
	code, body, err := relGet(c, "/v1/channels")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/channels: %d %v", code, err)
	}
	var st struct {
		Channels []struct {
			ID      string `json:"channel_id"`
			Orphans int    `json:"orphan_key_ids"`
		} `json:"channels"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET /v1/channels: %v", err)
	}
	r.mu.Lock()
	r.killed = true // no more issue requests are expected; refuse any
	r.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("SIGTERM after the crash loop: exit %d; stderr:\n%s", code, relTail(p.stderr.String(), 4000))
	}
	stopReaders()
	r.check(false)
	now := time.Now()
	for _, s := range st.Channels {
		// The daemon counted orphans when it reconciled, a few seconds ago;
		// it may not count fewer than the lost tokens valid now.
		if want := r.lostValid(s.ID, now.Add(2*time.Second)); s.Orphans < want {
			r.mu.Lock()
			var desc []string
			for _, ct := range r.kids {
				if ct.ch == s.ID && ct.lost {
					desc = append(desc, fmt.Sprintf("%s lost after kill %d, expires %s, seen %v, revoked %v", ct.kid, ct.lostAt, ct.expiresAt.Format(time.RFC3339Nano), ct.orphanSeen, ct.revokedByTest))
				}
			}
			r.problemLocked("channel %s: /v1/channels reports %d orphan key IDs, %d lost tokens are valid at LINE (now %s): %s",
				s.ID, s.Orphans, want, now.Format(time.RFC3339Nano), strings.Join(desc, "; "))
			r.mu.Unlock()
		}
	}
	// The outputs hold the committed current token.
	if st, err := store.Open(r.stateDir); err != nil {
		t.Fatalf("store after the final stop: %v", err)
	} else {
		all, err := st.All()
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range r.ids {
			var cur string
			for _, rec := range all[id] {
				if rec.State == store.StateCurrent {
					cur = rec.AccessToken
				}
			}
			raw, err := os.ReadFile(e.out(r.names[id] + ".raw"))
			if err != nil || cur == "" || string(raw) != cur {
				r.problem("channel %s: after the final stop, the raw output does not hold the stored current token (%v)", id, err)
			}
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	maxValid := 0
	for _, id := range r.ids {
		maxValid = max(maxValid, e.sim.MaxValid(id))
	}
	if maxValid > 3 {
		r.problemLocked("a channel held %d valid tokens at LINE at once (limit of the test: 3)", maxValid)
	}
	lost, expected, seen := 0, 0, 0
	for _, ct := range r.kids {
		if !ct.lost {
			continue
		}
		lost++
		if !ct.expiredBeforeRestart {
			expected++
			if ct.orphanSeen {
				seen++
			}
		}
	}
	if seen != expected {
		r.problemLocked("%d of %d lost tokens were never reported as orphans", expected-seen, expected)
	}
	// The last run removed the temporary files kills left behind (check
	// counted them), and its clean stop left none.
	tmps, _ := filepath.Glob(filepath.Join(e.dir, "out", ".*.tmp-*"))
	tmpLeft := len(tmps)
	if tmpLeft > 0 {
		r.problemLocked("%d temporary files left in the output directory after a clean stop", tmpLeft)
	}
	var warns []string
	for m, n := range r.warnings {
		warns = append(warns, fmt.Sprintf("%q x%d", m, n))
	}
	sort.Strings(warns)

	for i, p := range r.problems {
		if i == 40 {
			t.Errorf("... and %d more problems", len(r.problems)-40)
			break
		}
		t.Error(p)
	}
	summary := fmt.Sprintf("crash: kills=%d (in issue→commit window: %d) reads=%d torn=%d store_opens=%d/%d committed_lost=%d lost_tokens=%d orphans_seen=%d/%d max_valid_at_line=%d",
		r.kills, r.windowKills, r.reads.Load(), r.torn.Load(), r.storeOpens, r.storeChecks, r.committedLost, lost, seen, expected, maxValid)
	details := fmt.Sprintf("crash details: aimed_kills=%d issues=%d (reissues_not_due=%d) revokes=%d (wrong=%d) false_orphans=%d published_uncommitted=%d "+
		"socket_down=%d socket_503_after_first_token=%d stale_reads=%d tmp_files_after_kill_max=%d tmp_files_left=%d log_lines=%d; kill phase %s, total %s",
		r.aimedKills, r.issues, r.reissues, r.revokes, r.wrongRevokes, r.falseOrphans, r.publishedUncommitted,
		r.down.Load(), r.unavail.Load(), r.stale.Load(), r.tmpSeen, tmpLeft, r.logLines.Load(), killPhase.Round(time.Second), time.Since(start).Round(time.Second))
	if len(warns) > 0 {
		details += "; warnings logged: " + strings.Join(warns, ", ")
	}
	t.Log(details)
	for _, l := range r.warnLines {
		t.Log("warning: " + l)
	}
	relSummary(t, "TOKEND_CRASH_SUMMARY", summary)
}

// crashTok is one token the simulator issued, as the test knows it.
type crashTok struct {
	ch, kid, tok         string
	expiresAt            time.Time
	committed            bool // in the store at some check, or logged "token issued"
	lost                 bool // issued, then tokend died before committing it
	expiredBeforeRestart bool // lost, and already invalid when tokend came back
	orphanSeen           bool // reported in a reconcile's orphan_key_ids
	seenGen              int  // the last run that reported it
	revokedByTest        bool // revoked at LINE once reported
	lostAt               int  // kills when it was found lost
}

// crashCur is a channel's committed current token.
type crashCur struct {
	kid       string
	rotateAt  time.Time
	expiresAt time.Time
}

type crashRun struct {
	t        *testing.T
	e        *env
	ids      []string
	names    map[string]string // channel ID -> name
	stateDir string
	aimP     float64
	// revokeOrphanP is the chance the test revokes a lost token at LINE
	// once tokend has reported it as an orphan.
	revokeOrphanP float64
	warnLines     []string

	mu         sync.Mutex
	toks       map[string]*crashTok // by access token
	kids       map[string]*crashTok // by key ID
	inflight   map[string]int       // channel -> issue requests at the simulator
	inflightN  int
	pending    map[string]map[string]bool // channel -> key IDs issued, not known committed
	curRec     map[string]crashCur
	cur        *proc
	killed     bool // cur has been sent SIGKILL (or is being stopped)
	final      bool // the last run: no kills
	gen        int
	seen       map[string]bool // output path or channel name -> a token was read there
	warnings   map[string]int
	problems   []string
	kills      int
	aimedKills int
	windowKills, issues, reissues, revokes, wrongRevokes, falseOrphans,
	committedLost, publishedUncommitted, storeOpens, storeChecks int
	tmpSeen int // the most temporary files a kill had left at once

	reads, torn, down, unavail, stale, logLines atomic.Int64
}

func (r *crashRun) killCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kills
}

func (r *crashRun) problem(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problemLocked(format, a...)
}

func (r *crashRun) problemLocked(format string, a ...any) {
	r.problems = append(r.problems, fmt.Sprintf("after %d kills: ", r.kills)+fmt.Sprintf(format, a...))
}

// startProc starts the next tokend; issue requests are accepted from then on.
func (r *crashRun) startProc() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.killed = false
	log := &relLog{onLine: r.onLine}
	r.cur = r.e.relStart(log, nil, "run")
	return r.cur
}

// safeLocked reports whether killing tokend now keeps every channel at
// most one lost token still valid at LINE: then its restart (one more
// token) and a rotation (the superseded one, until revoked) stay within 3.
func (r *crashRun) safeLocked(now time.Time) bool {
	for _, id := range r.ids {
		if r.inflight[id]+len(r.pending[id])+r.lostValidLocked(id, now) > 1 {
			return false
		}
	}
	return true
}

func (r *crashRun) lostValid(ch string, at time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lostValidLocked(ch, at)
}

func (r *crashRun) lostValidLocked(ch string, at time.Time) int {
	n := 0
	for _, ct := range r.kids {
		if ct.ch == ch && ct.lost && !ct.revokedByTest && ct.expiresAt.Add(time.Second).After(at) {
			n++
		}
	}
	return n
}

func (r *crashRun) killLocked() {
	r.killed = true
	r.kills++
	if err := r.cur.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.problemLocked("SIGKILL: %v", err)
	}
}

// killWhenSafe kills p as soon as that cannot push a channel over budget.
func (r *crashRun) killWhenSafe(p *proc) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if r.killed || !p.alive() {
			r.mu.Unlock()
			return
		}
		if r.safeLocked(time.Now()) {
			r.killLocked()
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	r.t.Fatalf("no safe moment to kill tokend within 10s (a token issued but never committed?)")
}

// wrap is the simulator seen through the test: it records every token
// issued, refuses issue requests once tokend has been killed (nobody would
// read the answer; LINE would issue a lost token), checks revocations,
// and aims kills right after issue answers.
func (r *crashRun) wrap(sim http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/oauth2/v2.1/token":
			r.serveIssue(sim, w, req)
		case "/oauth2/v2.1/revoke":
			r.serveRevoke(sim, w, req)
		default:
			sim.ServeHTTP(w, req)
		}
	})
}

func (r *crashRun) serveIssue(sim http.Handler, w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	ch := relAssertionIssuer(form.Get("client_assertion"))
	now := time.Now()

	r.mu.Lock()
	if r.killed || r.cur == nil {
		r.mu.Unlock()
		http.Error(w, "tokend was killed", http.StatusBadGateway)
		return
	}
	gen := r.gen
	if cr, ok := r.curRec[ch]; ok && now.Before(cr.rotateAt.Add(-500*time.Millisecond)) && now.Before(cr.expiresAt) {
		if ct := r.kids[cr.kid]; ct != nil && r.e.sim.IsValid(ct.tok) {
			r.reissues++
			r.problemLocked("channel %s: issue request although its committed current token %s is valid and not due until %s",
				ch, cr.kid, cr.rotateAt.Format(time.RFC3339Nano))
		}
	}
	r.inflight[ch]++
	r.inflightN++
	r.mu.Unlock()

	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, req)
	var resp struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		KeyID       string `json:"key_id"`
	}
	ok := rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &resp) == nil && resp.AccessToken != ""

	r.mu.Lock()
	r.inflight[ch]--
	r.inflightN--
	if ok {
		ct := &crashTok{ch: ch, kid: resp.KeyID, tok: resp.AccessToken, expiresAt: now.Add(time.Duration(resp.ExpiresIn) * time.Second)}
		r.toks[ct.tok], r.kids[ct.kid] = ct, ct
		if r.pending[ch] == nil {
			r.pending[ch] = map[string]bool{}
		}
		r.pending[ch][ct.kid] = true
		r.issues++
	}
	r.mu.Unlock()

	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
	_ = http.NewResponseController(w).Flush()

	if ok && rand.Float64() < r.aimP {
		// Land anywhere from "answer still in the socket buffer" to
		// "bbolt commit under way".
		time.Sleep(rand.N(3 * time.Millisecond))
		r.mu.Lock()
		if r.gen == gen && !r.killed && !r.final && r.safeLocked(time.Now()) {
			r.killLocked()
			r.aimedKills++
		}
		r.mu.Unlock()
	}
}

func (r *crashRun) serveRevoke(sim http.Handler, w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	r.mu.Lock()
	if ct := r.toks[form.Get("access_token")]; ct != nil {
		r.revokes++
		if cr, ok := r.curRec[ct.ch]; ok && cr.kid == ct.kid {
			r.wrongRevokes++
			r.problemLocked("channel %s: tokend revoked its committed current token %s", ct.ch, ct.kid)
		}
	} else {
		r.problemLocked("revoke of a token the simulator never issued")
	}
	r.mu.Unlock()
	sim.ServeHTTP(w, req)
}

// relAssertionIssuer is the iss claim of a JWT assertion (unverified).
func relAssertionIssuer(a string) string {
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Iss
}

const relOrphanMsg = "LINE holds valid tokens tokend does not track (orphans); they count against the limit of 30 until they expire"

// onLine follows the daemon's log: commits ("token issued") and orphan
// reports.
func (r *crashRun) onLine(line []byte, m map[string]any) {
	r.logLines.Add(1)
	if m == nil {
		return // a line cut by SIGKILL is not JSON; that is fine
	}
	msg, _ := m["msg"].(string)
	level, _ := m["level"].(string)
	chID, _ := m["channel_id"].(string)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch msg {
	case "token issued":
		kid, _ := m["key_id"].(string)
		ct := r.kids[kid]
		if ct == nil {
			r.problemLocked("log reports a token the simulator never issued (key_id %s)", kid)
			return
		}
		ct.committed = true
		delete(r.pending[ct.ch], kid)
		r.curRec[ct.ch] = crashCur{kid: kid, rotateAt: relLogTime(m["rotate_at"]), expiresAt: relLogTime(m["expires_at"])}
	case relOrphanMsg:
		ids, _ := m["orphan_key_ids"].([]any)
		listed := map[string]bool{}
		for _, v := range ids {
			kid, _ := v.(string)
			listed[kid] = true
			switch ct := r.kids[kid]; {
			case ct == nil:
				r.problemLocked("channel %s: orphan %s is not a token the simulator issued", chID, kid)
			case ct.committed:
				r.falseOrphans++
				r.problemLocked("channel %s: committed token %s reported as an orphan (tokend lost track of it)", chID, kid)
			case !ct.lost:
				r.problemLocked("channel %s: orphan %s was not lost", chID, kid)
			default:
				ct.orphanSeen = true
				ct.seenGen = r.gen
				// Play the operator who revokes reported orphans (most
				// of the time), so the channel's budget of lost tokens
				// frees up and more kills can land in the window.
				if !ct.revokedByTest && rand.Float64() < r.revokeOrphanP {
					ct.revokedByTest = r.e.sim.RevokeKeyID(ct.ch, ct.kid)
				}
			}
		}
		// The report is complete: every lost token of the channel
		// that LINE still holds is in it.
		now := time.Now()
		for _, ct := range r.kids {
			if ct.ch == chID && ct.lost && !ct.revokedByTest && !listed[ct.kid] && ct.expiresAt.After(now.Add(2*time.Second)) {
				r.problemLocked("channel %s: orphan report misses lost token %s", chID, ct.kid)
			}
		}
	default:
		if level == "warn" || level == "error" {
			r.warnings[msg]++
			if len(r.warnLines) < 10 {
				r.warnLines = append(r.warnLines, fmt.Sprintf("gen %d, killed=%v: %s", r.gen, r.killed, line))
			}
		}
	}
}

// relLogTime parses a time field of the daemon's JSON log.
func relLogTime(v any) time.Time {
	s, _ := v.(string)
	for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// check runs while tokend is down (or stopped): the store opens, tracks
// every committed token LINE still holds, and the outputs hold committed
// tokens; tokens LINE issued that tokend never committed become lost.
func (r *crashRun) check(afterKill bool) {
	t := r.t
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		n := r.inflightN
		r.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue requests still at the simulator 5s after tokend died")
		}
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	r.storeChecks++
	r.mu.Unlock()
	st, err := store.Open(r.stateDir)
	if err != nil {
		t.Fatalf("after kill %d the store does not open: %v", r.killCount(), err)
	}
	all, err := st.All()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("after kill %d the store cannot be read: %v", r.killCount(), err)
	}
	now := time.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.storeOpens++
	inStore := map[string]bool{}
	for _, id := range r.ids {
		currents := 0
		delete(r.curRec, id)
		for _, rec := range all[id] {
			inStore[rec.KeyID] = true
			ct := r.kids[rec.KeyID]
			if ct == nil || ct.tok != rec.AccessToken || ct.ch != id {
				r.problemLocked("channel %s: the store holds a token the simulator did not issue to it (%s)", id, rec.KeyID)
				continue
			}
			ct.committed = true
			if rec.State == store.StateCurrent {
				currents++
				r.curRec[id] = crashCur{kid: rec.KeyID, expiresAt: rec.ExpiresAt,
					rotateAt: rotator.RotateAt(rec.IssuedAt, rec.ExpiresAt, rec.ID, 55*time.Second, 0)}
			}
		}
		if currents > 1 {
			r.problemLocked("channel %s: %d current records in the store", id, currents)
		}
	}
	newLost := 0
	for _, id := range r.ids {
		for _, ts := range r.e.sim.Tokens(id) {
			ct := r.kids[ts.KeyID]
			if ct == nil {
				r.problemLocked("channel %s: the simulator issued a token the test did not see", id)
				continue
			}
			valid := !ts.Revoked && now.Before(ts.ExpiresAt.Add(-2*time.Second))
			switch {
			case ct.committed && valid && !inStore[ct.kid]:
				r.committedLost++
				r.problemLocked("channel %s: committed token %s is valid at LINE but no longer in the store", id, ct.kid)
			case ct.lost && inStore[ct.kid]:
				r.problemLocked("channel %s: lost token %s appeared in the store", id, ct.kid)
			case !ct.committed && !ct.lost:
				ct.lost = true
				ct.lostAt = r.kills
				ct.expiredBeforeRestart = ts.Revoked || !now.Before(ts.ExpiresAt)
				newLost++
			}
		}
		clear(r.pending[id])
		// What readers may see must have been committed first.
		if raw, err := os.ReadFile(r.e.out(r.names[id] + ".raw")); err == nil {
			if ct := r.toks[string(raw)]; ct == nil || !ct.committed {
				r.publishedUncommitted++
				r.problemLocked("channel %s: the raw output holds a token that was never committed", id)
			}
		}
		if mv := r.e.sim.MaxValid(id); mv > 3 {
			r.problemLocked("channel %s: %d valid tokens at LINE at once", id, mv)
		}
	}
	if afterKill && newLost > 0 {
		r.windowKills++
	}
	// A kill during an output write leaves its temporary file behind
	// (until the next start removes it); it holds a token, so it must be no
	// more readable than the output.
	tmps, _ := filepath.Glob(filepath.Join(r.e.dir, "out", ".*.tmp-*"))
	r.tmpSeen = max(r.tmpSeen, len(tmps))
	for _, f := range tmps {
		if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o077 != 0 {
			r.problemLocked("temporary file %s left by a kill has mode %v", filepath.Base(f), fi.Mode().Perm())
		}
	}
}

// readFiles reads every output file in a loop until stop.
func (r *crashRun) readFiles(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		for _, id := range r.ids {
			name := r.names[id]
			for _, f := range []string{"raw", "json", "env"} {
				path := r.e.out(name + "." + f)
				b, err := os.ReadFile(path)
				r.mu.Lock()
				seen := r.seen[path]
				r.mu.Unlock()
				if errors.Is(err, fs.ErrNotExist) {
					if seen {
						r.torn.Add(1)
						r.problem("%s disappeared", filepath.Base(path))
					}
					continue
				}
				r.reads.Add(1)
				if err != nil {
					r.torn.Add(1)
					r.problem("read %s: %v", filepath.Base(path), err)
					continue
				}
				if why := r.validate(f, id, b); why != "" {
					r.torn.Add(1)
					r.problem("%s: %s", filepath.Base(path), why)
					continue
				}
				if !seen {
					r.mu.Lock()
					r.seen[path] = true
					r.mu.Unlock()
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// readSocket asks the socket for every channel's token, JSON and raw, in a
// loop until stop.
func (r *crashRun) readSocket(stop <-chan struct{}) {
	c := relClient(r.e.sock, 2*time.Second)
	for {
		select {
		case <-stop:
			return
		default:
		}
		for _, id := range r.ids {
			name := r.names[id]
			for _, f := range []string{"json", "raw"} {
				q := ""
				if f == "raw" {
					q = "?format=raw"
				}
				code, body, err := relGet(c, "/v1/channels/"+name+"/token"+q)
				if err != nil {
					r.down.Add(1) // tokend is down (or died mid-answer)
					time.Sleep(2 * time.Millisecond)
					continue
				}
				r.reads.Add(1)
				r.mu.Lock()
				seen := r.seen[name]
				r.mu.Unlock()
				switch code {
				case http.StatusOK:
					if why := r.validate(f, id, body); why != "" {
						r.torn.Add(1)
						r.problem("socket %s %s: %s", name, f, why)
					} else if !seen {
						r.mu.Lock()
						r.seen[name] = true
						r.mu.Unlock()
					}
				case http.StatusServiceUnavailable:
					if seen {
						r.unavail.Add(1)
					}
				default:
					r.torn.Add(1)
					r.problem("socket %s %s: status %d", name, f, code)
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// validate says what is wrong with b as channel id's token in format f
// ("" if nothing). It never quotes the token.
func (r *crashRun) validate(f, id string, b []byte) string {
	var tok string
	switch f {
	case "raw":
		tok = string(b)
	case "env":
		s := string(b)
		if !strings.HasPrefix(s, "LINE_CHANNEL_ACCESS_TOKEN=") || !strings.HasSuffix(s, "\n") {
			return fmt.Sprintf("not an env assignment (%d bytes)", len(b))
		}
		tok = strings.TrimSuffix(strings.TrimPrefix(s, "LINE_CHANNEL_ACCESS_TOKEN="), "\n")
	case "json":
		var js struct {
			ChannelID   string `json:"channel_id"`
			Name        string `json:"name"`
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			KeyID       string `json:"key_id"`
			ExpiresAt   string `json:"expires_at"`
		}
		if err := json.Unmarshal(b, &js); err != nil {
			return fmt.Sprintf("unparsable JSON (%d bytes): %v", len(b), err)
		}
		if js.ChannelID != id || js.Name != r.names[id] || js.TokenType != "Bearer" {
			return "wrong channel_id, name or token_type"
		}
		if _, err := time.Parse(time.RFC3339, js.ExpiresAt); err != nil {
			return "bad expires_at"
		}
		tok = js.AccessToken
		r.mu.Lock()
		ct := r.toks[tok]
		r.mu.Unlock()
		if ct != nil && ct.kid != js.KeyID {
			return "key_id does not match the token"
		}
	}
	if tok == "" {
		return "empty token"
	}
	r.mu.Lock()
	ct := r.toks[tok]
	r.mu.Unlock()
	if ct == nil {
		return fmt.Sprintf("not a token the simulator issued (%d bytes)", len(tok))
	}
	if ct.ch != id {
		return "a token of another channel"
	}
	if !r.e.sim.IsValid(tok) {
		r.stale.Add(1) // counted, not a tear: see the summary
	}
	return ""
}
