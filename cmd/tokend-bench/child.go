package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a running daemon process (tokend, or this binary in one of its
// hidden modes) with the systemd notify socket it reports READY=1 on.
type child struct {
	cmd     *exec.Cmd
	start   time.Time
	ready   chan time.Time // READY=1 arrival times
	notify  *net.UnixConn
	logPath string
	done    chan error

	stopOnce sync.Once
	stopErr  error
}

// startChild execs argv with NOTIFY_SOCKET pointing at a datagram socket
// this process owns; stderr goes to logPath. Every child's start is timed,
// so this process settles first.
func startChild(dir string, logPath string, argv ...string) (*child, error) {
	settle()
	nsPath := filepath.Join(dir, "n.sock")
	_ = os.Remove(nsPath)
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsPath, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		ns.Close()
		return nil, err
	}
	c := &child{ready: make(chan time.Time, 16), notify: ns, logPath: logPath, done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ns.Read(buf)
			if err != nil {
				return
			}
			at := time.Now()
			for line := range strings.SplitSeq(string(buf[:n]), "\n") {
				if line == "READY=1" {
					select {
					case c.ready <- at:
					default:
					}
				}
			}
		}
	}()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	c.cmd = cmd
	c.start = time.Now()
	if err := cmd.Start(); err != nil {
		ns.Close()
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go func() {
		err := cmd.Wait()
		logf.Close()
		c.done <- err
	}()
	return c, nil
}

// waitReady returns how long after exec the child sent READY=1.
func (c *child) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case at := <-c.ready:
		return at.Sub(c.start), nil
	case err := <-c.done:
		c.done <- err
		return 0, fmt.Errorf("daemon exited before READY=1: %v; log: %s", err, tail(c.logPath))
	case <-t.C:
		return 0, fmt.Errorf("no READY=1 within %v; log: %s", timeout, tail(c.logPath))
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// stop sends SIGTERM and waits for a clean exit. It may be called more
// than once (explicitly, then deferred): later calls return the first
// call's result.
func (c *child) stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.doStop() })
	return c.stopErr
}

func (c *child) doStop() error {
	defer c.notify.Close()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			return fmt.Errorf("daemon exit: %v; log: %s", err, tail(c.logPath))
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("daemon did not stop within 30s of SIGTERM")
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const clkTck = 100

// cpuTime is the child's user+system CPU time so far.
func (c *child) cpuTime() (time.Duration, error) {
	user, sys, err := c.cpuTimes()
	return user + sys, err
}

// cpuTimes is the child's user and system CPU time so far.
func (c *child) cpuTimes() (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid()))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("unexpected /proc/<pid>/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, errors.New("short /proc/<pid>/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return time.Duration(ut) * time.Second / clkTck, time.Duration(st) * time.Second / clkTck, nil
}

// selfCPU is this process's user+system CPU time so far: during a cold
// start, the simulator's share of the machine.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the child's VmRSS in bytes.
func (c *child) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid()))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// logLines counts the lines the child logged.
func (c *child) logLines() int {
	b, _ := os.ReadFile(c.logPath)
	return bytes.Count(b, []byte("\n"))
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
