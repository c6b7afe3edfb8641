// Package metrics holds tokend's Prometheus metrics in a registry of its
// own (with the Go runtime and process collectors) and serves them.
//
// Series:
//
//	tokend_token_expiry_timestamp_seconds{channel}
//	tokend_token_next_rotation_timestamp_seconds{channel}
//	tokend_rotations_total{channel,result}
//	tokend_revocations_total{channel,result}
//	tokend_line_requests_total{endpoint,result}
//	tokend_line_request_duration_seconds{endpoint}   (histogram)
//	tokend_orphan_key_ids{channel}
//	tokend_output_errors_total{channel}
//	tokend_ready
//	tokend_log_lines_dropped_total{level}
//	tokend_hook_runs_total{result}
//
// The channel label is the channel's label (its name, else its ID); result
// is "ok" or a short cause such as "http_429" or "timeout".
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics records what tokend does. Its methods are safe for concurrent use
// and do nothing on a nil *Metrics.
type Metrics struct {
	reg          *prometheus.Registry
	handler      http.Handler
	channels     *channelCollector
	lineRequests *prometheus.CounterVec
	lineDuration *prometheus.HistogramVec
	ready        prometheus.Gauge
	logDropped   *prometheus.CounterVec
	hookRuns     *prometheus.CounterVec
}

// New returns metrics registered in a new registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		channels: newChannelCollector(),
		lineRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_line_requests_total",
			Help: "Requests to the LINE OAuth API, by endpoint and result.",
		}, []string{"endpoint", "result"}),
		lineDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokend_line_request_duration_seconds",
			Help:    "Latency of requests to the LINE OAuth API, by endpoint.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_ready",
			Help: "1 when every channel holds a valid token, else 0.",
		}),
		logDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_log_lines_dropped_total",
			Help: "Log lines dropped by sampling: beyond the first 100 a second with the same message and level, all but every 100th.",
		}, []string{"level"}),
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_hook_runs_total",
			Help: "Runs of a channel's on_rotate hooks after a new token, by result: ok, failed (one or more failed; the log says which), killed (at a stop; they run again at the next start).",
		}, []string{"result"}),
	}
	// The drop counters exist from the start, at 0, so that increase()
	// sees the first drop and an alert on them has a series to watch.
	for _, level := range []string{"debug", "info", "warn", "error"} {
		m.logDropped.WithLabelValues(level)
	}
	for _, result := range []string{"ok", "failed", "killed"} {
		m.hookRuns.WithLabelValues(result)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.channels, m.lineRequests, m.lineDuration, m.ready, m.logDropped, m.hookRuns,
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// Scrapes that pile up must not pile up memory. No Timeout: it
		// buffers the whole response (megabytes at 10,000 channels); the
		// server's write timeout bounds a scrape instead.
		MaxRequestsInFlight: 2,
	})
	return m
}

// Registry is the registry holding every tokend metric (nil for a nil
// *Metrics).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus exposition formats (nil
// for a nil *Metrics).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return nil
	}
	return m.handler
}

// LogDropped counts a log line the logger's sampling dropped.
func (m *Metrics) LogDropped(level string) {
	if m == nil {
		return
	}
	m.logDropped.WithLabelValues(level).Inc()
}

// HookRun counts a run of a channel's hooks: "ok", "failed" or "killed".
func (m *Metrics) HookRun(result string) {
	if m == nil {
		return
	}
	m.hookRuns.WithLabelValues(result).Inc()
}

// SetToken records the channel's current token expiry and next rotation. A
// zero time is exported as 0, so "expires soon" alerts fire for a channel
// with no token instead of losing the series.
func (m *Metrics) SetToken(channel string, expiresAt, nextRotation time.Time) {
	if m == nil {
		return
	}
	m.channels.update(channel, func(s *channelSeries) {
		s.expiry, s.nextRotation = unix(expiresAt), unix(nextRotation)
		// The output error counter exists from the start, so that
		// increase() sees the first failure.
		s.has |= hasToken | hasOutputErrors
	})
}

// Rotation counts an issuance or rotation with its result: "ok" or a cause.
func (m *Metrics) Rotation(channel, result string) {
	if m == nil {
		return
	}
	m.channels.update(channel, func(s *channelSeries) { s.rotations = inc(s.rotations, result) })
}

// Revocation counts a revocation with its result: "ok" or a cause.
func (m *Metrics) Revocation(channel, result string) {
	if m == nil {
		return
	}
	m.channels.update(channel, func(s *channelSeries) { s.revocations = inc(s.revocations, result) })
}

// LINERequest counts a request to LINE and observes its latency.
func (m *Metrics) LINERequest(endpoint, result string, d time.Duration) {
	if m == nil {
		return
	}
	endpoint, result = validUTF8(endpoint), validUTF8(result)
	m.lineRequests.WithLabelValues(endpoint, result).Inc()
	m.lineDuration.WithLabelValues(endpoint).Observe(d.Seconds())
}

// SetOrphans records how many orphan key IDs LINE lists for the channel.
func (m *Metrics) SetOrphans(channel string, n int) {
	if m == nil {
		return
	}
	m.channels.update(channel, func(s *channelSeries) {
		s.orphans = float64(n)
		s.has |= hasOrphans
	})
}

// OutputError counts a failed write of the channel's outputs.
func (m *Metrics) OutputError(channel string) {
	if m == nil {
		return
	}
	m.channels.update(channel, func(s *channelSeries) {
		s.outputErrors++
		s.has |= hasOutputErrors
	})
}

// SetReady records whether every channel holds a valid token.
func (m *Metrics) SetReady(ready bool) {
	if m == nil {
		return
	}
	if ready {
		m.ready.Set(1)
	} else {
		m.ready.Set(0)
	}
}

// ForgetChannel deletes every series of the channel (it was removed from
// the config).
func (m *Metrics) ForgetChannel(channel string) {
	if m == nil {
		return
	}
	m.channels.forget(channel)
}

// unix is t in seconds since the epoch, with millisecond precision; 0 for
// the zero time.
func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMilli()) / 1e3
}
