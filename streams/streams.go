// Package streams declares the JetStream streams and consumers herald runs
// on, and creates or updates them idempotently so that every herald process
// (serve, dispatch, publish) can call Ensure at start.
//
// Two streams carry the work:
//
//	HERALD_EVENTS      herald.events.<cloud>.<type>            what encoders publish (limits retention)
//	HERALD_DELIVERIES  herald.deliveries.<cloud>.<subscription> one message per (event, subscription)
//	                                                            (work-queue retention: gone once settled)
//
// The fan-out consumer reads events and writes deliveries; the deliver
// consumer reads deliveries and makes the HTTP attempts. Both are durable
// pull consumers that any number of dispatcher processes share.
package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
)

// Names of streams and durable consumers.
const (
	Events          = "HERALD_EVENTS"
	Deliveries      = "HERALD_DELIVERIES"
	Backlog         = "HERALD_BACKLOG"
	FanoutConsumer  = "herald-fanout"
	DeliverConsumer = "herald-deliver"
	RetryConsumer   = "herald-retry"
)

// Config sizes the streams. The zero value means the defaults.
type Config struct {
	// Replicas for streams and buckets: 1 on a single server, 3 on a cluster.
	Replicas int
	// EventRetention is how long published events are kept (default 7 days).
	EventRetention time.Duration
	// DedupeWindow is how long an event id is remembered so that the same
	// id published again is dropped (default 2 hours).
	DedupeWindow time.Duration
	// MaxEventBytes caps the events stream's size on disk; publishes beyond
	// it fail with a clear error rather than dropping old events (0 = no cap).
	MaxEventBytes int64
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("streams: replicas must be between 1 and 5, got %d", c.Replicas)
	}
	if c.EventRetention < 0 || c.DedupeWindow < 0 || c.MaxEventBytes < 0 {
		return errors.New("streams: retention, dedupe window and size must not be negative")
	}
	if c.EventRetention > 0 && c.DedupeWindow > c.EventRetention {
		return errors.New("streams: the dedupe window must not exceed the event retention")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.EventRetention == 0 {
		c.EventRetention = 7 * 24 * time.Hour
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 2 * time.Hour
	}
	return c
}

// EventsConfig is the events stream. Limits retention keeps events for
// EventRetention whatever the consumers did; DiscardNew makes a full stream
// refuse a publish (the publisher sees an error) instead of dropping the
// oldest event silently.
func (c Config) EventsConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	maxBytes := c.MaxEventBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        Events,
		Description: "herald: events published by encoders",
		Subjects:    []string{herald.EventSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.EventRetention,
		MaxBytes:    maxBytes,
		MaxMsgSize:  herald.MaxEnvelopeSize,
		Duplicates:  c.DedupeWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}

// DeliveriesConfig is the deliveries stream: one message per (event,
// subscription) on herald.deliveries.<cloud>.<subscription>, removed once
// its consumer acknowledges or terminates it. A retry due later than the
// dispatcher's park threshold waits as a message schedule on
// herald.parked.<cloud>.<subscription>.<delivery>, which JetStream turns
// back into a delivery message when it is due (and then purges). Parked
// retries have a subject prefix of their own so that queries of the
// delivery subjects never walk them; they must be in this stream, since a
// schedule's target must be. A parked retry comes due on
// herald.retries.<cloud>.<subscription>, a lane with a consumer of its own,
// so a wave of due retries to a dead endpoint never queues ahead of fresh
// deliveries.
// Message schedules rule out DiscardNew; the stream has no size limits, so
// nothing is ever discarded.
func (c Config) DeliveriesConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        Deliveries,
		Description: "herald: one message per (event, subscription) until it is settled; parked retries",
		Subjects:    []string{herald.DeliverySubjectPrefix + ">", herald.ParkedSubjectPrefix + ">", herald.RetrySubjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardOld,
		MaxMsgSize:  herald.MaxEnvelopeSize + 4096,
		// Delivery messages are only published again by a fan-out retry or
		// a re-park, after the AckWait (30 s) of a message whose ack was
		// lost; every id in the window is held in the server's memory
		// (about 130 bytes each: at 10,000 deliveries/s a 10-minute window
		// held 6 million of them).
		Duplicates:        deliveryDedupeWindow,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		AllowMsgSchedules: true,
		AllowRollup:       true,
	}
}

const deliveryDedupeWindow = 2 * time.Minute

// DeliveryFilter is the subject filter of the deliver consumer: delivery
// messages, not the parked retries beside them.
const DeliveryFilter = herald.DeliverySubjectPrefix + "*.*"

// RetryFilter is the subject filter of the retry consumer: parked retries
// that came due.
const RetryFilter = herald.RetrySubjectPrefix + "*.*"

// BacklogConfig is a counter stream (nats-server 2.12+): one counter per
// subscription, herald.backlog.<cloud>.<subscription>, of its retries
// parked as message schedules. Parking adds one; the retry coming due takes
// one off. Only the latest value of each counter is kept.
func (c Config) BacklogConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:              Backlog,
		Description:       "herald: parked retries per subscription (counters)",
		Subjects:          []string{herald.BacklogSubjectPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 1,
		AllowMsgCounter:   true,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
	}
}

// Ensure creates or updates the streams. Right after an embedded server
// starts, JetStream may not have a meta leader yet: Ensure retries until ctx
// ends.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, sc := range []jetstream.StreamConfig{cfg.EventsConfig(), cfg.DeliveriesConfig(), cfg.BacklogConfig()} {
		err := Retry(ctx, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("streams: create %s: %w", sc.Name, err)
		}
	}
	return nil
}

// Check reports whether both streams exist: the readiness probe.
func Check(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{Events, Deliveries} {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}

// OpenBucket creates or updates a KV bucket, retrying while a fresh server
// does not yet answer.
func OpenBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Retry calls fn until it succeeds, ctx ends, or 10 s pass, pausing briefly
// between tries. It is for start-up, when a fresh server may not yet answer
// JetStream API requests.
func Retry(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
		err := fn(callCtx)
		callCancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
