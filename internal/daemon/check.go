package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/oauth"
)

// Check validates what the config points at: keys, output and socket
// directories, the state directory; online, it also asks LINE for each
// keyed channel's valid key IDs, which proves the key and key_id are
// registered. It returns every problem found.
func Check(ctx context.Context, cfg *config.Config, online bool, version string) []error {
	var errs []error
	channels, err := Channels(cfg)
	if err != nil {
		errs = append(errs, unjoin(err)...)
	}
	if err := checkDir("state_dir", cfg.StateDir, true); err != nil {
		errs = append(errs, err)
	}
	if cfg.Socket.Path != "" {
		if err := checkDir("socket.path", filepath.Dir(cfg.Socket.Path), false); err != nil {
			errs = append(errs, err)
		}
	}
	for i, ch := range cfg.Channels {
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
	for i, ch := range channels {
		if ch.Key == nil {
			continue
		}
		signer := &oauth.Signer{ChannelID: ch.ID, KeyID: ch.KeyID, Key: ch.Key}
		a, err := signer.Sign(time.Now(), 0)
		if err == nil {
			_, err = client.GetChannelAccessTokenKeyIDsV2_1(ctx, a)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("channels[%d] (%s): LINE: %w", i, ch.Label(), err))
		}
	}
	return errs
}

// checkDir reports a problem with directory dir named by key. With
// mayCreate, a missing dir is fine if its parent exists.
func checkDir(key, dir string, mayCreate bool) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: %s is not a directory", key, dir)
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist) && mayCreate:
		return checkDir(key, filepath.Dir(dir), false)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: directory %s does not exist; create it", key, dir)
	default:
		return fmt.Errorf("%s: %w", key, err)
	}
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
