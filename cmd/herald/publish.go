package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/publisher"
	"github.com/herald-webhooks/herald/schemas"
)

// publish runs `herald publish`: validate one event and publish it over NATS.
func publish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cloud := fs.String("cloud", "", "the cloud (tenant) the event belongs to (required)")
	typ := fs.String("type", "", "the event type, such as video-created (required)")
	data := fs.String("data", "{}", "the event's data, a JSON object")
	id := fs.String("id", "", "the event id (idempotency key); generated when empty")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *cloud == "" || *typ == "" {
		return usageError("publish needs --cloud and --type")
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("publish: unexpected argument %q", fs.Arg(0)))
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	url := e.NATSURL
	if url == "" {
		url = "nats://" + e.NATSListen
	}
	reg, err := schemas.New(e.SchemasDir)
	if err != nil {
		return err
	}
	// Check the event before connecting, so a mistake is reported as such
	// even when no server runs.
	if err := herald.CheckData(json.RawMessage(*data)); err != nil {
		return fmt.Errorf("event rejected: %w", err)
	}
	if err := reg.Validate(*typ, json.RawMessage(*data)); err != nil {
		return fmt.Errorf("event rejected: %w", err)
	}
	nc, err := nats.Connect(url, nats.Name("herald publish"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s (is `herald serve` running?): %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pub, err := publisher.New(publisher.Config{JetStream: js, Schemas: reg})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ev, err := pub.Publish(ctx, herald.Event{ID: *id, Cloud: *cloud, Type: *typ, Data: json.RawMessage(*data)})
	var ve *herald.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("event rejected: %w", err)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{"id": ev.ID, "sequence": ev.Sequence})
}
