// Package app wires herald's parts into one process: an embedded or external
// NATS server, the streams, the subscription store and its cache, the HTTP
// API and the dispatcher. `herald serve` and `herald dispatch` are an App
// with different parts switched on; the end-to-end tests build the same App
// on 127.0.0.1:0 ports and a temporary data directory.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald/api"
	"github.com/herald-webhooks/herald/deliverylog"
	"github.com/herald-webhooks/herald/dispatcher"
	"github.com/herald-webhooks/herald/natsserver"
	"github.com/herald-webhooks/herald/publisher"
	"github.com/herald-webhooks/herald/schemas"
	"github.com/herald-webhooks/herald/streams"
	"github.com/herald-webhooks/herald/subscriptions"
)

var (
	_ dispatcher.Matcher     = (*subscriptions.Cache)(nil)
	_ dispatcher.Validator   = (*schemas.Registry)(nil)
	_ publisher.Validator    = (*schemas.Registry)(nil)
	_ subscriptions.Types    = (*schemas.Registry)(nil)
	_ api.Subscriptions      = (*subscriptions.Store)(nil)
	_ api.Keys               = (*subscriptions.Keys)(nil)
	_ api.Credentials        = (*subscriptions.Credentials)(nil)
	_ dispatcher.Credentials = (*subscriptions.CredentialCache)(nil)
	_ api.Publisher          = (*publisher.Publisher)(nil)
	_ api.Deliveries         = (*dispatcher.Service)(nil)
	_ dispatcher.Examples    = (*schemas.Registry)(nil)
)

