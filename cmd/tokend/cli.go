package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/tokend/tokend/internal/daemon"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

// Version returns the build's version: the stamped one, else the module
// version Go recorded, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usage is an exit-2 error: wrong command line or configuration.
func usage(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

const help = `tokend keeps LINE channel access tokens valid for the bots beside it.

Usage:
  tokend run [-config F] [-once]      the daemon; -once: one pass, then exit
  tokend check [-config F] [-online]  validate config and keys (-online: ask LINE too)
  tokend keygen -out F                new RSA 2048 private JWK at F; prints the public JWK
  tokend token [-socket S] CHANNEL    print the current token from a running daemon
  tokend status [-socket S]           table of channels from a running daemon
  tokend dev [-dir D]                 the daemon against the built-in LINE simulator
  tokend version                      print the version

Config: -config, else $TOKEND_CONFIG, else /etc/tokend/config.yaml.
Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
`

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// run is tokend: it turns arguments into a command and its result into an
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return 2
	}
	commands := map[string]command{
		"run":     cmdRun,
		"check":   cmdCheck,
		"keygen":  cmdKeygen,
		"token":   cmdToken,
		"status":  cmdStatus,
		"dev":     cmdDev,
		"version": cmdVersion,
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, help)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "tokend: unknown command %q\n\n%s", name, help)
		return 2
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	code := 1
	if errors.As(err, &ee) {
		code = ee.code
	}
	var se *daemon.SetupError
	if errors.As(err, &se) {
		code = 2
	}
	msg := strings.TrimRight(err.Error(), "\n")
	fmt.Fprintf(stderr, "tokend %s: %s\n", name, strings.ReplaceAll(msg, "\n", "\n  "))
	return code
}

// newFlags returns a flag set whose errors are usage errors.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tokend "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args. On an error the flag set's usage goes to its output,
// and the error, which run prints after it as every command's, is not
// printed by the flag package as well.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err == nil {
		return nil
	}
	fs.Usage()
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &exitError{code: 2, err: err}
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q; run tokend version without arguments", fs.Arg(0))
	}
	fmt.Fprintf(stdout, "tokend %s\n", Version())
	return nil
}
