package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	exp  = time.Date(2025, 4, 3, 5, 5, 6, 500e6, time.UTC)
	next = time.Date(2025, 3, 24, 5, 5, 6, 0, time.UTC)
)

// record drives every method once or more.
func record(m *Metrics) {
	m.SetToken("shop-bot", exp, next)
	m.SetToken("1657000001", time.Time{}, time.Time{})
	m.Rotation("shop-bot", "ok")
	m.Rotation("shop-bot", "ok")
	m.Rotation("shop-bot", "http_429")
	m.Revocation("shop-bot", "ok")
	m.Revocation("1657000001", "timeout")
	m.LINERequest("issue_v2.1", "ok", 120*time.Millisecond)
	m.LINERequest("issue_v2.1", "http_429", 40*time.Millisecond)
	m.LINERequest("kids_v2.1", "ok", 3*time.Second)
	m.SetOrphans("shop-bot", 3)
	m.SetOrphans("1657000001", 0)
	m.OutputError("shop-bot")
	m.OutputError("shop-bot")
	m.SetReady(true)
}

const wantChannels = `
# HELP tokend_token_expiry_timestamp_seconds When the channel's current token expires, in seconds since the Unix epoch (0: no token).
# TYPE tokend_token_expiry_timestamp_seconds gauge
tokend_token_expiry_timestamp_seconds{channel="1657000001"} 0
tokend_token_expiry_timestamp_seconds{channel="shop-bot"} 1.7436567065e+09
# HELP tokend_token_next_rotation_timestamp_seconds When tokend next rotates the channel's token, in seconds since the Unix epoch (0: not scheduled).
# TYPE tokend_token_next_rotation_timestamp_seconds gauge
tokend_token_next_rotation_timestamp_seconds{channel="1657000001"} 0
tokend_token_next_rotation_timestamp_seconds{channel="shop-bot"} 1.742792706e+09
# HELP tokend_rotations_total Token issuances and rotations, by result (ok or the cause of the failure).
# TYPE tokend_rotations_total counter
tokend_rotations_total{channel="shop-bot",result="http_429"} 1
tokend_rotations_total{channel="shop-bot",result="ok"} 2
# HELP tokend_revocations_total Revocations of superseded tokens, by result (ok or the cause of the failure).
# TYPE tokend_revocations_total counter
tokend_revocations_total{channel="1657000001",result="timeout"} 1
tokend_revocations_total{channel="shop-bot",result="ok"} 1
# HELP tokend_orphan_key_ids Valid key IDs LINE lists for the channel that tokend does not hold (LINE allows 30 valid tokens).
# TYPE tokend_orphan_key_ids gauge
tokend_orphan_key_ids{channel="1657000001"} 0
tokend_orphan_key_ids{channel="shop-bot"} 3
# HELP tokend_output_errors_total Failed writes of the channel's file outputs.
# TYPE tokend_output_errors_total counter
tokend_output_errors_total{channel="1657000001"} 0
tokend_output_errors_total{channel="shop-bot"} 2
# HELP tokend_ready 1 when every channel holds a valid token, else 0.
# TYPE tokend_ready gauge
tokend_ready 1
`

const wantLINE = `
# HELP tokend_line_requests_total Requests to the LINE OAuth API, by endpoint and result.
# TYPE tokend_line_requests_total counter
tokend_line_requests_total{endpoint="issue_v2.1",result="http_429"} 1
tokend_line_requests_total{endpoint="issue_v2.1",result="ok"} 1
tokend_line_requests_total{endpoint="kids_v2.1",result="ok"} 1
# HELP tokend_line_request_duration_seconds Latency of requests to the LINE OAuth API, by endpoint.
# TYPE tokend_line_request_duration_seconds histogram
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="0.025"} 0
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="0.05"} 1
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="0.1"} 1
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="0.25"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="0.5"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="1"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="2.5"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="5"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="10"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="30"} 2
tokend_line_request_duration_seconds_bucket{endpoint="issue_v2.1",le="+Inf"} 2
tokend_line_request_duration_seconds_sum{endpoint="issue_v2.1"} 0.16
tokend_line_request_duration_seconds_count{endpoint="issue_v2.1"} 2
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="0.025"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="0.05"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="0.1"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="0.25"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="0.5"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="1"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="2.5"} 0
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="5"} 1
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="10"} 1
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="30"} 1
tokend_line_request_duration_seconds_bucket{endpoint="kids_v2.1",le="+Inf"} 1
tokend_line_request_duration_seconds_sum{endpoint="kids_v2.1"} 3
tokend_line_request_duration_seconds_count{endpoint="kids_v2.1"} 1
`

var perChannelSeries = []string{
	"tokend_token_expiry_timestamp_seconds", "tokend_token_next_rotation_timestamp_seconds",
	"tokend_rotations_total", "tokend_revocations_total", "tokend_orphan_key_ids",
	"tokend_output_errors_total", "tokend_ready",
}

func TestMetricsValues(t *testing.T) {
	m := New()
	record(m)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(wantChannels), perChannelSeries...); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(wantLINE),
		"tokend_line_requests_total", "tokend_line_request_duration_seconds"); err != nil {
		t.Fatal(err)
	}
	m.SetReady(false)
	if got := testutil.ToFloat64(m.ready); got != 0 {
		t.Fatalf("tokend_ready = %v after SetReady(false)", got)
	}
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

