package subscriptions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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

// KeysBucket holds cloud keys by key id: the cloud, the time of minting and
// the SHA-256 of the token, never the token.
const KeysBucket = "herald_keys"

// tokenPrefix starts every cloud key token: "hk_<key id>_<secret>".
const tokenPrefix = "hk_"

// Keys mints and checks cloud keys. It is safe for concurrent use.
type Keys struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

type storedKey struct {
	herald.Key
	Hash []byte `json:"hash"`
}

// OpenKeys creates the keys bucket if needed.
func OpenKeys(ctx context.Context, js jetstream.JetStream, replicas int) (*Keys, error) {
	kv, err := streams.OpenBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      KeysBucket,
		Description: "herald: cloud keys (hashes only) by key id",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	return &Keys{kv: kv, now: time.Now}, nil
}

// Create mints a key for cloud. The token is returned once; only its hash is
// kept.
func (k *Keys) Create(ctx context.Context, cloud string) (herald.Key, string, error) {
	if !herald.ValidCloud(cloud) {
		return herald.Key{}, "", herald.Invalid("cloud", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	idPart := rand.Text()
	token := tokenPrefix + idPart + "_" + rand.Text()
	sum := sha256.Sum256([]byte(token))
	sk := storedKey{Key: herald.Key{ID: "key_" + idPart, Cloud: cloud, CreatedAt: k.now().UTC()}, Hash: sum[:]}
	b, err := json.Marshal(sk)
	if err != nil {
		return herald.Key{}, "", fmt.Errorf("create key: %w", err)
	}
	if _, err := k.kv.Create(ctx, sk.ID, b); err != nil {
		return herald.Key{}, "", fmt.Errorf("create key: %w", kvErr(err))
	}
	return sk.Key, token, nil
}

// Authenticate returns the cloud that token belongs to, or
// herald.ErrUnauthorized. The hash comparison is constant-time.
func (k *Keys) Authenticate(ctx context.Context, token string) (string, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", herald.ErrUnauthorized
	}
	idPart, _, ok := strings.Cut(rest, "_")
	if !ok || !herald.ValidObjectID("key_"+idPart) {
		return "", herald.ErrUnauthorized
	}
	e, err := k.kv.Get(ctx, "key_"+idPart)
	if err != nil {
		if errors.Is(kvErr(err), herald.ErrNotFound) {
			return "", herald.ErrUnauthorized
		}
		return "", fmt.Errorf("authenticate: %w", kvErr(err))
	}
	var sk storedKey
	if err := json.Unmarshal(e.Value(), &sk); err != nil {
		return "", fmt.Errorf("authenticate: decode key: %w", err)
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], sk.Hash) != 1 {
		return "", herald.ErrUnauthorized
	}
	return sk.Cloud, nil
}

// List returns cloud's keys (id, cloud, time of minting; never a token or
// a hash), oldest first.
func (k *Keys) List(ctx context.Context, cloud string) ([]herald.Key, error) {
	if !herald.ValidCloud(cloud) {
		return nil, herald.ErrNotFound
	}
	lister, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", kvErr(err))
	}
	var ids []string
	for id := range lister.Keys() {
		ids = append(ids, id)
	}
	out := []herald.Key{}
	for _, id := range ids {
		sk, _, err := k.get(ctx, id)
		if errors.Is(err, herald.ErrNotFound) {
			continue // revoked since it was listed
		}
		if err != nil {
			return nil, err
		}
		if sk.Cloud == cloud {
			out = append(out, sk.Key)
		}
	}
	slices.SortFunc(out, func(a, b herald.Key) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Delete revokes key id of cloud. It takes effect at once: Authenticate
// reads the bucket on every call. A key of another cloud is
// herald.ErrNotFound, as one that does not exist.
func (k *Keys) Delete(ctx context.Context, cloud, id string) error {
	if !herald.ValidCloud(cloud) {
		return herald.ErrNotFound
	}
	sk, rev, err := k.get(ctx, id)
	if err != nil {
		return err
	}
	if sk.Cloud != cloud {
		return herald.ErrNotFound
	}
	if err := k.kv.Delete(ctx, id, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("delete key: %w", kvErr(err))
	}
	return nil
}

func (k *Keys) get(ctx context.Context, id string) (storedKey, uint64, error) {
	if !strings.HasPrefix(id, "key_") || !herald.ValidObjectID(id) {
		return storedKey{}, 0, herald.ErrNotFound
	}
	e, err := k.kv.Get(ctx, id)
	if err != nil {
		return storedKey{}, 0, fmt.Errorf("get key: %w", kvErr(err))
	}
	var sk storedKey
	if err := json.Unmarshal(e.Value(), &sk); err != nil {
		return storedKey{}, 0, fmt.Errorf("get key %s: decode: %w", id, err)
	}
	return sk, e.Revision(), nil
}
