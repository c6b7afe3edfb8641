package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// pacedC is the paced load generator in C (-paced-client c, the default):
// the same schedule, latency rule and requests as load's paced mode, from
// one blocking thread per client. On the bench machine on 2026-12-06, five
// rounds alternating it with load's Go clients against the same two
// servers gave p99s of 0.87 ms (C) against 1.67 ms (Go) for the bare
// server and 1.28 against 4.18 ms for tokend (medians): a Go client
// goroutine waits for the runtime's netpoller and a free P before it sees
// its answer, and on 2 shared CPUs that wait is most of a slow request.
//
//go:embed cclient/paced.c
var pacedC []byte

// buildPacedC compiles pacedC with $CC (default cc) into dir.
func buildPacedC(dir string) (string, error) {
	src, bin := filepath.Join(dir, "paced.c"), filepath.Join(dir, "paced")
	if err := os.WriteFile(src, pacedC, 0o600); err != nil {
		return "", err
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if out, err := exec.Command(cc, "-O2", "-pthread", "-o", bin, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("-paced-client c: compiling the C load generator with %s: %v\n%s(install a C compiler, such as Debian's gcc, or use -paced-client go)", cc, err, out)
	}
	return bin, nil
}

// cLoad is load at rate > 0 with the C generator bin: the same targets
// (channels b00000 to b(n-1), tokenTargets' names), clients and window.
// A generator that fails counts as an error, so a verdict cannot pass on
// no figures.
func cLoad(ctx context.Context, bin, sock string, clients int, d time.Duration, n int, check bool, rate float64) loadResult {
	out, err := os.CreateTemp("", "tkb-paced")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokend-bench: paced client:", err)
		return loadResult{errs: 1, dur: d}
	}
	out.Close()
	defer os.Remove(out.Name())
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, sock, strconv.FormatFloat(d.Seconds(), 'f', -1, 64), strconv.FormatFloat(rate, 'f', -1, 64),
		strconv.Itoa(clients), strconv.Itoa(n), out.Name())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var answered, errs, not200 int
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "tokend-bench: paced client: %v %s\n", err, stderr.Bytes())
		return loadResult{errs: 1, dur: d}
	}
	if _, err := fmt.Sscan(stdout.String(), &answered, &errs, &not200); err != nil {
		fmt.Fprintf(os.Stderr, "tokend-bench: paced client printed %q: %v\n", stdout.Bytes(), err)
		return loadResult{errs: 1, dur: d}
	}
	raw, err := os.ReadFile(out.Name())
	if err != nil || len(raw) != 8*answered {
		fmt.Fprintf(os.Stderr, "tokend-bench: paced client: %d latencies in %d bytes (%v)\n", answered, len(raw), err)
		return loadResult{errs: 1, dur: d}
	}
	res := loadResult{dur: d, errs: errs, reqs: answered, lats: make([]time.Duration, answered)}
	for i := range res.lats {
		res.lats[i] = time.Duration(binary.NativeEndian.Uint64(raw[8*i:]))
	}
	if check {
		res.errs += not200
	}
	return res.withPercentiles()
}
