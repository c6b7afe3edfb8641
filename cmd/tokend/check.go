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
	fmt.Fprintf(stdout, "%s: ok (%s)\n", *path, checked(cfg, *online))
	return nil
}

// checked says what a check that passed looked at: -online proves the
// keyed channels' keys and key IDs, not their channel secrets, which only
// an issue (short-lived) or a revocation (v2.1) would test, each with an
// effect at LINE.
func checked(cfg *config.Config, online bool) string {
	s := count(len(cfg.Channels), "channel")
	if !online {
		return s
	}
	keyed := 0
	for _, ch := range cfg.Channels {
		if ch.PrivateKeyFile != "" {
			keyed++
		}
	}
	return s + "; online: LINE listed the valid key IDs of " + count(keyed, "keyed channel") +
		", so their keys and key IDs work; channel secrets are not checked online: a wrong one shows at the first short-lived issue or v2.1 revocation"
}

// count is "1 channel", "2 channels".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
