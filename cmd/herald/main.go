// Command herald is the webhook notification service: `herald serve` runs
// everything in one process; `herald dispatch`, `herald publish` and
// `herald listen` are its other parts. Configuration comes from HERALD_*
// environment variables.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `herald: webhook notifications for video-encoding platforms

Usage:
  herald serve       everything in one process (embedded JetStream unless HERALD_NATS_URL is set)
  herald dispatch    the dispatcher alone, against HERALD_NATS_URL
  herald publish     --cloud C --type T --data JSON   publish one event
  herald listen      --addr 127.0.0.1:3000            print the notifications it receives
  herald bench       [--scenarios a,b] [--scale F] [--json]  measure herald against the bare baseline
  herald version

Configuration is read from HERALD_* environment variables; see the README.
`

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr, true)
	case "dispatch":
		err = serve(ctx, args[1:], stderr, false)
	case "publish":
		err = publish(ctx, args[1:], stdout, stderr)
	case "listen":
		err = listenCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "herald", version())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "herald:", err)
		if _, ok := err.(usageError); ok {
			return 2
		}
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError string

func (e usageError) Error() string { return string(e) }
