// Package subscriptions keeps the tenants' endpoints, keys and credentials in
// JetStream KV, and gives dispatchers caches of every subscription and every
// credential, fed by KV watches, to match events against and to sign and
// authorize requests with.
//
// Subscriptions live in the bucket herald_subscriptions under the key
// "<cloud>.<subscription id>", as JSON; credentials in herald_credentials
// under "<cloud>.<credential id>", their secrets sealed with AES-256-GCM;
// cloud keys in herald_keys by key id, as hashes. Every change goes through
// the KV's optimistic concurrency (a revision check), so two writers never
// overwrite each other silently.
package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/egress"
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
	// Credentials is where the credentials a subscription names must
	// exist, in its cloud. Nil: a subscription may name none.
	Credentials *Credentials
	// AllowPrivateTargets accepts URLs whose host is a loopback, private,
	// link-local or otherwise internal IP literal, or localhost. By
	// default they are refused (see egress.CheckURL); names that resolve
	// to such addresses are refused when dialled.
	AllowPrivateTargets bool
	Replicas            int              // default 1
	Now                 func() time.Time // default time.Now
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
	kv           jetstream.KeyValue
	types        Types
	creds        *Credentials
	allowPrivate bool
	now          func() time.Time
}

// Open creates the bucket if needed and returns a Store on it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kv, err := streams.OpenBucket(ctx, cfg.JetStream, subscriptionsBucket(cfg.Replicas))
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, types: cfg.Types, creds: cfg.Credentials, allowPrivate: cfg.AllowPrivateTargets, now: cfg.Now}, nil
}

// subscriptionsBucket is the subscriptions bucket's configuration.
func subscriptionsBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "herald: subscriptions by <cloud>.<id>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

func key(cloud, id string) string { return cloud + "." + id }

// Create validates a new subscription of cloud built from p and stores it.
func (s *Store) Create(ctx context.Context, cloud string, p herald.SubscriptionPatch) (herald.Subscription, error) {
	sub := herald.NewSubscription(cloud, p, s.now())
	if err := s.validate(ctx, &sub, p, true); err != nil {
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
	rev, err := s.kv.Create(ctx, key(cloud, sub.ID), b)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("create subscription: %w", kvErr(err))
	}
	if err := s.recheckCredentials(ctx, &sub, p); err != nil {
		// A credential was deleted meanwhile: take the subscription back.
		if derr := s.kv.Delete(ctx, key(cloud, sub.ID), jetstream.LastRevision(rev)); derr != nil {
			return herald.Subscription{}, fmt.Errorf("create subscription: a credential went away and the subscription could not be taken back: %w", kvErr(derr))
		}
		return herald.Subscription{}, err
	}
	return sub, nil
}

// validate checks sub, built from p: its fields, its URL against the
// address guard (on create, or when p changes the URL), and that the
// credentials it names exist in its cloud and set different things (on
// create, or when p changes them).
func (s *Store) validate(ctx context.Context, sub *herald.Subscription, p herald.SubscriptionPatch, creating bool) error {
	if err := sub.Validate(s.types.Known); err != nil {
		return renameCredentialField(err, p)
	}
	if creating || p.URL != nil {
		if err := egress.CheckURL(sub.URL, s.allowPrivate); err != nil {
			switch {
			case errors.Is(err, egress.ErrNumericHost):
				return herald.Invalid("url", "host is a number but not a dotted-quad IPv4 address: write it as a.b.c.d or use a name")
			default:
				return herald.Invalid("url", "must not point at a loopback, private, link-local or other internal address")
			}
		}
	}
	if creating || touchesCredentials(p) {
		return s.checkCredentials(ctx, sub, p)
	}
	return nil
}

func touchesCredentials(p herald.SubscriptionPatch) bool {
	return p.CredentialID != nil || p.CredentialIDs != nil
}

// credentialField names the field of p that put the i-th credential id in
// the subscription's list: credential_id comes first, then credential_ids.
func credentialField(p herald.SubscriptionPatch, i int) string {
	if p.CredentialID != nil && *p.CredentialID != "" {
		if i == 0 {
			return "credential_id"
		}
		i--
	}
	return fmt.Sprintf("credential_ids[%d]", i)
}

// renameCredentialField rewrites a validation error on "credential_ids[i]"
// to name the field the client actually sent.
func renameCredentialField(err error, p herald.SubscriptionPatch) error {
	var ve *herald.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	var i int
	if n, _ := fmt.Sscanf(ve.Field, "credential_ids[%d]", &i); n == 1 {
		return herald.Invalid(credentialField(p, i), ve.Message)
	}
	return err
}

// checkCredentials checks that every credential sub names exists in its
// cloud and that no two set the same header.
func (s *Store) checkCredentials(ctx context.Context, sub *herald.Subscription, p herald.SubscriptionPatch) error {
	if len(sub.CredentialIDs) == 0 {
		return nil
	}
	if s.creds == nil {
		return herald.Invalid(credentialField(p, 0), "this herald has no credential store")
	}
	effects := map[string]int{}
	for i, id := range sub.CredentialIDs {
		effect, err := s.creds.usable(ctx, sub.Cloud, id)
		if errors.Is(err, herald.ErrNotFound) {
			return herald.Invalid(credentialField(p, i), fmt.Sprintf("no credential %s in this cloud", id))
		}
		if err != nil {
			return err
		}
		if j, ok := effects[effect]; ok {
			return herald.Invalid(credentialField(p, i), fmt.Sprintf("sets %s, as %s does already: a subscription takes one credential per header", effect, sub.CredentialIDs[j]))
		}
		effects[effect] = i
	}
	return nil
}

// recheckCredentials runs after a subscription naming credentials was
// written: a credential deleted meanwhile answers the same 422 as one
// that never existed, and the caller takes its write back. See
// Credentials.Delete for why.
func (s *Store) recheckCredentials(ctx context.Context, sub *herald.Subscription, p herald.SubscriptionPatch) error {
	if s.creds == nil || len(sub.CredentialIDs) == 0 {
		return nil
	}
	for i, id := range sub.CredentialIDs {
		if _, err := s.creds.usable(ctx, sub.Cloud, id); err != nil {
			if errors.Is(err, herald.ErrNotFound) {
				return herald.Invalid(credentialField(p, i), fmt.Sprintf("no credential %s in this cloud", id))
			}
			return err
		}
	}
	return nil
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
	out, err := listCloud(ctx, s.kv, cloud, s.Get, func(sub herald.Subscription) (time.Time, string) { return sub.CreatedAt, sub.ID })
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return out, nil
}

func (s *Store) keys(ctx context.Context, cloud string) ([]string, error) {
	keys, err := listKeys(ctx, s.kv, cloud)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
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
	old, err := json.Marshal(sub)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("update subscription: %w", err)
	}
	sub.Apply(p, s.now())
	if err := s.validate(ctx, &sub, p, false); err != nil {
		return herald.Subscription{}, err
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("update subscription: %w", err)
	}
	rev, err = s.kv.Update(ctx, key(cloud, id), b, rev)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("update subscription: %w", kvErr(err))
	}
	if touchesCredentials(p) {
		if err := s.recheckCredentials(ctx, &sub, p); err != nil {
			// A credential was deleted meanwhile: put the old state back.
			if _, uerr := s.kv.Update(ctx, key(cloud, id), old, rev); uerr != nil {
				return herald.Subscription{}, fmt.Errorf("update subscription: a credential went away and the change could not be taken back: %w", kvErr(uerr))
			}
			return herald.Subscription{}, err
		}
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
