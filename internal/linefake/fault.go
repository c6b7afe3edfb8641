package linefake

import (
	"encoding/json"
	"math"
	"net"
	"net/http"
	"time"
)

// Fault makes an endpoint misbehave. It is applied before normal processing,
// so a faulted request changes no state, except that a Fault with only Delay,
// RetryAfter and/or Omit set delays, decorates or trims a normally processed
// request's answer.
//
// Several fields combine in this order: Delay, then Drop, then the response:
// Status (with Body and ContentType, else a LINE-shaped error body), else
// Malformed (200 with truncated JSON), else BodySize alone (200 with a padded
// JSON body); BodySize also pads the Status or Malformed body.
type Fault struct {
	Status      int           // answer this status instead of processing
	Body        string        // body for Status ("" = a LINE-shaped error)
	ContentType string        // Content-Type for Status ("" = application/json)
	Delay       time.Duration // wait this long (real time; ends if the client leaves)
	RetryAfter  string        // Retry-After header value
	Malformed   bool          // answer 200 with truncated JSON
	Drop        bool          // close the connection without answering (a reset)
	Omit        string        // leave this field out of a normally processed 200 answer (e.g. a token issued, without its expires_in)
	BodySize    int           // pad the body with spaces to this many bytes
	Times       int           // apply to the next Times requests; 0 = until ClearFaults
	Share       float64       // apply to this share of the requests, spread evenly (every other one for 0.5); 0 or 1 and over = every one

	seen int // requests the fault has matched, for Share
}

// SetFault installs f for the named endpoint (one of the Endpoint
// constants), replacing any fault it had. A name that is not an endpoint
// never matches a request.
func (s *Server) SetFault(endpoint string, f Fault) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults[endpoint] = &f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	clear(s.faults)
}

// takeFault returns the endpoint's fault, counting down its Times; a
// request that its Share lets through is served normally.
func (s *Server) takeFault(endpoint string) (Fault, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := s.faults[endpoint]
	if f == nil {
		return Fault{}, false
	}
	if f.Share > 0 && f.Share < 1 {
		// The n-th request is faulted when n*Share passes a whole number:
		// exactly Share of the requests, spread evenly, the same every run.
		f.seen++
		if math.Floor(float64(f.seen)*f.Share) == math.Floor(float64(f.seen-1)*f.Share) {
			return Fault{}, false
		}
	}
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, endpoint)
		}
	}
	return out, true
}

func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, entry Request, f Fault, rt route, formErr *response) {
	if f.Delay > 0 {
		// Real time on purpose: the point is to make a real client's
		// timeout fire, which a fake clock cannot do.
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.record(entry) // Status 0: the client left
			return
		}
	}
	if f.Drop {
		s.record(entry)
		drop(w)
		return
	}

	var resp response
	switch {
	case f.Status != 0:
		resp = faultStatusResponse(f)
	case f.Malformed:
		resp = response{status: http.StatusOK, contentType: "application/json",
			body: []byte(`{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJ`)}
	case f.BodySize > 0:
		resp = jsonResponse(http.StatusOK, map[string]string{"padding": ""})
	default:
		// Only Delay, RetryAfter and/or Omit: process normally.
		if formErr != nil {
			resp = *formErr
		} else {
			resp = rt.handle(s, entry.Form)
		}
		if f.Omit != "" && resp.status == http.StatusOK {
			resp.body = omitField(resp.body, f.Omit)
		}
	}
	if f.BodySize > len(resp.body) {
		resp.pad = f.BodySize - len(resp.body)
	}
	if f.RetryAfter != "" {
		if resp.header == nil {
			resp.header = http.Header{}
		}
		resp.header.Set("Retry-After", f.RetryAfter)
	}
	s.finish(w, entry, resp)
}

func faultStatusResponse(f Fault) response {
	if f.Body == "" {
		msg := http.StatusText(f.Status)
		switch {
		case f.Status == http.StatusTooManyRequests:
			msg = "The API rate limit has been exceeded. Try again later."
		case msg == "":
			msg = "Error"
		}
		return messageResponse(f.Status, msg)
	}
	ct := f.ContentType
	if ct == "" {
		ct = "application/json"
	}
	return response{status: f.Status, contentType: ct, body: []byte(f.Body)}
}

// drop closes the connection without a response. Over HTTP/1 the socket is
// hijacked and reset (SO_LINGER 0); where hijacking is impossible the
// handler aborts, which net/http turns into a closed stream without logging.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// omitField returns the JSON object body without field name (body as it
// is if it is not an object).
func omitField(body []byte, name string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	delete(m, name)
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}
