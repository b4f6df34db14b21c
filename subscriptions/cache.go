package subscriptions

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
)

// Cache holds every subscription in memory, fed by a watch on the bucket, so
// that matching an event costs no I/O. A change made through any Store
// reaches every Cache within milliseconds.
//
// The subscriptions it hands out are shared and must not be modified.
type Cache struct {
	store  *Store
	log    zerolog.Logger
	mirror *mirror

	mu       sync.RWMutex
	byCloud  map[string][]*herald.Subscription // each slice is replaced, never changed in place
	total    int
	snapshot map[string][]*herald.Subscription // being filled by a watch's initial values
}

// NewCache returns a Cache of s's bucket; it fills once Run starts.
// resync of 0 means DefaultResync.
func (s *Store) NewCache(log zerolog.Logger, resync time.Duration) *Cache {
	c := &Cache{
		store:   s,
		log:     log.With().Str("component", "subscription-cache").Logger(),
		byCloud: map[string][]*herald.Subscription{},
	}
	c.mirror = newMirror(s.kv, c.log, resync, c)
	return c
}

// Ready is closed once the cache has loaded the whole bucket.
func (c *Cache) Ready() <-chan struct{} { return c.mirror.ready }

// Run watches the bucket until ctx ends (see mirror) and returns nil.
func (c *Cache) Run(ctx context.Context) error { return c.mirror.run(ctx) }

func (c *Cache) begin() { c.snapshot = map[string][]*herald.Subscription{} }

func (c *Cache) apply(e jetstream.KeyValueEntry, live bool) {
	if !live {
		c.applyTo(c.snapshot, e)
		return
	}
	c.mu.Lock()
	c.applyTo(c.byCloud, e)
	c.total = countAll(c.byCloud)
	c.mu.Unlock()
}

func (c *Cache) commit() {
	c.replace(c.snapshot)
	c.snapshot = nil
}

// applyTo applies one KV entry to m.
func (c *Cache) applyTo(m map[string][]*herald.Subscription, e jetstream.KeyValueEntry) {
	cloud, id, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	list := slices.DeleteFunc(slices.Clone(m[cloud]), func(s *herald.Subscription) bool { return s.ID == id })
	if e.Operation() == jetstream.KeyValuePut {
		var sub herald.Subscription
		if err := json.Unmarshal(e.Value(), &sub); err != nil {
			c.log.Error().Err(err).Str("key", e.Key()).Msg("undecodable subscription skipped")
		} else {
			list = append(list, &sub)
		}
	}
	if len(list) == 0 {
		delete(m, cloud)
	} else {
		m[cloud] = list
	}
}

func (c *Cache) replace(m map[string][]*herald.Subscription) {
	c.mu.Lock()
	c.byCloud = m
	c.total = countAll(m)
	c.mu.Unlock()
	c.log.Debug().Int("subscriptions", c.Len()).Msg("subscription cache loaded")
}

func countAll(m map[string][]*herald.Subscription) int {
	n := 0
	for _, l := range m {
		n += len(l)
	}
	return n
}

// Len is the number of subscriptions held.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.total
}

// Match appends to dst cloud's enabled subscriptions that want an event of
// type typ whose data is data, and returns it.
func (c *Cache) Match(cloud, typ string, data json.RawMessage, dst []*herald.Subscription) []*herald.Subscription {
	c.mu.RLock()
	list := c.byCloud[cloud]
	c.mu.RUnlock()
	for _, s := range list {
		if s.Wants(typ, data) {
			dst = append(dst, s)
		}
	}
	return dst
}

// Has reports whether the cache holds subscription id of cloud, as updated
// as of updatedAt or later: a subscription created or changed through any Store
// is matched by fan-out once Has says so.
func (c *Cache) Has(cloud, id string, updatedAt time.Time) bool {
	c.mu.RLock()
	list := c.byCloud[cloud]
	c.mu.RUnlock()
	for _, s := range list {
		if s.ID == id && !s.UpdatedAt.Before(updatedAt) {
			return true
		}
	}
	return false
}

// Subscription returns the current state of one subscription: from memory,
// or from the bucket when the cache has not seen it yet (a subscription
// created a moment ago on another node). herald.ErrNotFound means deleted.
func (c *Cache) Subscription(ctx context.Context, cloud, id string) (*herald.Subscription, error) {
	c.mu.RLock()
	list := c.byCloud[cloud]
	c.mu.RUnlock()
	for _, s := range list {
		if s.ID == id {
			return s, nil
		}
	}
	sub, err := c.store.Get(ctx, cloud, id)
	if err != nil {
		return nil, err
	}
	return &sub, nil
}
