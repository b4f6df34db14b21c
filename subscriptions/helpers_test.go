package subscriptions_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/internal/poll"
	"github.com/herald-webhooks/herald/natsserver/natstest"
	"github.com/herald-webhooks/herald/subscriptions"
)

type knownTypes struct{}

func (knownTypes) Known(t string) bool {
	return slices.Contains([]string{"video-created", "encoding-complete", "state_changed"}, t)
}

// env is a credentials store and a subscription store on one JetStream.
type env struct {
	js    jetstream.JetStream
	dir   string
	creds *subscriptions.Credentials
	subs  *subscriptions.Store
	logs  *syncBuffer
}

type envOption func(*subscriptions.CredentialsConfig, *subscriptions.Config)

func withKeys(keys ...subscriptions.EncryptionKey) envOption {
	return func(c *subscriptions.CredentialsConfig, _ *subscriptions.Config) { c.EncryptionKeys = keys }
}

func withPrivateTargets() envOption {
	return func(_ *subscriptions.CredentialsConfig, s *subscriptions.Config) { s.AllowPrivateTargets = true }
}

func withClock(now func() time.Time) envOption {
	return func(c *subscriptions.CredentialsConfig, s *subscriptions.Config) { c.Now, s.Now = now, now }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	js, dir := natstest.JetStream(t)
	return openEnv(t, js, dir, opts...)
}

// openEnv opens the stores on js, as another herald process would.
func openEnv(t testing.TB, js jetstream.JetStream, dir string, opts ...envOption) *env {
	t.Helper()
	e := &env{js: js, dir: dir, logs: &syncBuffer{}}
	cc := subscriptions.CredentialsConfig{JetStream: js, Logger: zerolog.New(e.logs).Level(zerolog.DebugLevel)}
	sc := subscriptions.Config{JetStream: js, Types: knownTypes{}}
	for _, o := range opts {
		o(&cc, &sc)
	}
	ctx := context.Background()
	var err error
	if e.creds, err = subscriptions.OpenCredentials(ctx, cc); err != nil {
		t.Fatal(err)
	}
	sc.Credentials = e.creds
	if e.subs, err = subscriptions.Open(ctx, sc); err != nil {
		t.Fatal(err)
	}
	return e
}

// cache starts a credential cache of e and waits until it has loaded.
func (e *env) cache(t testing.TB) *subscriptions.CredentialCache {
	t.Helper()
	c := e.creds.NewCache(zerolog.New(e.logs).Level(zerolog.DebugLevel), 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("credential cache did not load")
	}
	return c
}

// credential stores spec in acme (or fails t) and returns its id and the
// generated secret.
func (e *env) credential(t testing.TB, cloud string, spec herald.CredentialSpec) (string, string) {
	t.Helper()
	c, gen, err := e.creds.Create(context.Background(), cloud, spec)
	if err != nil {
		t.Fatalf("create %s credential: %v", spec.Type, err)
	}
	return c.ID, gen
}

// checkFor waits for fn to return nil (poll.Until).
var checkFor = poll.Until

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func ptr[T any](v T) *T { return &v }

func zerologNop() zerolog.Logger { return zerolog.Nop() }