// Config is one herald process. The zero value of a field means its default.
type Config struct {
	// NATSURL names an external NATS server; empty starts an embedded one.
	NATSURL string
	// NATSListen is the embedded server's client address (default 127.0.0.1:4222).
	NATSListen string
	// DataDir holds the embedded server's store and the generated admin token (default ./herald-data).
	DataDir string
	// HTTPAddr is the API's address (default 127.0.0.1:8080).
	HTTPAddr string
	// AdminToken acts on every cloud. Empty: one is generated and kept in DataDir/admin-token.
	AdminToken string
	// SchemasDir adds event types from <type>.json schema files.
	SchemasDir string
	// EncryptionKeys seal credentials at rest (the first seals, every one
	// opens); see subscriptions.ParseEncryptionKeys. None: stored in the
	// clear, with a warning at start.
	EncryptionKeys []subscriptions.EncryptionKey

	API        bool // serve the HTTP API
	Dispatcher bool // run the dispatcher

	Dispatch dispatcher.Config // limits and timeouts; its wiring fields are filled by App
	Streams  streams.Config
	// LogRetention is how long the delivery log keeps a record after its
	// last change (default 7 days).
	LogRetention time.Duration

	Logger zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.NATSListen == "" {
		c.NATSListen = "127.0.0.1:4222"
	}
	if c.DataDir == "" {
		c.DataDir = "herald-data"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	return c
}

// App is a running herald process.
type App struct {
	cfg     Config
	log     zerolog.Logger
	metrics *prometheus.Registry

	ns    *server.Server // nil with an external NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	pub   *publisher.Publisher
	subs  *subscriptions.Store
	creds *subscriptions.Credentials
	dlog  *deliverylog.Log
	cache *subscriptions.Cache // nil without a dispatcher

	ncClosed chan struct{}

	ln   net.Listener
	http *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

// Start brings every part up and returns once the API listens and the
// dispatcher consumes. Stop (or cancelling ctx and calling Wait) ends it.
func Start(ctx context.Context, cfg Config) (_ *App, err error) {
	cfg = cfg.withDefaults()
	a := &App{cfg: cfg, log: cfg.Logger, metrics: prometheus.NewRegistry(), errs: make(chan error, 4), ncClosed: make(chan struct{})}
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			a.shutdown()
		}
	}()

	reg, err := schemas.New(cfg.SchemasDir)
	if err != nil {
		return nil, err
	}
	if err := a.connect(); err != nil {
		return nil, err
	}
	if err := streams.Ensure(ctx, a.js, cfg.Streams); err != nil {
		return nil, err
	}
	a.creds, err = subscriptions.OpenCredentials(ctx, subscriptions.CredentialsConfig{
		JetStream: a.js, Replicas: cfg.Streams.Replicas, EncryptionKeys: cfg.EncryptionKeys, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	a.subs, err = subscriptions.Open(ctx, subscriptions.Config{
		JetStream: a.js, Types: reg, Replicas: cfg.Streams.Replicas,
		Credentials: a.creds, AllowPrivateTargets: cfg.Dispatch.AllowPrivateTargets,
	})
	if err != nil {
		return nil, err
	}
	a.dlog, err = deliverylog.Open(ctx, deliverylog.Config{JetStream: a.js, Retention: cfg.LogRetention, Replicas: cfg.Streams.Replicas})
	if err != nil {
		return nil, err
	}
	a.pub, err = publisher.New(publisher.Config{JetStream: a.js, Schemas: reg, Logger: a.log})
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel

	// Both the dispatcher and the API's test notifications sign with it.
	credCache := a.creds.NewCache(a.log, 0)
	a.goRun("credential cache", func() error { return credCache.Run(runCtx) })
	select {
	case <-credCache.Ready():
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(15 * time.Second):
		return nil, errors.New("app: credential cache did not load within 15s")
	}

	if cfg.Dispatcher {
		cache := a.subs.NewCache(a.log, 0)
		a.cache = cache
		a.goRun("subscription cache", func() error { return cache.Run(runCtx) })
		select {
		case <-cache.Ready():
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(15 * time.Second):
			return nil, errors.New("app: subscription cache did not load within 15s")
		}
		dc := cfg.Dispatch
		dc.JetStream, dc.Matcher, dc.Schemas, dc.Log, dc.Logger, dc.Metrics = a.js, cache, reg, a.dlog, a.log, a.metrics
		dc.Credentials = credCache
		d, err := dispatcher.New(dc)
		if err != nil {
			return nil, err
		}
		a.goRun("dispatcher", func() error { return d.Run(runCtx) })
	}
	if cfg.API {
		if err := a.startAPI(ctx, reg, credCache); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *App) connect() error {
	url := a.cfg.NATSURL
	opts := []nats.Option{
		nats.Name("herald"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				a.log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { a.log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("reconnected to NATS") }),
		nats.ClosedHandler(func(*nats.Conn) { close(a.ncClosed) }),
		// Asynchronous errors: a subscription that fell behind and lost
		// messages (slow consumer), a permission denied by the server.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := a.log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS error")
		}),
	}
	if url == "" {
		ns, err := natsserver.Start(natsserver.Config{
			Listen:   a.cfg.NATSListen,
			StoreDir: filepath.Join(a.cfg.DataDir, "jetstream"),
			Logger:   a.log,
		})
		if err != nil {
			return err
		}
		a.ns = ns
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
		a.log.Info().Str("nats", url).Str("store", filepath.Join(a.cfg.DataDir, "jetstream")).Msg("embedded JetStream server listening")
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("app: connect to NATS at %s: %w", url, err)
	}
	a.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return fmt.Errorf("app: jetstream: %w", err)
	}
	a.js = js
	return nil
}

