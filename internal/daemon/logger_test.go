package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/metrics"
)

// TestLoggerSamplesFloods: of 1,000 warnings with one message logged at
// once, NewLogger's logger writes the first 100 a second and every 100th
// after, and counts the rest in tokend_log_lines_dropped_total{level};
// another message in the same second is written.
func TestLoggerSamplesFloods(t *testing.T) {
	out := filepath.Join(t.TempDir(), "stderr")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stderr := os.Stderr
	os.Stderr = f // zap's "stderr" is os.Stderr when the logger is built
	m := metrics.New()
	log, _, err := NewLogger(config.Log{Level: "info", Format: "json"}, m)
	os.Stderr = stderr
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for range n {
		log.Warn("issue token failed")
	}
	log.Warn("reconcile failed")
	_ = log.Sync()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	written := strings.Count(string(b), `"msg":"issue token failed"`)
	dropped := 0.0
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokend_log_lines_dropped_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if l := s.GetLabel(); len(l) == 1 && l[0].GetValue() == "warn" {
				dropped = s.GetCounter().GetValue()
			}
		}
	}
	// The loop may cross a second's boundary: then two seconds' first 100.
	if written < 100 || written > 220 || written+int(dropped) != n {
		t.Fatalf("of %d equal warnings %d were written and %v counted dropped; want 100-220 written, the rest counted", n, written, dropped)
	}
	if !strings.Contains(string(b), `"msg":"reconcile failed"`) {
		t.Fatal("another message in the same second was dropped")
	}
}
