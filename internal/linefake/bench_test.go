package linefake_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/tokend/tokend/internal/linefake"
)

// BenchmarkIssueV21Channels issues v2.1 tokens round-robin over 10,000
// channels from parallel goroutines, straight through ServeHTTP.
func BenchmarkIssueV21Channels(b *testing.B) {
	const channels = 10000
	clock := clockwork.NewFakeClock()
	srv := linefake.New(linefake.Options{Clock: clock})
	bodies := make([]string, channels)
	for i := range bodies {
		id := fmt.Sprintf("1%09d", i)
		srv.RegisterKey(id, "bench-kid", &keyA.PublicKey)
		bodies[i] = issueForm(linefake.Assertion(id, "bench-kid", keyA, clock.Now(), time.Hour)).Encode()
	}
	var next, limited atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)%channels]
			req := httptest.NewRequest(http.MethodPost, "/oauth2/v2.1/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			switch w.Code {
			case http.StatusOK:
			case http.StatusBadRequest: // a channel reached its 30 tokens
				limited.Add(1)
			default:
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(limited.Load()), "limited")
}
