package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/tokend/tokend/internal/config"
	"github.com/tokend/tokend/internal/daemon"
	"github.com/tokend/tokend/internal/rotator"
)

// defaultDevOptions retries faster than production so the short dev TTLs
// survive simulated faults.
func defaultDevOptions() daemon.Options {
	r := rotator.DefaultRetry
	r.Max, r.Slow = 10*time.Second, 30*time.Second
	return daemon.Options{Retry: r}
}

// devDuration is the value of a dev lifetime flag: Go syntax plus the
// config's d unit ("30d", "1d12h"), negative values refused. It keeps what
// was typed so that a message quotes it.
type devDuration struct {
	d    time.Duration
	text string
}

var _ flag.Value = (*devDuration)(nil)

func (v *devDuration) String() string {
	if v == nil {
		return ""
	}
	if v.text != "" {
		return v.text
	}
	return config.Duration(v.d).String()
}

func (v *devDuration) Set(s string) error {
	d, err := config.ParseDuration(s)
	if err != nil {
		return err
	}
	v.d, v.text = d, s
	return nil
}

// devFlags are the lifetimes `tokend dev` writes into its config.
type devFlags struct {
	ttl, rotateBefore, revokeAfter devDuration
}

// defaultDevFlags: a token lives 2 minutes, rotates 1 minute before expiry
// and the old one is revoked 20 seconds later.
func defaultDevFlags() *devFlags {
	return &devFlags{
		ttl:          devDuration{d: 2 * time.Minute},
		rotateBefore: devDuration{d: time.Minute},
		revokeAfter:  devDuration{d: 20 * time.Second},
	}
}

// register adds the lifetime flags to fs.
func (o *devFlags) register(fs *flag.FlagSet) {
	fs.Var(&o.ttl, "token-ttl", "token lifetime, a `duration` from 1m to 30d in whole seconds (units h, m, s, d = 24h)")
	fs.Var(&o.rotateBefore, "rotate-before", "rotate this long (a `duration`) before expiry; more than 0, less than -token-ttl")
	fs.Var(&o.revokeAfter, "revoke-after", "revoke the superseded token this long (a `duration`) after rotation; less than -token-ttl")
}

// check refuses lifetimes the generated config would refuse, naming the
// flag and the value typed instead of the config key dev writes. Every
// problem is listed. -token-ttl goes through the config's own check
// (config.TokenTTLProblem); TestDevFlagsAgreeWithConfig checks that the
// rest still agrees with the config's.
func (o *devFlags) check() error {
	var errs []error
	bad := func(name string, v devDuration, msg string) {
		errs = append(errs, fmt.Errorf("-%s %s: %s", name, v.String(), msg))
	}
	ttlOK := true
	if msg := config.TokenTTLProblem(o.ttl.d); msg != "" {
		bad("token-ttl", o.ttl, msg)
		ttlOK = false
	}
	shorter := "must be shorter than -token-ttl (" + config.Duration(o.ttl.d).String() + ")"
	switch {
	case o.rotateBefore.d <= 0:
		bad("rotate-before", o.rotateBefore, "must be greater than 0")
	case ttlOK && o.rotateBefore.d >= o.ttl.d:
		bad("rotate-before", o.rotateBefore, shorter)
	}
	if ttlOK && o.revokeAfter.d >= o.ttl.d {
		bad("revoke-after", o.revokeAfter, shorter)
	}
	if len(errs) == 0 {
		if n := config.HeldAtOnce(o.ttl.d, o.rotateBefore.d, o.revokeAfter.d, devJitter); n > config.MaxHeldAtOnce {
			bad("revoke-after", o.revokeAfter, fmt.Sprintf(
				"with -token-ttl %s and -rotate-before %s, tokend would keep up to %d of a channel's tokens valid at LINE at once, more than %d of LINE's 30; shorten -revoke-after or -rotate-before",
				o.ttl.String(), o.rotateBefore.String(), n, config.MaxHeldAtOnce))
		}
	}
	return errors.Join(errs...)
}
