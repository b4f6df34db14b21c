package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/herald-webhooks/herald/listen"
	"github.com/herald-webhooks/herald/webhook"
)

// listenCmd runs `herald listen`: a local receiver that prints every
// notification, for development.
func listenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3000", "address to listen on")
	status := fs.Int("status", 200, "HTTP status to answer")
	failRate := fs.Float64("fail-rate", 0, "fraction (0-1) of requests answered 500 at random, to rehearse retries")
	var secrets []webhook.Secret
	fs.Func("secret", "verify signatures with this whsec_… secret (repeat for several)", func(s string) error {
		sec, err := webhook.ParseSecret(s)
		if err != nil {
			return err
		}
		secrets = append(secrets, sec)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	cfg := listen.Config{Status: *status, FailRate: *failRate, Secrets: secrets, Out: stdout}
	if err := cfg.Validate(); err != nil {
		return usageError(err.Error())
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: listen.Handler(cfg), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "herald listen: receiving on http://%s/ (Ctrl-C to stop)\n", ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
