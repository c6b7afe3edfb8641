// Command tokend keeps LINE Messaging API channel access tokens valid for
// the bots running beside it. See README.md for its commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks for a clean stop, which waits for LINE calls
	// under way (up to line.timeout) and hooks; a second one ends the
	// process at once, by the signal's default action. Nothing is lost
	// that a crash at that instant would not keep: the store and every
	// output are whole at any instant (README, Crash consistency).
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
