package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/dispatcher"
	"github.com/herald-webhooks/herald/streams"
	"github.com/herald-webhooks/herald/subscriptions"
)

// serve runs `herald serve` (withAPI) or `herald dispatch`.
func serve(ctx context.Context, args []string, stderr io.Writer, withAPI bool) error {
	name := "dispatch"
	if withAPI {
		name = "serve"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiOnly := false
	if withAPI {
		fs.BoolVar(&apiOnly, "api-only", false, "serve the HTTP API without a dispatcher (run `herald dispatch` processes beside it)")
	}
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	if !withAPI && e.NATSURL == "" {
		return usageError("herald dispatch needs HERALD_NATS_URL (the NATS server that `herald serve` or your cluster runs)")
	}
	log, err := newLogger(e, stderr)
	if err != nil {
		return err
	}
	go tuneMemory(ctx, e.MemoryTarget, log)
	if e.PprofAddr != "" {
		if err := servePprof(ctx, e.PprofAddr, log); err != nil {
			return err
		}
	}
	keys, err := subscriptions.ParseEncryptionKeys(e.EncryptionKey)
	if err != nil {
		return fmt.Errorf("configuration: HERALD_ENCRYPTION_KEY: %w", err)
	}
	a, err := app.Start(ctx, app.Config{
		NATSURL:        e.NATSURL,
		NATSListen:     e.NATSListen,
		DataDir:        e.DataDir,
		HTTPAddr:       e.HTTPAddr,
		AdminToken:     e.AdminToken,
		SchemasDir:     e.SchemasDir,
		EncryptionKeys: keys,
		API:            withAPI,
		Dispatcher:     !apiOnly,
		Dispatch: dispatcher.Config{
			AttemptTimeout:      e.AttemptTimeout,
			MaxInFlight:         e.MaxInFlight,
			EndpointConcurrency: e.EndpointConcurrency,
			AllowPrivateTargets: e.AllowPrivateTargets,
			ParkAfter:           e.ParkAfter,
		},
		LogRetention: e.LogRetention,
		Streams: streams.Config{
			Replicas:       e.Replicas,
			EventRetention: e.EventRetention,
			DedupeWindow:   e.DedupeWindow,
			MaxEventBytes:  e.EventMaxBytes,
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// servePprof serves Go's runtime profiles on addr until ctx ends.
func servePprof(ctx context.Context, addr string, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("HERALD_PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	log.Warn().Str("addr", "http://"+ln.Addr().String()+"/debug/pprof/").Msg("serving Go profiles without authentication (HERALD_PPROF_ADDR)")
	return nil
}
