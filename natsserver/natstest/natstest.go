// Package natstest gives tests a private, embedded JetStream server.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald/natsserver"
)

// JetStream starts a JetStream server on 127.0.0.1 (a free port) with its
// store in a fresh t.TempDir(), connects to it and returns the JetStream
// client and the store directory. When the test ends the connection is
// closed and the server shut down. It calls t.Fatal if any step fails.
func JetStream(t testing.TB) (js jetstream.JetStream, storeDir string) {
	t.Helper()
	storeDir = t.TempDir()
	s, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:0", StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, storeDir
}
