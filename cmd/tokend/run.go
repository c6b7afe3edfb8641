package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/daemon"
)

func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usage("%s: %w", path, err)
	}
	return cfg, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup, stop := catchHUP()
	defer stop()
	fs := newFlags("run", stderr)
	path := fs.String("config", config.DefaultPath(), "config file")
	once := fs.Bool("once", false, "one pass (issue, rotate, revoke, publish what is due), then exit: 0 if every channel holds a valid token")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q; name the config with -config FILE", fs.Arg(0))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	return runDaemon(ctx, cfg, *path, *once, hup, daemon.Options{})
}

// catchHUP makes SIGHUP a reload request from the moment a daemon command
// starts, before its config is loaded (half a second for 10,000 channels):
// until then SIGHUP's default action ended the process (exit by signal,
// which systemd does not restart). One that comes during the start reloads
// once the daemon runs. stop undoes it.
func catchHUP() (hup chan os.Signal, stop func()) {
	hup = make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// runDaemon runs a loaded config as the daemon or as one pass (which
// ignores hup); `dev` uses it too.
func runDaemon(ctx context.Context, cfg *config.Config, path string, once bool, hup <-chan os.Signal, o daemon.Options) error {
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	o.Version = Version()
	o.ConfigPath = path
	o.Reload = reload
	d, err := daemon.New(cfg, o)
	if err != nil {
		return err
	}
	defer d.Close()
	defer d.Logger().Sync() //nolint:errcheck // stderr sync fails on some terminals
	if once {
		return d.Once(ctx)
	}
	return d.Run(ctx)
}
