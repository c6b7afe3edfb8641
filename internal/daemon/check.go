package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/oauth"
	"github.com/tokend/tokend/internal/socket"
	"github.com/tokend/tokend/internal/store"
)

// Check validates what the config points at: keys, output and socket
// directories, what is at socket.path, the state directory; online, it
// also asks LINE for each keyed channel's valid key IDs, which proves the
// key and key_id are registered. It returns every problem found.
func Check(ctx context.Context, cfg *config.Config, online bool, version string) []error {
	var errs []error
	channels, err := Channels(cfg)
	if err != nil {
		errs = append(errs, unjoin(err)...)
	}
	if err := checkDir("state_dir", cfg.StateDir, true); err != nil {
		errs = append(errs, err)
	} else if err := store.Inspect(cfg.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("state_dir: %w", err))
	}
	if cfg.Socket.Path != "" {
		if err := checkDir("socket.path", filepath.Dir(cfg.Socket.Path), false); err != nil {
			errs = append(errs, err)
		} else if err := socket.CheckPath(cfg.Socket.Path); err != nil {
			errs = append(errs, fmt.Errorf("socket.path: %w", err))
		}
	}
	for i, ch := range cfg.Channels {
		for k, h := range ch.OnRotate {
			if len(h.Exec) == 0 {
				continue
			}
			// What the hook's exec will find: a path, or a name in PATH
			// (the hook's PATH is tokend's).
			if _, err := exec.LookPath(h.Exec[0]); err != nil {
				errs = append(errs, fmt.Errorf("channels[%d].on_rotate[%d].exec[0]: %w", i, k, err))
			}
		}
		for j, o := range ch.Outputs {
			key := fmt.Sprintf("channels[%d].outputs[%d].path", i, j)
			if err := checkDir(key, filepath.Dir(o.Path), false); err != nil {
				errs = append(errs, err)
			} else if fi, err := os.Stat(o.Path); err == nil && !fi.Mode().IsRegular() {
				errs = append(errs, fmt.Errorf("%s: %s exists and is not a regular file", key, o.Path))
			}
		}
	}
	if !online || len(errs) > 0 {
		return errs
	}
	client, err := oauth.NewClient(oauth.Options{BaseURL: cfg.LINE.BaseURL, Timeout: cfg.LINE.Timeout, UserAgent: "tokend/" + version})
	if err != nil {
		return append(errs, fmt.Errorf("line.base_url: %w", err))
	}
	// line.max_in_flight calls at once, as the daemon makes them: one
	// after another, an unreachable LINE took line.timeout per channel.
	lineErrs := make([]error, len(channels))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(cfg.LINE.MaxInFlight, 1))
	for i, ch := range channels {
		if ch.Key == nil {
			continue
		}
		g.Go(func() error {
			signer := &oauth.Signer{ChannelID: ch.ID, KeyID: ch.KeyID, Key: ch.Key}
			a, err := signer.Sign(time.Now(), 0)
			if err == nil {
				_, err = client.GetChannelAccessTokenKeyIDsV2_1(gctx, a)
			}
			if err != nil {
				lineErrs[i] = fmt.Errorf("channels[%d] (%s): LINE: %w", i, ch.Label(), err)
			}
			return nil
		})
	}
	_ = g.Wait() // the calls return no error: each is kept in lineErrs
	for _, err := range lineErrs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// checkDir reports a problem with directory dir named by key: missing, not
// a directory, or not writable. With mayCreate, a missing dir is fine if
// its nearest existing ancestor is a writable directory, as the store
// creates the whole path (store.Open).
func checkDir(key, dir string, mayCreate bool) error {
	err := dirProblem(dir)
	if errors.Is(err, os.ErrNotExist) && mayCreate {
		parent := filepath.Dir(dir)
		perr := dirProblem(parent)
		for errors.Is(perr, os.ErrNotExist) && filepath.Dir(parent) != parent {
			parent = filepath.Dir(parent)
			perr = dirProblem(parent)
		}
		if perr != nil {
			return fmt.Errorf("%s: cannot create %s: %w", key, dir, perr)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// missingDir says a directory does not exist; errors.Is(err, os.ErrNotExist).
type missingDir string

func (d missingDir) Error() string {
	return fmt.Sprintf("directory %s does not exist; create it", string(d))
}
func (d missingDir) Is(target error) bool { return target == os.ErrNotExist }

func dirProblem(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return missingDir(dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	// access(2) also reports a read-only file system, even to root.
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	return nil
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
