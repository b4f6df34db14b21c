// Package natsserver runs a NATS server with JetStream inside the herald
// process, so that `herald serve` works out of the box and every test gets
// a real, private JetStream on 127.0.0.1.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
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

	// Name is the server's name, unique within a cluster (default "herald").
	Name string
	// ClusterName, when set, makes the server a node of that JetStream
	// cluster: it listens for routes on ClusterListen (host:port, port
	// required) and dials the nodes at Routes (host:port each; its own
	// address may be among them).
	ClusterName   string
	ClusterListen string
	Routes        []string
}

// Start starts a server and waits until it accepts connections. A cluster
// node returns before JetStream has a meta leader: see StartCluster.
func Start(cfg Config) (*server.Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	lc := cfg.Logger.With().Str("component", "nats-server")
	if cfg.Name != "" {
		lc = lc.Str("server", cfg.Name)
	}
	s.SetLoggerV2(logger{lc.Logger()}, cfg.Logger.GetLevel() <= zerolog.DebugLevel, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready to accept connections on %s within 10s", cfg.Listen)
	}
	return s, nil
}

func (cfg Config) options() (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("natsserver: listen address %q: %w", cfg.Listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	name := cfg.Name
	if name == "" {
		name = "herald"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Clean(cfg.StoreDir),
		NoSigs:     true,
		SyncAlways: cfg.SyncAlways,
	}
	if cfg.ClusterName == "" {
		if cfg.ClusterListen != "" || len(cfg.Routes) > 0 {
			return nil, errors.New("natsserver: ClusterListen and Routes need a ClusterName")
		}
		return opts, nil
	}
	chost, cport, err := splitHostPort(cfg.ClusterListen)
	if err != nil || cport == 0 {
		return nil, fmt.Errorf("natsserver: cluster listen address %q: needs host:port with a fixed port", cfg.ClusterListen)
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: chost, Port: cport}
	for _, r := range cfg.Routes {
		if _, _, err := splitHostPort(r); err != nil {
			return nil, fmt.Errorf("natsserver: route %q: %w", r, err)
		}
		opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: r})
	}
	return opts, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errors.New("bad port")
	}
	return host, port, nil
}

// Cluster describes a JetStream cluster run inside this process: for tests
// of replication and failover, never for production (every node shares the
// process's fate).
type Cluster struct {
	// Name is the cluster's name (default "herald").
	Name string
	// Nodes is the number of servers (default 3).
	Nodes int
	// Host is the address every node listens on, for clients on a random
	// port and for routes on a free port found at start (default 127.0.0.1).
	Host string
	// StoreDir holds one directory per node, named for the node.
	StoreDir string
	Logger   zerolog.Logger
}

// StartCluster starts c.Nodes servers named <name>-1 ... <name>-n, routed to
// one another, and waits until JetStream has a meta leader that every node
// follows. On error no server is left running.
func StartCluster(c Cluster) ([]*server.Server, error) {
	if c.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	if c.Name == "" {
		c.Name = "herald"
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	routes := make([]string, c.Nodes)
	for i := range routes {
		port, err := freePort(c.Host)
		if err != nil {
			return nil, fmt.Errorf("natsserver: cluster port: %w", err)
		}
		routes[i] = net.JoinHostPort(c.Host, strconv.Itoa(port))
	}
	servers := make([]*server.Server, 0, c.Nodes)
	stop := func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	for i := range c.Nodes {
		name := fmt.Sprintf("%s-%d", c.Name, i+1)
		s, err := Start(Config{
			Listen:        net.JoinHostPort(c.Host, "0"),
			StoreDir:      filepath.Join(c.StoreDir, name),
			Logger:        c.Logger,
			Name:          name,
			ClusterName:   c.Name,
			ClusterListen: routes[i],
			Routes:        routes,
		})
		if err != nil {
			stop()
			return nil, err
		}
		servers = append(servers, s)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !metaReady(servers) {
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("natsserver: cluster has no JetStream meta leader after 30s")
		}
		time.Sleep(25 * time.Millisecond)
	}
	return servers, nil
}

// metaReady reports whether one server leads JetStream's meta group and
// every server is current with it.
func metaReady(servers []*server.Server) bool {
	leaders := 0
	for _, s := range servers {
		if !s.JetStreamIsCurrent() {
			return false
		}
		if s.JetStreamIsLeader() {
			leaders++
		}
	}
	return leaders == 1
}

// freePort returns a port on host that was free a moment ago.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// logger adapts zerolog to the server's Logger interface.
type logger struct{ l zerolog.Logger }

func (g logger) Noticef(f string, v ...any) { g.l.Debug().Msgf(f, v...) }
func (g logger) Warnf(f string, v ...any)   { g.l.Warn().Msgf(f, v...) }
func (g logger) Fatalf(f string, v ...any)  { g.l.Error().Msgf(f, v...) }
func (g logger) Errorf(f string, v ...any)  { g.l.Error().Msgf(f, v...) }
func (g logger) Debugf(f string, v ...any)  { g.l.Debug().Msgf(f, v...) }
func (g logger) Tracef(f string, v ...any)  { g.l.Trace().Msgf(f, v...) }
