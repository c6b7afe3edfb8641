package main

import (
	"bufio"
	"context"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokend/tokend/internal/linefake"
	"github.com/tokend/tokend/internal/oauth"
)

const (
	benchKID    = "tokend-bench-kid"
	benchSecret = "0123456789abcdef0123456789abcdef"
)

// env is what every run shares: the temp root and the signing keys the
// channels use, channel i the key i mod len(keys).
type env struct {
	root     string
	keyPaths []string
	keys     []*rsa.PrivateKey
	channels int
	made     int    // instances made so far
	outRoot  string // where instances' outputs go; "": in the instance
}

// newEnv generates nkeys key files under root, on every CPU (a 2048-bit
// key takes about 50 ms to generate).
func newEnv(root string, n, nkeys int) (*env, error) {
	e := &env{root: root, channels: n, keyPaths: make([]string, nkeys), keys: make([]*rsa.PrivateKey, nkeys)}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range nkeys {
		g.Go(func() error {
			e.keyPaths[i] = filepath.Join(root, fmt.Sprintf("key%05d.jwk", i))
			if _, err := oauth.WriteNewKey(e.keyPaths[i]); err != nil {
				return err
			}
			k, err := oauth.LoadPrivateKey(e.keyPaths[i])
			e.keys[i] = k
			return err
		})
	}
	return e, g.Wait()
}

// key is channel i's signing key and its file.
func (e *env) key(i int) (*rsa.PrivateKey, string) {
	return e.keys[i%len(e.keys)], e.keyPaths[i%len(e.keys)]
}

// fsType names the file system holding path, for the bench's header.
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext2/3/4"
	case 0x9123683E:
		return "btrfs"
	case 0x58465342:
		return "xfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("type %#x", st.Type)
}

func channelID(i int) string   { return fmt.Sprintf("1%09d", i) }
func channelName(i int) string { return fmt.Sprintf("b%05d", i) }

// sim is a LINE simulator served on 127.0.0.1 with every bench channel
// registered under the shared key.
type sim struct {
	*linefake.Server
	url string
	srv *http.Server
}

func (e *env) newSim() (*sim, error) {
	s := linefake.New(linefake.Options{})
	for i := range e.channels {
		s.AddChannel(channelID(i), benchSecret)
		k, _ := e.key(i)
		s.RegisterKey(channelID(i), benchKID, &k.PublicKey)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with close
	return &sim{Server: s, url: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (s *sim) close() { _ = s.srv.Close() }

// lifetimes are the per-scenario defaults written to the config.
type lifetimes struct {
	tokenTTL, rotateBefore, revokeAfter, reconcileEvery string
	jitter                                              string
}

var steadyLifetimes = lifetimes{tokenTTL: "30d", rotateBefore: "10d", revokeAfter: "24h", reconcileEvery: "1h", jitter: "0.1"}

// instance is one tokend setup: a directory with its config, state,
// outputs and socket.
type instance struct {
	dir, config, state, out, socket string
	n                               int
}

func (in *instance) outPath(i int) string {
	return filepath.Join(in.out, channelName(i)+".token")
}

// newInstance writes a config for all channels in a new directory under
// root, named after name. Earlier instances stay until the bench ends:
// deleting 10,000 files just before a cold start taxes it on some file
// systems (ext4 without a journal skips recently freed inodes when it
// allocates one, and scans for them), which is the bench's doing, not
// tokend's.
func (e *env) newInstance(name, baseURL, level string, maxInFlight int, lt lifetimes) (*instance, error) {
	e.made++
	dir := filepath.Join(e.root, fmt.Sprintf("%s%d", name, e.made))
	out := filepath.Join(dir, "out")
	if e.outRoot != "" {
		out = filepath.Join(e.outRoot, fmt.Sprintf("%s%d", name, e.made))
	}
	in := &instance{
		dir: dir, config: filepath.Join(dir, "config.yaml"), state: filepath.Join(dir, "state"),
		out: out, socket: filepath.Join(dir, "s.sock"), n: e.channels,
	}
	for _, d := range []string{dir, in.out} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(in.config, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "state_dir: %s\nlog: {level: %s, format: json}\n", in.state, level)
	fmt.Fprintf(w, "line: {base_url: %q, timeout: 10s, max_in_flight: %d}\n", baseURL, maxInFlight)
	fmt.Fprintf(w, "socket: {path: %s, mode: \"0600\"}\n", in.socket)
	fmt.Fprintf(w, "defaults: {kind: v2.1, token_ttl: %s, rotate_before: %s, revoke_after: %s, jitter: %s, reconcile_every: %s}\n",
		lt.tokenTTL, lt.rotateBefore, lt.revokeAfter, lt.jitter, lt.reconcileEvery)
	fmt.Fprintln(w, "channels:")
	for i := range e.channels {
		_, keyPath := e.key(i)
		fmt.Fprintf(w, "  - {id: %q, name: %s, key_id: %s, private_key_file: %s, channel_secret: %s, outputs: [{path: %s, format: raw, mode: \"0600\"}]}\n",
			channelID(i), channelName(i), benchKID, keyPath, benchSecret, in.outPath(i))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	return in, f.Close()
}

func goBuild(out string) error {
	// As `make build` does (CGO_ENABLED=0, -trimpath): a static binary, the
	// one that ships. Symbols stay in, for perf; they do not change how it
	// runs.
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-o", out, "./cmd/tokend")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/tokend (run tokend-bench from the module root, or pass -tokend): %w", err)
	}
	return nil
}
