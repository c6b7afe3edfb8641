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
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	// The first signal asks for a clean stop, which waits for LINE calls
	// under way (up to line.timeout) and hooks; a second one ends the
	// process at once, with the shell's code for that signal (130 for
	// SIGINT, 143 for SIGTERM). An exit of its own, not the signal's
	// default action, which does nothing for pid 1 in a container. Nothing
	// is lost that a crash at that instant would not keep: the store and
	// every output are whole at any instant (README, Crash consistency).
	go func() {
		<-sigs
		cancel()
		s := <-sigs
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}
