package socket

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestUncleanPathsGetJSON404: a path that is not in clean form gets the
// JSON 404 every other error has, on the socket and on metrics_listen,
// where http.ServeMux would redirect with an HTML body. The request is
// written raw, as a client that does not clean paths sends it.
func TestUncleanPathsGetJSON404(t *testing.T) {
	metrics := promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	for _, h := range []struct {
		name string
		h    http.Handler
	}{
		{"socket", NewHandler(newFakeSource(), HandlerOptions{Metrics: metrics})},
		{"metrics_listen", NewMetricsHandler(newFakeSource(), metrics)},
	} {
		s := startServer(t, h.h)
		for _, target := range []string{
			"/v1/channels//token", "/v1/channels/../../healthz", "/./healthz", "//healthz", "/healthz/.", "/v1//channels",
		} {
			c, err := net.Dial("unix", s.path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error string `json:"error"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			c.Close()
			if resp.StatusCode != http.StatusNotFound || derr != nil || body.Error == "" || resp.Header.Get("Location") != "" {
				t.Errorf("%s: GET %s: status %d, Location %q, JSON error %q (%v); want 404 with a JSON error",
					h.name, target, resp.StatusCode, resp.Header.Get("Location"), body.Error, derr)
			}
		}
		// Clean paths still answer.
		if status, _, _ := s.do(t, "GET", "/healthz", nil); status != http.StatusOK {
			t.Errorf("%s: GET /healthz: %d", h.name, status)
		}
	}
}
