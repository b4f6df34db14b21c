package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
)

// env is herald's configuration, read once from HERALD_* variables.
type env struct {
	NATSURL             string        `envconfig:"NATS_URL"`
	NATSListen          string        `envconfig:"NATS_LISTEN" default:"127.0.0.1:4222"`
	DataDir             string        `envconfig:"DATA_DIR" default:"./herald-data"`
	HTTPAddr            string        `envconfig:"HTTP_ADDR" default:"127.0.0.1:8080"`
	AdminToken          string        `envconfig:"ADMIN_TOKEN"`
	LogLevel            string        `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat           string        `envconfig:"LOG_FORMAT"`
	AttemptTimeout      time.Duration `envconfig:"ATTEMPT_TIMEOUT" default:"10s"`
	MaxInFlight         int           `envconfig:"MAX_IN_FLIGHT" default:"256"`
	EndpointConcurrency int           `envconfig:"ENDPOINT_CONCURRENCY" default:"16"`
	AllowPrivateTargets bool          `envconfig:"ALLOW_PRIVATE_TARGETS" default:"false"`
	SchemasDir          string        `envconfig:"SCHEMAS_DIR"`
	Replicas            int           `envconfig:"REPLICAS" default:"1"`
	EventRetention      time.Duration `envconfig:"EVENT_RETENTION" default:"168h"`
	DedupeWindow        time.Duration `envconfig:"DEDUPE_WINDOW" default:"2h"`
	LogRetention        time.Duration `envconfig:"LOG_RETENTION" default:"168h"`
	EventMaxBytes       int64         `envconfig:"EVENT_MAX_BYTES" default:"0"`
	ParkAfter           time.Duration `envconfig:"PARK_AFTER" default:"60s"`
	// MemoryTarget is the resident size herald keeps to while its live
	// data allows (see tuneMemory); 0 leaves Go's defaults.
	MemoryTarget memorySize `envconfig:"MEMORY_TARGET" default:"120MiB"`
	// PprofAddr, if set, serves Go's profiles (/debug/pprof/) there, apart
	// from the API and without authentication: keep it on loopback.
	PprofAddr string `envconfig:"PPROF_ADDR"`
	// EncryptionKey is kept as text here and parsed by serve, whose error
	// never repeats it (envconfig's would).
	EncryptionKey string `envconfig:"ENCRYPTION_KEY"`
}

func loadEnv() (env, error) {
	var e env
	if err := envconfig.Process("herald", &e); err != nil {
		return e, fmt.Errorf("configuration: %w", err)
	}
	if e.MaxInFlight < 1 || e.EndpointConcurrency < 1 {
		return e, fmt.Errorf("configuration: HERALD_MAX_IN_FLIGHT and HERALD_ENDPOINT_CONCURRENCY must be at least 1")
	}
	if e.LogRetention < time.Hour {
		return e, fmt.Errorf("configuration: HERALD_LOG_RETENTION must be at least 1h, got %s", e.LogRetention)
	}
	if e.ParkAfter < time.Second {
		return e, fmt.Errorf("configuration: HERALD_PARK_AFTER must be at least 1s (message schedules have 1 s resolution), got %s", e.ParkAfter)
	}
	if e.MemoryTarget != 0 && e.MemoryTarget < 32<<20 {
		return e, fmt.Errorf("configuration: HERALD_MEMORY_TARGET must be 0 (off) or at least 32MiB, got %s", e.MemoryTarget)
	}
	if e.AttemptTimeout <= 0 {
		return e, fmt.Errorf("configuration: HERALD_ATTEMPT_TIMEOUT must be positive")
	}
	return e, nil
}

// newLogger builds the process's one logger. LOG_FORMAT json or console;
// unset, console on a terminal and json otherwise.
func newLogger(e env, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(e.LogLevel))
	if err != nil || e.LogLevel == "" {
		return zerolog.Nop(), fmt.Errorf("configuration: HERALD_LOG_LEVEL %q: use trace, debug, info, warn or error", e.LogLevel)
	}
	format := e.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	default:
		return zerolog.Nop(), fmt.Errorf("configuration: HERALD_LOG_FORMAT %q: use json or console", e.LogFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func version() string { return herald.Version }
