// Package subscriptions keeps the tenants' endpoints and keys in JetStream
// KV, and gives dispatchers a cache of every subscription, fed by a KV watch,
// to match events against.
//
// Subscriptions live in the bucket herald_subscriptions under the key
// "<cloud>.<subscription id>", as JSON. Every change goes through the KV's
// optimistic concurrency (a revision check), so two writers never overwrite
// each other silently.
package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/streams"
)

// Bucket holds the subscriptions.
const Bucket = "herald_subscriptions"

// MaxPerCloud bounds how many subscriptions one cloud may hold.
const MaxPerCloud = 1000

// Types tells which event types exist.
type Types interface {
	Known(typ string) bool
}

// Config is what a Store needs. JetStream and Types are required.
type Config struct {
	JetStream jetstream.JetStream
	Types     Types
	Replicas  int              // default 1
	Now       func() time.Time // default time.Now
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.JetStream == nil {
		return errors.New("subscriptions: JetStream is required")
	}
	if c.Types == nil {
		return errors.New("subscriptions: Types is required")
	}
	return nil
}

// Store reads and writes subscriptions. It is safe for concurrent use.
type Store struct {
	kv    jetstream.KeyValue
	types Types
	now   func() time.Time
}

// Open creates the bucket if needed and returns a Store on it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kv, err := openBucket(ctx, cfg.JetStream, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "herald: subscriptions by <cloud>.<id>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, types: cfg.Types, now: cfg.Now}, nil
}

func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := streams.Retry(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("subscriptions: open bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

func key(cloud, id string) string { return cloud + "." + id }

// Create validates a new subscription of cloud built from p and stores it.
func (s *Store) Create(ctx context.Context, cloud string, p herald.SubscriptionPatch) (herald.Subscription, error) {
	sub := herald.NewSubscription(cloud, p, s.now())
	if err := sub.Validate(s.types.Known); err != nil {
		return herald.Subscription{}, err
	}
	n, err := s.count(ctx, cloud)
	if err != nil {
		return herald.Subscription{}, err
	}
	if n >= MaxPerCloud {
		return herald.Subscription{}, fmt.Errorf("create subscription: %w: cloud %s already has %d subscriptions", herald.ErrConflict, cloud, n)
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("create subscription: %w", err)
	}
	if _, err := s.kv.Create(ctx, key(cloud, sub.ID), b); err != nil {
		return herald.Subscription{}, fmt.Errorf("create subscription: %w", kvErr(err))
	}
	return sub, nil
}

// Get returns one subscription, or herald.ErrNotFound.
func (s *Store) Get(ctx context.Context, cloud, id string) (herald.Subscription, error) {
	sub, _, err := s.get(ctx, cloud, id)
	return sub, err
}

func (s *Store) get(ctx context.Context, cloud, id string) (herald.Subscription, uint64, error) {
	if !herald.ValidCloud(cloud) || !herald.ValidObjectID(id) {
		return herald.Subscription{}, 0, herald.ErrNotFound
	}
	e, err := s.kv.Get(ctx, key(cloud, id))
	if err != nil {
		return herald.Subscription{}, 0, fmt.Errorf("get subscription: %w", kvErr(err))
	}
	var sub herald.Subscription
	if err := json.Unmarshal(e.Value(), &sub); err != nil {
		return herald.Subscription{}, 0, fmt.Errorf("get subscription %s: decode: %w", id, err)
	}
	return sub, e.Revision(), nil
}

// List returns cloud's subscriptions, oldest first.
func (s *Store) List(ctx context.Context, cloud string) ([]herald.Subscription, error) {
	if !herald.ValidCloud(cloud) {
		return nil, herald.ErrNotFound
	}
	keys, err := s.keys(ctx, cloud)
	if err != nil {
		return nil, err
	}
	subs := make([]herald.Subscription, 0, len(keys))
	for _, k := range keys {
		_, id, _ := strings.Cut(k, ".")
		sub, err := s.Get(ctx, cloud, id)
		if errors.Is(err, herald.ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	slices.SortFunc(subs, func(a, b herald.Subscription) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return subs, nil
}

func (s *Store) keys(ctx context.Context, cloud string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, cloud+".*")
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", kvErr(err))
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

func (s *Store) count(ctx context.Context, cloud string) (int, error) {
	keys, err := s.keys(ctx, cloud)
	return len(keys), err
}

// Update applies p to a stored subscription. A concurrent change between
// read and write answers herald.ErrConflict; nothing is half-written.
func (s *Store) Update(ctx context.Context, cloud, id string, p herald.SubscriptionPatch) (herald.Subscription, error) {
	sub, rev, err := s.get(ctx, cloud, id)
	if err != nil {
		return herald.Subscription{}, err
	}
	sub.Apply(p, s.now())
	if err := sub.Validate(s.types.Known); err != nil {
		return herald.Subscription{}, err
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("update subscription: %w", err)
	}
	if _, err := s.kv.Update(ctx, key(cloud, id), b, rev); err != nil {
		return herald.Subscription{}, fmt.Errorf("update subscription: %w", kvErr(err))
	}
	return sub, nil
}

// Delete removes a subscription. Deliveries already queued for it are
// dropped when they come up.
func (s *Store) Delete(ctx context.Context, cloud, id string) error {
	_, rev, err := s.get(ctx, cloud, id)
	if err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, key(cloud, id), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("delete subscription: %w", kvErr(err))
	}
	return nil
}

// kvErr maps KV errors onto herald's error kinds.
func kvErr(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return herald.ErrNotFound
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w: changed concurrently, read it again", herald.ErrConflict)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w: %v", herald.ErrUnavailable, err)
	}
	return err
}
