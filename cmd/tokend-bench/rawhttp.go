package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// rawConn is the load generator's HTTP/1.1 client: one kept-alive Unix
// socket connection, a request written and its answer read in the calling
// goroutine. net/http's client adds two goroutine hand-offs and several
// allocations per request, which on 2 shared cores cost more latency than
// the servers being measured.
type rawConn struct {
	path string
	c    net.Conn
	r    *bufio.Reader
	req  []byte
}

func dialRaw(path string) *rawConn { return &rawConn{path: path} }

// get sends GET target and reads the answer; it returns the status code.
// A broken connection is closed and redialled by the next call.
func (rc *rawConn) get(target string) (int, error) {
	if rc.c == nil {
		if err := rc.connect(); err != nil {
			return 0, err
		}
	}
	rc.req = append(rc.req[:0], "GET "...)
	rc.req = append(rc.req, target...)
	rc.req = append(rc.req, " HTTP/1.1\r\nHost: tokend\r\n\r\n"...)
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	status, err := rc.roundTrip()
	if err != nil {
		rc.close()
	}
	return status, err
}

// connect dials the socket; get calls it when the connection is not open.
func (rc *rawConn) connect() error {
	c, err := net.DialTimeout("unix", rc.path, 10*time.Second)
	if err != nil {
		return err
	}
	rc.c, rc.r = c, bufio.NewReaderSize(c, 4096)
	return nil
}

func (rc *rawConn) roundTrip() (int, error) {
	if _, err := rc.c.Write(rc.req); err != nil {
		return 0, err
	}
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		h, err := rc.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	if _, err := rc.r.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

func (rc *rawConn) close() {
	if rc.c != nil {
		_ = rc.c.Close()
		rc.c, rc.r = nil, nil
	}
}
