package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// TestSocketUnderLoad attacks the real daemon's Unix socket while a
// well-behaved bot keeps reading its token: 1,000 concurrent connections,
// slow-header (slowloris) clients, oversized headers, hostile channel
// names, garbage and pipelined requests. Every read of the good client
// must succeed, /healthz must keep answering, no hostile request may get a
// token or a 5xx, and every connection must be closed by the server or its
// client within bounded time, leaving the daemon with the file descriptors
// it started with.
func TestSocketUnderLoad(t *testing.T) {
	const (
		concurrent = 1000
		slow       = 200 // partial request line, then silence
		drip       = 50  // one header byte per 500ms, forever
	)
	start := time.Now()
	relRaiseNofile(t, 8192)
	e := newRelEnv(t, nil)
	var chans strings.Builder
	for i, name := range []string{"load-1", "load-2"} {
		y, _ := e.relChannel(fmt.Sprintf("19%08d", i+1), name, relChanOpts{formats: []string{"raw"}})
		chans.WriteString(y)
	}
	e.writeConfig(chans.String(), "")
	log := &relLog{}
	p := e.relStart(log, nil, "run")
	waitFor(t, "the first token", 15*time.Second, func() bool {
		if !p.alive() {
			t.Fatalf("tokend exited: %v\n%s", p.err, log.String())
		}
		return fileExists(e.out("load-1.raw"))
	})
	good, err := os.ReadFile(e.out("load-1.raw"))
	if err != nil {
		t.Fatal(err)
	}
	isToken := func(b []byte) bool { return bytes.Contains(b, good) }
	pid := p.cmd.Process.Pid
	time.Sleep(100 * time.Millisecond)
	baseFDs := relFDs(pid)

	var failures []string
	var fmu sync.Mutex
	fail := func(format string, a ...any) {
		fmu.Lock()
		defer fmu.Unlock()
		if len(failures) < 40 {
			failures = append(failures, fmt.Sprintf(format, a...))
		}
	}

	// The well-behaved bot: one client reusing its connection, one opening a
	// new connection per read; and a health checker.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	var goodReads, goodFails atomic.Int64
	var goodMax, healthMax atomic.Int64
	var healthOK atomic.Int64
	bump := func(m *atomic.Int64, d time.Duration) {
		for {
			old := m.Load()
			if int64(d) <= old || m.CompareAndSwap(old, int64(d)) {
				return
			}
		}
	}
	for _, keepAlive := range []bool{true, false} {
		bg.Add(1)
		go func() {
			defer bg.Done()
			c := relClient(e.sock, 5*time.Second)
			c.Transport.(*http.Transport).DisableKeepAlives = !keepAlive
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				code, body, err := relGet(c, "/v1/channels/load-1/token?format=raw")
				bump(&goodMax, time.Since(t0))
				goodReads.Add(1)
				if err != nil || code != http.StatusOK || !bytes.Equal(body, good) {
					goodFails.Add(1)
					fail("good client (keep-alive %v): status %d, err %v, %d bytes", keepAlive, code, err, len(body))
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		c := relClient(e.sock, 5*time.Second)
		c.Transport.(*http.Transport).DisableKeepAlives = true
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			t0 := time.Now()
			code, body, err := relGet(c, "/healthz")
			bump(&healthMax, time.Since(t0))
			if err != nil || code != http.StatusOK || string(body) != "ok" {
				fail("/healthz: status %d, err %v", code, err)
				continue
			}
			healthOK.Add(1)
		}
	}()
	// Let the good client run alone for a moment.
	time.Sleep(300 * time.Millisecond)

	var attack sync.WaitGroup

	// 1. Slow-header clients: the server must drop them by itself
	// (ReadHeaderTimeout); each records how long that took.
	var slowClosed atomic.Int64
	var slowMax atomic.Int64
	for i := range slow + drip {
		attack.Add(1)
		go func() {
			defer attack.Done()
			c, err := net.Dial("unix", e.sock)
			if err != nil {
				fail("slow client dial: %v", err)
				return
			}
			defer c.Close()
			t0 := time.Now()
			_ = c.SetDeadline(t0.Add(30 * time.Second))
			if _, err := io.WriteString(c, "GET /v1/channels/load-1/tok"); err != nil {
				fail("slow client write: %v", err)
				return
			}
			done := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(c); done <- b }()
			if i >= slow { // drip one byte at a time
				tick := time.NewTicker(500 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case b := <-done:
						relFinishSlow(b, t0, &slowClosed, &slowMax, fail, isToken)
						return
					case <-tick.C:
						_, _ = c.Write([]byte("e"))
					}
				}
			}
			relFinishSlow(<-done, t0, &slowClosed, &slowMax, fail, isToken)
		}()
	}

	// 2. 1,000 connections open at once, each with a request in flight,
	// all held open until every one has its answer.
	var concOK, concStatus atomic.Int64
	var concMax atomic.Int64
	hold := make(chan struct{})
	var answered sync.WaitGroup
	answered.Add(concurrent)
	for i := range concurrent {
		attack.Add(1)
		go func() {
			defer attack.Done()
			once := sync.OnceFunc(answered.Done)
			defer once()
			c, err := net.DialTimeout("unix", e.sock, 10*time.Second)
			if err != nil {
				fail("connection %d: dial: %v", i, err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			name := "load-1"
			if i%2 == 1 {
				name = fmt.Sprintf("nope-%d", i)
			}
			t0 := time.Now()
			fmt.Fprintf(c, "GET /v1/channels/%s/token?format=raw HTTP/1.1\r\nHost: tokend\r\n\r\n", name)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				fail("connection %d: %v", i, err)
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			bump(&concMax, time.Since(t0))
			want := http.StatusOK
			if i%2 == 1 {
				want = http.StatusNotFound
			}
			switch {
			case err != nil:
				fail("connection %d: body: %v", i, err)
			case resp.StatusCode != want:
				concStatus.Add(1)
				fail("connection %d (%s): status %d, want %d", i, name, resp.StatusCode, want)
			case want == http.StatusOK && !bytes.Equal(body, good):
				fail("connection %d: wrong token", i)
			case want != http.StatusOK && isToken(body):
				fail("connection %d: unknown channel answered with a token", i)
			default:
				concOK.Add(1)
			}
			once()
			<-hold // keep the connection open (idle, keep-alive) until all have answered
		}()
	}
	go func() { answered.Wait(); close(hold) }()

	// 3. Oversized headers, hostile names, garbage: each answer must be the
	// listed status (else any 4xx), never a token.
	type probe struct {
		what  string
		req   string
		codes []int // acceptable statuses; nil: any 4xx
	}
	get := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n"
	}
	big := func(n int) string {
		return "GET /v1/channels/load-1/token HTTP/1.1\r\nHost: tokend\r\nX-Big: " + strings.Repeat("a", n) + "\r\nConnection: close\r\n\r\n"
	}
	name10k := strings.Repeat("n", 10<<10)
	probes := []probe{
		{"header 24 KiB", big(24 << 10), []int{431}},
		{"header 64 KiB", big(64 << 10), []int{431}},
		{"header 1 MiB", big(1 << 20), []int{431}},
		{"1,000 small headers (8 KB, within the limit)", "GET /healthz HTTP/1.1\r\nHost: tokend\r\n" + strings.Repeat("X-A: b\r\n", 1000) + "Connection: close\r\n\r\n", []int{200}},
		{"20,000 small headers (160 KB)", "GET /healthz HTTP/1.1\r\nHost: tokend\r\n" + strings.Repeat("X-A: b\r\n", 20000) + "Connection: close\r\n\r\n", []int{431}},
		{"request line 100 KiB", get("/v1/channels/" + strings.Repeat("x", 100<<10) + "/token"), []int{414, 431}},
		{"name ..", get("/v1/channels/../token"), []int{301, 307, 308, 400, 404}},
		{"name %2e%2e", get("/v1/channels/%2e%2e/token"), []int{301, 307, 308, 400, 404}},
		{"name ../load-1", get("/v1/channels/../channels/nope/token"), []int{301, 307, 308, 400, 404}},
		{"name with /", get("/v1/channels/load-1/x/token"), []int{404}},
		{"name %2F", get("/v1/channels/load-1%2F..%2F..%2Fetc%2Fpasswd/token"), []int{404}},
		{"name %2F alone", get("/v1/channels/%2F/token"), []int{404}},
		{"name NUL", get("/v1/channels/load-1%00/token"), []int{404}},
		{"name NUL only", get("/v1/channels/%00/token"), []int{404}},
		{"name CR LF", get("/v1/channels/load-1%0d%0aX-Injected:%20yes/token"), []int{404}},
		{"name unicode lookalike", get("/v1/channels/%EF%BD%8Coad-1/token"), []int{404}},
		{"name zero-width joiner", get("/v1/channels/load-1%E2%80%8B/token"), []int{404}},
		{"name raw UTF-8", get("/v1/channels/ボット/token"), []int{404}},
		{"name invalid UTF-8", get("/v1/channels/%FF%FE%FD/token"), []int{404}},
		{"name 10 KB", get("/v1/channels/" + name10k + "/token"), []int{404}},
		{"name 10 KB unicode", get("/v1/channels/" + strings.Repeat("%E3%83%9C", 1200) + "/token"), []int{404}},
		{"raw bytes in path", "GET /v1/channels/a\x00b/token HTTP/1.1\r\nHost: tokend\r\n\r\n", []int{400}},
		{"format traversal", get("/v1/channels/load-1/token?format=../../etc/passwd"), []int{400}},
		{"POST", "POST /v1/channels/load-1/token HTTP/1.1\r\nHost: tokend\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", []int{405}},
		{"DELETE", "DELETE /v1/channels/load-1/token HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n", []int{405}},
		{"CONNECT", "CONNECT load-1:443 HTTP/1.1\r\nHost: load-1:443\r\n\r\n", nil},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", []int{400}},
		{"HTTP/0.9", "GET /v1/channels/load-1/token\r\n\r\n", []int{400, 505}},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil},
		// Transfer-Encoding wins over Content-Length (RFC 9112 6.3); an empty
		// chunked body is a valid request.
		{"CL and TE", "GET /healthz HTTP/1.1\r\nHost: tokend\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", []int{200, 400}},
		{"two CL", "GET /healthz HTTP/1.1\r\nHost: tokend\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", []int{400}},
		{"negative CL", "GET /healthz HTTP/1.1\r\nHost: tokend\r\nContent-Length: -1\r\n\r\n", []int{400}},
		{"absolute URI other host", "GET http://evil.example/v1/channels/nope/token HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", []int{404}},
	}
	var probesOK atomic.Int64
	for _, pr := range probes {
		attack.Add(1)
		go func() {
			defer attack.Done()
			got, err := relRaw(e.sock, []byte(pr.req), 15*time.Second)
			if err != nil && !relIsReset(err) {
				fail("%s: %v", pr.what, err)
				return
			}
			if isToken([]byte(got)) {
				fail("%s: the answer holds the token", pr.what)
				return
			}
			if got == "" {
				// Closed without an answer: allowed only where no status is
				// prescribed.
				if pr.codes != nil {
					fail("%s: connection closed without an answer", pr.what)
				} else {
					probesOK.Add(1)
				}
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				fail("%s: unparsable answer: %v", pr.what, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			ok := resp.StatusCode >= 400 && resp.StatusCode < 500
			if pr.codes != nil {
				ok = false
				for _, c := range pr.codes {
					ok = ok || resp.StatusCode == c
				}
			}
			if !ok {
				fail("%s: status %d", pr.what, resp.StatusCode)
				return
			}
			if resp.Header.Get("X-Injected") != "" {
				fail("%s: header injected", pr.what)
			}
			// Errors are JSON and repeat at most a clipped name.
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				var js struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(body, &js); err != nil || !utf8.ValidString(js.Error) {
					fail("%s: error body is not valid JSON: %v", pr.what, err)
				}
				if len(body) > 512 {
					fail("%s: error body of %d bytes (names must be clipped)", pr.what, len(body))
				}
			}
			probesOK.Add(1)
		}()
	}

	// 4. 200 requests pipelined on one connection.
	var pipelined atomic.Int64
	attack.Add(1)
	go func() {
		defer attack.Done()
		var b strings.Builder
		for i := range 200 {
			if i%2 == 0 {
				b.WriteString("GET /v1/channels/load-1/token?format=raw HTTP/1.1\r\nHost: tokend\r\n\r\n")
			} else {
				b.WriteString("GET /v1/channels/%2e%2e%2fnope/token HTTP/1.1\r\nHost: tokend\r\n\r\n")
			}
		}
		b.WriteString("GET /healthz HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n")
		got, err := relRaw(e.sock, []byte(b.String()), 20*time.Second)
		if err != nil {
			fail("pipelined: %v", err)
			return
		}
		br := bufio.NewReader(strings.NewReader(got))
		for i := range 201 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				fail("pipelined answer %d: %v", i, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			want := http.StatusOK
			if i%2 == 1 && i < 200 {
				want = http.StatusNotFound
			}
			if resp.StatusCode != want || (want == http.StatusOK && i < 200 && !bytes.Equal(body, good)) {
				fail("pipelined answer %d: status %d", i, resp.StatusCode)
				return
			}
			pipelined.Add(1)
		}
	}()

	attackDone := make(chan struct{})
	go func() { attack.Wait(); close(attackDone) }()
	select {
	case <-attackDone:
	case <-time.After(45 * time.Second):
		t.Fatal("hostile clients still connected 45s after the attack began: the server does not bound them")
	}
	attackTime := time.Since(start)

	// Everything the server holds for those clients goes away by itself.
	var fds int
	waitFor(t, "the daemon's file descriptors back to where they started", 15*time.Second, func() bool {
		fds = relFDs(pid)
		return fds <= baseFDs+2
	})
	close(stop)
	bg.Wait()

	// Where 431 starts: net/http lets MaxHeaderBytes (16 KiB) plus 4 KiB
	// of slack through before it refuses.
	limit := 0
	for kib := 12; kib <= 24 && limit == 0; kib++ {
		got, err := relRaw(e.sock, []byte(big(kib<<10)), 5*time.Second)
		if err == nil && strings.HasPrefix(got, "HTTP/1.1 431") {
			limit = kib
		}
	}
	if limit == 0 || limit > 21 {
		t.Errorf("a %d KiB header is still accepted", 24)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, 15*time.Second); code != 0 {
		t.Errorf("SIGTERM after the attack: exit %d", code)
	}
	// The daemon's log never repeats a 10 KB name.
	for _, line := range strings.Split(log.String(), "\n") {
		if len(line) > 4096 || strings.Contains(line, name10k[:256]) {
			t.Errorf("a log line of %d bytes repeats a hostile name", len(line))
			break
		}
	}
	if isToken([]byte(log.String())) {
		t.Error("the daemon's log holds the token")
	}
	for _, f := range failures {
		t.Error(f)
	}
	if n := goodFails.Load(); n > 0 {
		t.Errorf("%d of %d good reads failed", n, goodReads.Load())
	}
	if concOK.Load() != concurrent {
		t.Errorf("%d of %d concurrent connections answered as expected", concOK.Load(), concurrent)
	}
	if slowClosed.Load() != slow+drip {
		t.Errorf("%d of %d slow clients were dropped by the server", slowClosed.Load(), slow+drip)
	}
	relSummary(t, "TOKEND_SOCKETLOAD_SUMMARY", fmt.Sprintf(
		"socketload: good_reads=%d failed=%d max_latency=%s healthz=%d max=%s concurrent=%d/%d max=%s slow_dropped=%d/%d after<=%s probes=%d/%d pipelined=%d/201 431_from=%dKiB daemon_fds=%d->%d attack=%s total=%s",
		goodReads.Load(), goodFails.Load(), time.Duration(goodMax.Load()).Round(time.Millisecond),
		healthOK.Load(), time.Duration(healthMax.Load()).Round(time.Millisecond),
		concOK.Load(), concurrent, time.Duration(concMax.Load()).Round(time.Millisecond),
		slowClosed.Load(), slow+drip, time.Duration(slowMax.Load()).Round(100*time.Millisecond),
		probesOK.Load(), len(probes), pipelined.Load(), limit, baseFDs, fds,
		attackTime.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond)))
}

// relFinishSlow records a slow client dropped by the server after t0.
func relFinishSlow(b []byte, t0 time.Time, closed, maxD *atomic.Int64, fail func(string, ...any), isToken func([]byte) bool) {
	d := time.Since(t0)
	if d > 25*time.Second {
		fail("slow client held for %s", d)
		return
	}
	if isToken(b) {
		fail("slow client got the token")
		return
	}
	closed.Add(1)
	for {
		old := maxD.Load()
		if int64(d) <= old || maxD.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// relIsReset reports a connection the server reset or closed under a write.
func relIsReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}