func (a *App) startAPI(ctx context.Context, reg *schemas.Registry, creds *subscriptions.CredentialCache) error {
	token, err := a.adminToken()
	if err != nil {
		return err
	}
	keys, err := subscriptions.OpenKeys(ctx, a.js, a.cfg.Streams.Replicas)
	if err != nil {
		return err
	}
	svc, err := dispatcher.NewService(dispatcher.ServiceConfig{
		JetStream: a.js, Log: a.dlog, Examples: reg, Credentials: creds,
		AttemptTimeout: a.cfg.Dispatch.AttemptTimeout, AllowPrivateTargets: a.cfg.Dispatch.AllowPrivateTargets,
	})
	if err != nil {
		return err
	}
	h, err := api.New(api.Config{
		AdminToken:    token,
		Subscriptions: a.subs,
		Keys:          keys,
		Credentials:   a.creds,
		Publisher:     a.pub,
		Deliveries:    svc,
		Ready:         a.ready,
		Metrics:       a.metrics,
		Logger:        a.log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("app: HTTP API: %w", err)
	}
	a.ln = ln
	a.http = &http.Server{
		Handler:           h.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	a.goRun("http api", func() error {
		if err := a.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	a.log.Info().Str("addr", "http://"+ln.Addr().String()).Msg("HTTP API listening")
	return nil
}

// adminToken returns the configured token, or the one kept in the data
// directory, minting it on first start. The token itself is never logged.
func (a *App) adminToken() (string, error) {
	if a.cfg.AdminToken != "" {
		return a.cfg.AdminToken, nil
	}
	path := filepath.Join(a.cfg.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		a.log.Info().Str("file", path).Msg("HERALD_ADMIN_TOKEN not set; using the admin token kept in the data directory")
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("app: data dir: %w", err)
	}
	token := "adm_" + rand.Text()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("app: write admin token: %w", err)
	}
	a.log.Warn().Str("file", path).Msg("HERALD_ADMIN_TOKEN not set; generated an admin token and saved it (read it with: cat " + path + ")")
	return token, nil
}

func (a *App) ready(ctx context.Context) error {
	if !a.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	return streams.Check(ctx, a.js)
}

func (a *App) goRun(name string, fn func() error) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := fn(); err != nil {
			a.log.Error().Err(err).Str("part", name).Msg("stopped with an error")
			a.errs <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

// HTTPAddr is the API's address, such as 127.0.0.1:8080 ("" without the API).
func (a *App) HTTPAddr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// NATSURL is the address other herald processes (dispatch, publish) and
// producers connect to.
func (a *App) NATSURL() string {
	if a.ns != nil {
		return a.ns.ClientURL()
	}
	return a.cfg.NATSURL
}

// JetStream is the process's JetStream handle.
func (a *App) JetStream() jetstream.JetStream { return a.js }

// Publisher is the process's publisher.
func (a *App) Publisher() *publisher.Publisher { return a.pub }

// Subscriptions is the process's subscription store.
func (a *App) Subscriptions() *subscriptions.Store { return a.subs }

// SubscriptionCache is the dispatcher's view of the subscriptions (nil
// without a dispatcher).
func (a *App) SubscriptionCache() *subscriptions.Cache { return a.cache }

// DeliveryLog is the process's delivery log.
func (a *App) DeliveryLog() *deliverylog.Log { return a.dlog }

// Metrics is the registry served at /metrics.
func (a *App) Metrics() *prometheus.Registry { return a.metrics }

// Run blocks until ctx ends or a part fails, then stops everything.
func (a *App) Run(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-a.errs:
	}
	a.Stop()
	return err
}

// Stop shuts down in order: the API stops taking requests, the dispatcher
// finishes the attempts in flight and hands back what it had not started,
// the delivery log publishes the success records it holds, then the NATS
// connection drains and the embedded server stops.
func (a *App) Stop() {
	a.log.Info().Msg("shutting down")
	a.shutdown()
	a.log.Info().Msg("stopped")
}

func (a *App) shutdown() {
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = a.http.Shutdown(ctx)
		cancel()
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if a.dlog != nil {
		// The dispatcher has stopped: publish the success records it
		// left pending, and let JetStream acknowledge them, while the
		// connection is still open.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.dlog.Close(ctx); err != nil {
			a.log.Warn().Err(err).Msg("delivery log: success records may be lost")
		}
		cancel()
	}
	if a.nc != nil {
		if a.nc.Drain() == nil {
			select {
			case <-a.ncClosed:
			case <-time.After(5 * time.Second):
			}
		}
		a.nc.Close()
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
}
