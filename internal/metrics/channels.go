package metrics

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// channelCollector holds every per-channel series in one map of small
// structs and builds the samples at scrape time. A GaugeVec/CounterVec
// child costs ~400 bytes per series (label pairs, descriptors, hashes);
// with six series per channel that was ~2.3 KiB a channel, against ~0.3 KiB
// here: it matters at 10,000 channels.
type channelCollector struct {
	expiry, nextRotation, rotations, revocations, orphans, outputErrors *prometheus.Desc

	mu sync.Mutex
	m  map[string]*channelSeries // by channel label
}

// channelSeries is one channel's values.
type channelSeries struct {
	expiry, nextRotation float64
	orphans              float64
	outputErrors         float64
	has                  uint8   // which optional series exist: has* bits
	rotations            []count // by result, few
	revocations          []count
}

// Bits of channelSeries.has.
const (
	hasToken = 1 << iota
	hasOrphans
	hasOutputErrors
)

// count is a counter's value for one result label.
type count struct {
	result string
	n      float64
}

func newChannelCollector() *channelCollector {
	ch, chRes := []string{"channel"}, []string{"channel", "result"}
	return &channelCollector{
		expiry: prometheus.NewDesc("tokend_token_expiry_timestamp_seconds",
			"When the channel's current token expires, in seconds since the Unix epoch (0: no token).", ch, nil),
		nextRotation: prometheus.NewDesc("tokend_token_next_rotation_timestamp_seconds",
			"When tokend next rotates the channel's token, in seconds since the Unix epoch (0: not scheduled).", ch, nil),
		rotations: prometheus.NewDesc("tokend_rotations_total",
			"Token issuances and rotations, by result (ok or the cause of the failure).", chRes, nil),
		revocations: prometheus.NewDesc("tokend_revocations_total",
			"Revocations of superseded tokens, by result (ok or the cause of the failure).", chRes, nil),
		orphans: prometheus.NewDesc("tokend_orphan_key_ids",
			"Valid key IDs LINE lists for the channel that tokend does not hold (LINE allows 30 valid tokens).", ch, nil),
		outputErrors: prometheus.NewDesc("tokend_output_errors_total",
			"Failed writes of the channel's file outputs.", ch, nil),
		m: make(map[string]*channelSeries),
	}
}

// update runs f on the channel's series, creating them if needed.
func (c *channelCollector) update(channel string, f func(*channelSeries)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[channel]
	if s == nil {
		s = &channelSeries{}
		c.m[strings.Clone(channel)] = s
	}
	f(s)
}

// forget deletes the channel's series.
func (c *channelCollector) forget(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, channel)
}

// inc adds one to result's count.
func inc(counts []count, result string) []count {
	for i := range counts {
		if counts[i].result == result {
			counts[i].n++
			return counts
		}
	}
	return append(counts, count{result: strings.Clone(result), n: 1})
}

// Describe sends the descriptors of the per-channel series.
func (c *channelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.expiry, c.nextRotation, c.rotations, c.revocations, c.orphans, c.outputErrors} {
		ch <- d
	}
}

// Collect sends the per-channel samples. It copies the values under the
// lock and builds the samples after releasing it, so a scrape of many
// channels does not hold up the rotator.
func (c *channelCollector) Collect(ch chan<- prometheus.Metric) {
	type snap struct {
		channel string
		s       channelSeries
	}
	c.mu.Lock()
	snaps := make([]snap, 0, len(c.m))
	for name, s := range c.m {
		cp := *s
		cp.rotations = append([]count(nil), s.rotations...)
		cp.revocations = append([]count(nil), s.revocations...)
		snaps = append(snaps, snap{name, cp})
	}
	c.mu.Unlock()

	for _, sn := range snaps {
		s := &sn.s
		// One label pair per channel, shared by its samples.
		channel := &dto.LabelPair{Name: &labelChannel, Value: proto.String(validUTF8(sn.channel))}
		one := []*dto.LabelPair{channel}
		if s.has&hasToken != 0 {
			ch <- &sample{c.expiry, one, false, s.expiry}
			ch <- &sample{c.nextRotation, one, false, s.nextRotation}
		}
		if s.has&hasOrphans != 0 {
			ch <- &sample{c.orphans, one, false, s.orphans}
		}
		if s.has&hasOutputErrors != 0 {
			ch <- &sample{c.outputErrors, one, true, s.outputErrors}
		}
		for _, r := range s.rotations {
			ch <- &sample{c.rotations, withResult(channel, r.result), true, r.n}
		}
		for _, r := range s.revocations {
			ch <- &sample{c.revocations, withResult(channel, r.result), true, r.n}
		}
	}
}

// Label names, shared by every label pair.
var labelChannel, labelResult = "channel", "result"

func withResult(channel *dto.LabelPair, result string) []*dto.LabelPair {
	return []*dto.LabelPair{channel, {Name: &labelResult, Value: proto.String(validUTF8(result))}}
}

// sample is one gauge or counter value, built at scrape time. It is
// lighter than prometheus.MustNewConstMetric, which allocates and
// validates every label pair of every sample: at 10,000 channels that
// doubled the garbage of a scrape.
type sample struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair // sorted by name; shared, read-only
	counter bool
	value   float64
}

// Desc is the sample's descriptor.
func (s *sample) Desc() *prometheus.Desc { return s.desc }

// Write fills m with the sample.
func (s *sample) Write(m *dto.Metric) error {
	m.Label = s.labels
	v := s.value
	if s.counter {
		m.Counter = &dto.Counter{Value: &v}
	} else {
		m.Gauge = &dto.Gauge{Value: &v}
	}
	return nil
}

// validUTF8 makes s a valid label value: Prometheus refuses (and
// client_golang panics on) invalid UTF-8.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