func TestForgetChannel(t *testing.T) {
	m := New()
	record(m)
	m.ForgetChannel("shop-bot")
	m.ForgetChannel("never-seen")
	want := `
# HELP tokend_token_expiry_timestamp_seconds When the channel's current token expires, in seconds since the Unix epoch (0: no token).
# TYPE tokend_token_expiry_timestamp_seconds gauge
tokend_token_expiry_timestamp_seconds{channel="1657000001"} 0
# HELP tokend_token_next_rotation_timestamp_seconds When tokend next rotates the channel's token, in seconds since the Unix epoch (0: not scheduled).
# TYPE tokend_token_next_rotation_timestamp_seconds gauge
tokend_token_next_rotation_timestamp_seconds{channel="1657000001"} 0
# HELP tokend_revocations_total Revocations of superseded tokens, by result (ok or the cause of the failure).
# TYPE tokend_revocations_total counter
tokend_revocations_total{channel="1657000001",result="timeout"} 1
# HELP tokend_orphan_key_ids Valid key IDs LINE lists for the channel that tokend does not hold (LINE allows 30 valid tokens).
# TYPE tokend_orphan_key_ids gauge
tokend_orphan_key_ids{channel="1657000001"} 0
# HELP tokend_output_errors_total Failed writes of the channel's file outputs.
# TYPE tokend_output_errors_total counter
tokend_output_errors_total{channel="1657000001"} 0
# HELP tokend_ready 1 when every channel holds a valid token, else 0.
# TYPE tokend_ready gauge
tokend_ready 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), perChannelSeries...); err != nil {
		t.Fatal(err)
	}
	// LINE series have no channel label and stay.
	if n := testutil.CollectAndCount(m.lineRequests); n != 3 {
		t.Fatalf("%d line request series; want 3", n)
	}
}

func TestHandler(t *testing.T) {
	m := New()
	record(m)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`tokend_rotations_total{channel="shop-bot",result="ok"} 2`,
		"tokend_ready 1",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestInvalidUTF8Labels(t *testing.T) {
	m := New()
	m.SetToken("bad\xff", exp, next)
	m.Rotation("bad\xff", "oops\xfe")
	m.LINERequest("issue\xff", "ok", time.Second)
	want := `
# HELP tokend_rotations_total Token issuances and rotations, by result (ok or the cause of the failure).
# TYPE tokend_rotations_total counter
tokend_rotations_total{channel="bad�",result="oops�"} 1
# HELP tokend_line_requests_total Requests to the LINE OAuth API, by endpoint and result.
# TYPE tokend_line_requests_total counter
tokend_line_requests_total{endpoint="issue�",result="ok"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "tokend_rotations_total", "tokend_line_requests_total"); err != nil {
		t.Fatal(err)
	}
	m.ForgetChannel("bad\xff")
	if n, err := testutil.GatherAndCount(m.Registry(), "tokend_rotations_total"); err != nil || n != 0 {
		t.Fatalf("%d series left, %v", n, err)
	}
}

// TestConcurrent exercises the collector under the race detector.
func TestConcurrent(t *testing.T) {
	m := New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			ch := fmt.Sprint("c", i%7)
			m.SetToken(ch, exp, next)
			m.Rotation(ch, "ok")
			m.OutputError(ch)
			if i%5 == 0 {
				m.ForgetChannel(ch)
			}
		}
	}()
	for range 20 {
		if _, err := m.Registry().Gather(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	record(m)
	m.ForgetChannel("x")
	if m.Handler() != nil || m.Registry() != nil {
		t.Fatal("nil Metrics has a handler or registry")
	}
}

// populate gives n channels the series a healthy channel has: expiry, next
// rotation, orphans, output errors, one ok rotation and one ok revocation.
func populate(m *Metrics, n int) {
	for i := range n {
		ch := fmt.Sprintf("channel-%05d", i)
		m.SetToken(ch, exp, next)
		m.SetOrphans(ch, 1)
		m.Rotation(ch, "ok")
		m.Revocation(ch, "ok")
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryPerChannel measures what 10,000 channels' series cost (the
// daemon must fit 10,000 channels in ~150 MiB in all).
func TestMemoryPerChannel(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 10,000 channels")
	}
	const n = 10000
	m := New()
	before := heapInUse()
	populate(m, n)
	after := heapInUse()
	per := float64(after-before) / n
	t.Logf("%d channels: %.1f MiB, %.0f bytes per channel (6 series each)", n, float64(after-before)/(1<<20), per)
	if per > 1024 {
		t.Errorf("%.0f bytes per channel; want under 1 KiB", per)
	}
	runtime.KeepAlive(m)
}

func BenchmarkMemoryPerChannel(b *testing.B) {
	const n = 10000
	for b.Loop() {
		m := New()
		before := heapInUse()
		populate(m, n)
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "B/channel")
		runtime.KeepAlive(m)
	}
}

// discard is a ResponseWriter that drops the body, as a socket would
// stream it (a ResponseRecorder's growing buffer would dominate).
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkScrape10k is the cost of one scrape with 10,000 channels.
func BenchmarkScrape10k(b *testing.B) {
	m := New()
	populate(m, 10000)
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		m.Handler().ServeHTTP(&discard{h: http.Header{}}, req)
	}
}

func BenchmarkSetToken(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.SetToken("shop-bot", exp, next)
	}
}

// TestLogDroppedFromTheStart: the log-drop counters exist at 0 before the
// first drop, for every level sampling can drop.
func TestLogDroppedFromTheStart(t *testing.T) {
	m := New()
	want := `# HELP tokend_log_lines_dropped_total Log lines dropped by sampling: beyond the first 100 a second with the same message and level, all but every 100th.
# TYPE tokend_log_lines_dropped_total counter
tokend_log_lines_dropped_total{level="debug"} 0
tokend_log_lines_dropped_total{level="error"} 0
tokend_log_lines_dropped_total{level="info"} 0
tokend_log_lines_dropped_total{level="warn"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "tokend_log_lines_dropped_total"); err != nil {
		t.Fatal(err)
	}
}
