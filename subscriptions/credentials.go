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
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/streams"
	"github.com/herald-webhooks/herald/webhook"
)

// CredentialsBucket holds the credentials of every cloud under the key
// "<cloud>.<credential id>", as JSON: the id, name, type and times in the
// clear, the secrets sealed with AES-256-GCM under the first
// HERALD_ENCRYPTION_KEY (or, without a key, in the clear, marked so).
const CredentialsBucket = "herald_credentials"

// MaxCredentialsPerCloud bounds how many credentials one cloud may hold.
const MaxCredentialsPerCloud = 1000

// MaxSigningSecrets bounds the secrets an hmac credential signs with at
// once: the current one and up to two earlier ones still within their
// rotation overlap. A rotation beyond that drops the oldest.
const MaxSigningSecrets = 3

// How a stored credential's secrets are kept.
const (
	sealNone   = "none"        // in the clear, under "plain"
	sealAESGCM = "aes-256-gcm" // under "sealed": nonce ‖ ciphertext, key "key_id"
)

// CredentialsConfig is what OpenCredentials needs. JetStream is required.
type CredentialsConfig struct {
	JetStream jetstream.JetStream
	Replicas  int // default 1
	// EncryptionKeys seal credentials at rest: the first seals, every one
	// opens. None: credentials are stored in the clear (OpenCredentials
	// logs a warning).
	EncryptionKeys []EncryptionKey
	// Logger gets the warning about a missing key and, in a cache, the
	// credentials that cannot be decrypted. Never a secret.
	Logger zerolog.Logger
	Now    func() time.Time // default time.Now
}

// Validate checks cfg.
func (c CredentialsConfig) Validate() error {
	if c.JetStream == nil {
		return errors.New("credentials: JetStream is required")
	}
	return nil
}

// Credentials stores the clouds' credentials, write-only: nothing it
// returns holds a secret, except the secret herald generates for an hmac
// credential, returned once by Create and Rotate. It is safe for
// concurrent use.
type Credentials struct {
	kv     jetstream.KeyValue
	subs   jetstream.KeyValue // the subscriptions, to refuse deleting a credential in use
	sealer *sealer            // nil: stored in the clear
	log    zerolog.Logger
	now    func() time.Time
}

// storedCredential is one record of the bucket.
type storedCredential struct {
	ID        string    `json:"id"`
	Cloud     string    `json:"cloud"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Header    string    `json:"header,omitempty"` // a header credential's header name (not a secret)
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Deleting is set while a delete checks that no subscription uses the
	// credential; a subscription may not take it up meanwhile.
	Deleting bool            `json:"deleting,omitempty"`
	Seal     string          `json:"seal"`
	KeyID    string          `json:"key_id,omitempty"`
	Sealed   []byte          `json:"sealed,omitempty"`
	Plain    json.RawMessage `json:"plain,omitempty"`
}

func (sc *storedCredential) public() herald.Credential {
	return herald.Credential{ID: sc.ID, Cloud: sc.Cloud, Name: sc.Name, Type: sc.Type, CreatedAt: sc.CreatedAt}
}

// secrets is what a credential keeps secret. It never prints or encodes:
// encode and decodeSecrets are the one way in and out.
type secrets struct {
	Username string          `json:"username,omitempty"`
	Password string          `json:"password,omitempty"`
	Token    string          `json:"token,omitempty"`
	Value    string          `json:"value,omitempty"`
	Signing  []signingSecret `json:"signing,omitempty"` // newest first
}

// signingSecret is one hmac secret, as text (whsec_…), and when it stops
// signing (nil: never, the current one).
type signingSecret struct {
	Secret    string     `json:"secret"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (secrets) String() string               { return "[redacted]" }
func (secrets) GoString() string             { return "[redacted]" }
func (secrets) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }
func (signingSecret) String() string         { return "[redacted]" }
func (signingSecret) MarshalJSON() ([]byte, error) {
	return []byte(`"[redacted]"`), nil
}

type plainSecrets secrets // encodes for real

type plainSigningSecret signingSecret

func (s secrets) encode() ([]byte, error) {
	p := plainSecrets(s)
	type wire struct {
		plainSecrets
		Signing []plainSigningSecret `json:"signing,omitempty"`
	}
	w := wire{plainSecrets: p}
	for _, ss := range s.Signing {
		w.Signing = append(w.Signing, plainSigningSecret(ss))
	}
	return json.Marshal(w)
}

func decodeSecrets(b []byte) (secrets, error) {
	type wire struct {
		plainSecrets
		Signing []plainSigningSecret `json:"signing,omitempty"`
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return secrets{}, errors.New("secrets are not valid JSON")
	}
	s := secrets(w.plainSecrets)
	s.Signing = nil
	for _, ss := range w.Signing {
		s.Signing = append(s.Signing, signingSecret(ss))
	}
	return s, nil
}

