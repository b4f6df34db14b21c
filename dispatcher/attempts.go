package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/streams"
)

// attemptsBucket keeps, for each delivery that has failed at least once,
// how many attempts failed. It is written before the retry is scheduled, so
// a dispatcher killed or a server restarted never resets a delivery to
// attempt 1. Entries expire after the longest retry window.
const attemptsBucket = "herald_attempts"

type attemptStore struct {
	kv jetstream.KeyValue
}

func openAttemptStore(ctx context.Context, js jetstream.JetStream) (*attemptStore, error) {
	var kv jetstream.KeyValue
	err := streams.Retry(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      attemptsBucket,
			Description: "herald: failed attempts per delivery",
			History:     1,
			TTL:         herald.MaxWindow + 24*time.Hour,
			Storage:     jetstream.FileStorage,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dispatcher: open bucket %s: %w", attemptsBucket, err)
	}
	return &attemptStore{kv: kv}, nil
}

// failures returns how many attempts of delivery id have failed.
func (s *attemptStore) failures(ctx context.Context, id string) (int, error) {
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(e.Value()))
}

// record stores that attempt n of delivery id failed.
func (s *attemptStore) record(ctx context.Context, id string, n int) error {
	_, err := s.kv.Put(ctx, id, []byte(strconv.Itoa(n)))
	return err
}

// forget drops the count of a delivery that succeeded.
func (s *attemptStore) forget(ctx context.Context, id string) {
	_ = s.kv.Purge(ctx, id)
}
