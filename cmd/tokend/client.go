package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/socket"
)

// defaultSocket is the socket path of the daemon's default config.
func defaultSocket() string {
	if p := os.Getenv("TOKEND_SOCKET"); p != "" {
		return p
	}
	return config.DefaultSocket(os.LookupEnv)
}

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stderr)
	path := fs.String("socket", defaultSocket(), "tokend's Unix socket ($TOKEND_SOCKET)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 1 && strings.HasPrefix(fs.Arg(1), "-"):
		// The flag package stops at the first argument.
		return usage("flags go before the channel: tokend token %s %s", strings.Join(fs.Args()[1:], " "), fs.Arg(0))
	case fs.NArg() != 1 || fs.Arg(0) == "":
		return usage("usage: tokend token [-socket S] CHANNEL")
	case *path == "":
		return usage("-socket: empty path")
	}
	tok, err := socket.NewClient(*path).Token(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, tok)
	return err
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	path := fs.String("socket", defaultSocket(), "tokend's Unix socket ($TOKEND_SOCKET)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usage("usage: tokend status [-socket S]")
	case *path == "":
		return usage("-socket: empty path")
	}
	st, err := socket.NewClient(*path).Status(ctx)
	if err != nil {
		return err
	}
	if err := socket.WriteStatusTable(stdout, st, time.Now()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}