// OpenCredentials creates the credentials bucket if needed and returns a
// store on it. Without encryption keys it logs, once, that credentials are
// stored in the clear.
func OpenCredentials(ctx context.Context, cfg CredentialsConfig) (*Credentials, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sl, err := newSealer(cfg.EncryptionKeys)
	if err != nil {
		return nil, err
	}
	kv, err := streams.OpenBucket(ctx, cfg.JetStream, jetstream.KeyValueConfig{
		Bucket:      CredentialsBucket,
		Description: "herald: credentials by <cloud>.<id>, secrets sealed (AES-256-GCM) when HERALD_ENCRYPTION_KEY is set",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	subs, err := streams.OpenBucket(ctx, cfg.JetStream, subscriptionsBucket(cfg.Replicas))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With().Str("component", "credentials").Logger()
	if sl == nil {
		log.Warn().Msg("HERALD_ENCRYPTION_KEY is not set: credentials are stored in the clear; set it (openssl rand -base64 32) to encrypt them at rest")
	} else {
		log.Info().Str("key_id", sl.ids[0]).Int("keys", len(sl.ids)).Msg("credentials are encrypted at rest")
	}
	return &Credentials{kv: kv, subs: subs, sealer: sl, log: log, now: cfg.Now}, nil
}

func (c *Credentials) aad(cloud, id string) []byte {
	return []byte("herald credential v1\x00" + key(cloud, id))
}

// seal puts s into sc, sealed when a key is configured.
func (c *Credentials) seal(sc *storedCredential, s secrets) error {
	pt, err := s.encode()
	if err != nil {
		return fmt.Errorf("encode secrets: %w", err)
	}
	sc.Sealed, sc.Plain, sc.KeyID = nil, nil, ""
	if c.sealer == nil {
		sc.Seal, sc.Plain = sealNone, pt
		return nil
	}
	keyID, sealed, err := c.sealer.seal(pt, c.aad(sc.Cloud, sc.ID))
	if err != nil {
		return err
	}
	sc.Seal, sc.KeyID, sc.Sealed = sealAESGCM, keyID, sealed
	return nil
}

// open returns sc's secrets. Its errors name the credential, never a secret.
func (c *Credentials) open(sc *storedCredential) (secrets, error) {
	var pt []byte
	switch sc.Seal {
	case sealNone:
		pt = sc.Plain
	case sealAESGCM:
		var err error
		if pt, err = c.sealer.open(sc.KeyID, sc.Sealed, c.aad(sc.Cloud, sc.ID)); err != nil {
			return secrets{}, fmt.Errorf("credential %s: %w", sc.ID, err)
		}
	default:
		return secrets{}, fmt.Errorf("credential %s: unknown seal %q", sc.ID, sc.Seal)
	}
	s, err := decodeSecrets(pt)
	if err != nil {
		return secrets{}, fmt.Errorf("credential %s: %w", sc.ID, err)
	}
	return s, nil
}

// Create stores a credential of cloud. For an hmac credential without a
// secret it generates one and returns its text ("whsec_…"), to be shown
// once; otherwise generated is empty. Errors: *herald.ValidationError
// naming the field (never quoting a secret), herald.ErrConflict when the
// cloud holds MaxCredentialsPerCloud, herald.ErrUnavailable.
func (c *Credentials) Create(ctx context.Context, cloud string, spec herald.CredentialSpec) (_ herald.Credential, generated string, _ error) {
	if !herald.ValidCloud(cloud) {
		return herald.Credential{}, "", herald.Invalid("cloud", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if err := spec.Validate(); err != nil {
		return herald.Credential{}, "", err
	}
	var s secrets
	switch spec.Type {
	case herald.CredentialBasic:
		s.Username, s.Password = spec.Username.Reveal(), spec.Password.Reveal()
	case herald.CredentialBearer:
		s.Token = spec.Token.Reveal()
	case herald.CredentialHeader:
		s.Value = spec.Value.Reveal()
	case herald.CredentialHMAC:
		text := spec.Secret.Reveal()
		if text == "" {
			var err error
			if _, text, err = webhook.NewSecret(); err != nil {
				return herald.Credential{}, "", fmt.Errorf("create credential: %w", err)
			}
			generated = text
		} else if _, err := webhook.ParseSecret(text); err != nil {
			return herald.Credential{}, "", err
		}
		s.Signing = []signingSecret{{Secret: text}}
	}
	n, err := c.count(ctx, cloud)
	if err != nil {
		return herald.Credential{}, "", err
	}
	if n >= MaxCredentialsPerCloud {
		return herald.Credential{}, "", fmt.Errorf("create credential: %w: cloud %s already has %d credentials", herald.ErrConflict, cloud, n)
	}
	now := c.now().UTC()
	sc := storedCredential{
		ID: herald.NewID("crd"), Cloud: cloud, Name: spec.Name, Type: spec.Type,
		CreatedAt: now, UpdatedAt: now,
	}
	if spec.Type == herald.CredentialHeader {
		sc.Header = spec.Header
	}
	if err := c.seal(&sc, s); err != nil {
		return herald.Credential{}, "", fmt.Errorf("create credential: %w", err)
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return herald.Credential{}, "", fmt.Errorf("create credential: %w", err)
	}
	if _, err := c.kv.Create(ctx, key(cloud, sc.ID), b); err != nil {
		return herald.Credential{}, "", fmt.Errorf("create credential: %w", kvErr(err))
	}
	return sc.public(), generated, nil
}

// Get returns one credential's id, name, type and creation time, or
// herald.ErrNotFound.
func (c *Credentials) Get(ctx context.Context, cloud, id string) (herald.Credential, error) {
	sc, _, err := c.get(ctx, cloud, id)
	if err != nil {
		return herald.Credential{}, err
	}
	return sc.public(), nil
}

func (c *Credentials) get(ctx context.Context, cloud, id string) (storedCredential, uint64, error) {
	if !herald.ValidCloud(cloud) || !herald.ValidObjectID(id) {
		return storedCredential{}, 0, herald.ErrNotFound
	}
	e, err := c.kv.Get(ctx, key(cloud, id))
	if err != nil {
		return storedCredential{}, 0, fmt.Errorf("get credential: %w", kvErr(err))
	}
	sc, err := decodeStored(e.Value())
	if err != nil {
		return storedCredential{}, 0, fmt.Errorf("get credential %s: %w", id, err)
	}
	return sc, e.Revision(), nil
}

func decodeStored(b []byte) (storedCredential, error) {
	var sc storedCredential
	if err := json.Unmarshal(b, &sc); err != nil {
		return storedCredential{}, errors.New("stored record is not valid JSON")
	}
	return sc, nil
}

// List returns cloud's credentials, oldest first.
func (c *Credentials) List(ctx context.Context, cloud string) ([]herald.Credential, error) {
	out, err := listCloud(ctx, c.kv, cloud, c.Get, func(cr herald.Credential) (time.Time, string) { return cr.CreatedAt, cr.ID })
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return out, nil
}

func (c *Credentials) count(ctx context.Context, cloud string) (int, error) {
	keys, err := listKeys(ctx, c.kv, cloud)
	if err != nil {
		return 0, fmt.Errorf("count credentials: %w", err)
	}
	return len(keys), nil
}

// listKeys lists the keys of kv under "<cloud>.".
// listCloud reads every object of cloud in kv (keys "<cloud>.<id>") with
// get, skipping those deleted between listing and reading, oldest first by
// the creation time and id that order returns.
func listCloud[T any](ctx context.Context, kv jetstream.KeyValue, cloud string,
	get func(ctx context.Context, cloud, id string) (T, error), order func(T) (time.Time, string)) ([]T, error) {
	if !herald.ValidCloud(cloud) {
		return nil, herald.ErrNotFound
	}
	keys, err := listKeys(ctx, kv, cloud)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		_, id, _ := strings.Cut(k, ".")
		v, err := get(ctx, cloud, id)
		if errors.Is(err, herald.ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int {
		ta, ia := order(a)
		tb, ib := order(b)
		if c := ta.Compare(tb); c != 0 {
			return c
		}
		return strings.Compare(ia, ib)
	})
	return out, nil
}

func listKeys(ctx context.Context, kv jetstream.KeyValue, cloud string) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, cloud+".*")
	if err != nil {
		return nil, kvErr(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// Delete removes a credential. One that a subscription names answers
// herald.ErrConflict, and stays.
//
// A subscription that takes up the credential while it is being deleted
// must not be left pointing at nothing, whichever API process serves
// either request. So Delete first marks the credential (a subscription
// write that re-reads it afterwards backs out), then looks for
// subscriptions that name it: of two such racing requests at least one
// sees the other and gives way.
func (c *Credentials) Delete(ctx context.Context, cloud, id string) error {
	sc, rev, err := c.get(ctx, cloud, id)
	if err != nil {
		return err
	}
	sc.Deleting = true
	b, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("delete credential: %w", err)
	}
	rev, err = c.kv.Update(ctx, key(cloud, id), b, rev)
	if err != nil {
		return fmt.Errorf("delete credential: %w", kvErr(err))
	}
	users, err := c.users(ctx, cloud, id)
	if err != nil || len(users) > 0 {
		sc.Deleting = false
		if b, merr := json.Marshal(sc); merr == nil {
			if _, uerr := c.kv.Update(ctx, key(cloud, id), b, rev); uerr != nil {
				c.log.Warn().Err(uerr).Str("cloud", cloud).Str("credential_id", id).Msg("could not clear the deleting mark; a retried delete clears it")
			}
		}
		if err != nil {
			return fmt.Errorf("delete credential: %w", err)
		}
		return fmt.Errorf("delete credential: %w: used by subscription %s", herald.ErrConflict, strings.Join(users, ", "))
	}
	if err := c.kv.Delete(ctx, key(cloud, id), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("delete credential: %w", kvErr(err))
	}
	return nil
}

// users lists the subscriptions of cloud that name credential id.
func (c *Credentials) users(ctx context.Context, cloud, id string) ([]string, error) {
	keys, err := listKeys(ctx, c.subs, cloud)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, k := range keys {
		e, err := c.subs.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, kvErr(err)
		}
		var sub herald.Subscription
		if err := json.Unmarshal(e.Value(), &sub); err != nil {
			return nil, fmt.Errorf("subscription %s: decode: %w", k, err)
		}
		if slices.Contains(sub.CredentialIDs, id) {
			users = append(users, sub.ID)
		}
	}
	return users, nil
}

// Rotate gives an hmac credential a new secret (r.Secret, or a generated
// one). Every request is then signed with the new secret and, until it
// expires (r's overlap, 24 h by default), the previous one too, so that a
// receiver can switch at its own pace. generated is the new secret when
// herald made it (shown once), else empty; previousExpiresAt is when the
// previous secret stops signing. A credential of another type is a
// *herald.ValidationError on "type".
func (c *Credentials) Rotate(ctx context.Context, cloud, id string, r herald.Rotation) (_ herald.Credential, generated string, previousExpiresAt time.Time, _ error) {
	overlap, err := r.Overlap()
	if err != nil {
		return herald.Credential{}, "", time.Time{}, err
	}
	sc, rev, err := c.get(ctx, cloud, id)
	if err != nil {
		return herald.Credential{}, "", time.Time{}, err
	}
	if sc.Type != herald.CredentialHMAC {
		return herald.Credential{}, "", time.Time{}, herald.Invalid("type", fmt.Sprintf("only hmac credentials rotate; this one is %s: store a new credential and point the subscriptions at it", sc.Type))
	}
	s, err := c.open(&sc)
	if err != nil {
		return herald.Credential{}, "", time.Time{}, fmt.Errorf("rotate credential: %w", err)
	}
	text := r.Secret.Reveal()
	var fresh webhook.Secret
	if text == "" {
		if fresh, text, err = webhook.NewSecret(); err != nil {
			return herald.Credential{}, "", time.Time{}, fmt.Errorf("rotate credential: %w", err)
		}
		generated = text
	} else if fresh, err = webhook.ParseSecret(text); err != nil {
		return herald.Credential{}, "", time.Time{}, err
	}
	now := c.now().UTC()
	expires := now.Add(overlap)
	next := []signingSecret{{Secret: text}}
	for _, old := range s.Signing {
		if old.ExpiresAt != nil && !old.ExpiresAt.After(now) {
			continue // expired already
		}
		if prev, err := webhook.ParseSecret(old.Secret); err == nil && prev.Equal(fresh) {
			return herald.Credential{}, "", time.Time{}, herald.Invalid("secret", "is already a secret of this credential")
		}
		if old.ExpiresAt == nil || old.ExpiresAt.After(expires) {
			old.ExpiresAt = &expires
		}
		if overlap == 0 {
			continue
		}
		next = append(next, old)
	}
	s.Signing = next[:min(len(next), MaxSigningSecrets)]
	sc.UpdatedAt = now
	if err := c.seal(&sc, s); err != nil {
		return herald.Credential{}, "", time.Time{}, fmt.Errorf("rotate credential: %w", err)
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return herald.Credential{}, "", time.Time{}, fmt.Errorf("rotate credential: %w", err)
	}
	if _, err := c.kv.Update(ctx, key(cloud, id), b, rev); err != nil {
		return herald.Credential{}, "", time.Time{}, fmt.Errorf("rotate credential: %w", kvErr(err))
	}
	return sc.public(), generated, expires, nil
}

// usable reports whether credential id of cloud exists and may be taken up
// by a subscription (it is not being deleted); its effect is what it sets
// on a request (herald.CredentialEffect). A missing or departing one is
// herald.ErrNotFound.
func (c *Credentials) usable(ctx context.Context, cloud, id string) (effect string, err error) {
	sc, _, err := c.get(ctx, cloud, id)
	if err != nil {
		return "", err
	}
	if sc.Deleting {
		return "", herald.ErrNotFound
	}
	return herald.CredentialEffect(sc.Type, sc.Header), nil
}
