package socket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tokend/tokend/internal/rotator"
)

// ClientTimeout bounds each Client call.
const ClientTimeout = 5 * time.Second

// Response size limits: a token is a few hundred bytes; a status line per
// channel, for thousands of channels.
const (
	maxTokenBody  = 64 << 10
	maxStatusBody = 64 << 20
	maxErrorBody  = 4 << 10
)

// Client talks to a running tokend over its Unix socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the tokend serving socketPath.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{ // no Proxy: HTTP_PROXY must not apply to a socket
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:       1,
		IdleConnTimeout:    10 * time.Second,
		DisableCompression: true,
	}
	return &Client{path: socketPath, hc: &http.Client{
		Transport: tr,
		Timeout:   ClientTimeout,
		// The server redirects only non-canonical paths, which no
		// channel name has: report the status instead of following.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Token returns the current token of the channel (ID or name).
func (c *Client) Token(ctx context.Context, channel string) (string, error) {
	if channel == "" {
		return "", errors.New("channel name is empty")
	}
	resp, err := c.get(ctx, "/v1/channels/"+url.PathEscape(channel)+"/token?format=raw", "text/plain")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode >= 300 && resp.StatusCode < 400:
		return "", fmt.Errorf("unknown channel %q", channel)
	case resp.StatusCode == http.StatusServiceUnavailable:
		return "", fmt.Errorf("channel %q has no valid token yet", channel)
	case resp.StatusCode != http.StatusOK:
		return "", c.statusError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("read token from tokend at %s: %w", c.path, err)
	case len(body) > maxTokenBody:
		return "", fmt.Errorf("tokend at %s sent more than %d bytes for a token", c.path, maxTokenBody)
	case len(body) == 0:
		return "", fmt.Errorf("tokend at %s sent an empty token", c.path)
	}
	return string(body), nil
}

// Status returns the status of every channel.
func (c *Client) Status(ctx context.Context) ([]rotator.ChannelStatus, error) {
	resp, err := c.get(ctx, "/v1/channels", "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.statusError(resp)
	}
	var body struct {
		Channels []rotator.ChannelStatus `json:"channels"`
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBody))
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("read status from tokend at %s: %w", c.path, err)
	}
	return body.Channels, nil
}

// get sends GET path; its errors say how the socket could not be reached.
func (c *Client) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tokend"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("request tokend: %w", err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "tokend-cli")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	return resp, nil
}

// transportError explains a request that got no response.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("ask tokend at %s: %w", c.path, ctx.Err())
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		var errno syscall.Errno
		switch {
		case errors.As(err, &errno) && (errno == syscall.EACCES || errno == syscall.EPERM):
			return fmt.Errorf("cannot reach tokend at %s: %v; is this user allowed to open the socket (socket.mode, its group)?", c.path, errno)
		case errors.As(err, &errno):
			return fmt.Errorf("cannot reach tokend at %s: %v; is it running?", c.path, errno)
		}
		return fmt.Errorf("cannot reach tokend at %s: %v; is it running?", c.path, op.Err)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return fmt.Errorf("tokend at %s did not answer within %v", c.path, ClientTimeout)
	}
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the made-up URL
	}
	return fmt.Errorf("ask tokend at %s: %w", c.path, err)
}

// statusError explains an unexpected response, with the server's message.
func (c *Client) statusError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		msg = body.Error
	}
	msg = printable(msg, 200)
	if resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("tokend at %s refused this user (uid %d): %s", c.path, os.Getuid(), msg)
	}
	if msg == "" {
		return fmt.Errorf("tokend at %s: %s", c.path, resp.Status)
	}
	return fmt.Errorf("tokend at %s: %s: %s", c.path, resp.Status, msg)
}
