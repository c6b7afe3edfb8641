package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/daemon"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", config.DefaultPath(), "config file")
	online := fs.Bool("online", false, "also ask LINE for each keyed channel's valid key IDs")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// Flags after an argument are not parsed: without this check,
		// "check new.yaml" or "check x -config new.yaml" would check the
		// default config and say ok.
		return usage("unexpected argument %q; name the config with -config FILE", fs.Arg(0))
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return usage("%s: %w", *path, err)
	}
	if errs := daemon.Check(ctx, cfg, *online, Version()); len(errs) > 0 {
		return usage("%s: %w", *path, errors.Join(errs...))
	}
	fmt.Fprintf(stdout, "%s: ok (%d channels)\n", *path, len(cfg.Channels))
	return nil
}
