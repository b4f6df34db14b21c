// Package natsserver runs a NATS server with JetStream inside the herald
// process, so that `herald serve` works out of the box and every test gets
// a real, private JetStream on 127.0.0.1.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// Config says where the server listens and stores.
type Config struct {
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen string
	// StoreDir holds JetStream's files.
	StoreDir string
	// Logger receives the server's notices and warnings (debug: its debug).
	Logger zerolog.Logger
	// SyncAlways makes JetStream fsync every write (slower; safe against an
	// OS crash on a single node). Default: the server's periodic sync.
	SyncAlways bool
}

// Start starts a server and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	host, portText, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("natsserver: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("natsserver: listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "herald",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Clean(cfg.StoreDir),
		NoSigs:     true,
		SyncAlways: cfg.SyncAlways,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	s.SetLoggerV2(logger{cfg.Logger.With().Str("component", "nats-server").Logger()}, cfg.Logger.GetLevel() <= zerolog.DebugLevel, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready to accept connections on %s within 10s", cfg.Listen)
	}
	return s, nil
}

// logger adapts zerolog to the server's Logger interface.
type logger struct{ l zerolog.Logger }

func (g logger) Noticef(f string, v ...any) { g.l.Debug().Msgf(f, v...) }
func (g logger) Warnf(f string, v ...any)   { g.l.Warn().Msgf(f, v...) }
func (g logger) Fatalf(f string, v ...any)  { g.l.Error().Msgf(f, v...) }
func (g logger) Errorf(f string, v ...any)  { g.l.Error().Msgf(f, v...) }
func (g logger) Debugf(f string, v ...any)  { g.l.Debug().Msgf(f, v...) }
func (g logger) Tracef(f string, v ...any)  { g.l.Trace().Msgf(f, v...) }
