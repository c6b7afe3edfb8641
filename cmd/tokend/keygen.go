package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tokend/tokend/internal/oauth"
)

func cmdKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", stderr)
	out := fs.String("out", "", "where to write the new private JWK (mode 0600; never overwritten)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return usage("usage: tokend keygen -out FILE")
	}
	pub, err := oauth.WriteNewKey(*out)
	if err != nil {
		dir := filepath.Dir(*out)
		if _, serr := os.Stat(dir); errors.Is(err, os.ErrNotExist) && errors.Is(serr, os.ErrNotExist) {
			return fmt.Errorf("%w (directory %s does not exist: create it first, mode 0700)", err, dir)
		}
		return err
	}
	fmt.Fprintf(stderr, "wrote private key %s (mode 0600). Register this public key in the LINE Developers Console\n(channel > Basic settings > Assertion Signing Key); put the kid it returns in key_id:\n", *out)
	fmt.Fprintf(stdout, "%s\n", pub)
	return nil
}
