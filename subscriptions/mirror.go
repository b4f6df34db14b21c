package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// DefaultResync is how often a cache re-reads its whole bucket. A KV watch
// can go quiet for a while after a server restart (nats.go #1777); the
// resync bounds how long a cache can stay stale.
const DefaultResync = 30 * time.Second

// mirrored is what a cache built on mirror provides: how to start a fresh
// snapshot, apply one entry to it (or, once loaded, to the live state), and
// swap the complete snapshot in.
type mirrored interface {
	begin()
	apply(e jetstream.KeyValueEntry, live bool)
	commit()
}

// mirror keeps a cache in step with a KV bucket. Each watch starts with a
// full snapshot that replaces the cache whole, so a delete missed while
// disconnected is not kept; then live updates follow. The watch restarts
// every resync, and after a break.
type mirror struct {
	kv     jetstream.KeyValue
	log    zerolog.Logger
	resync time.Duration
	target mirrored

	ready     chan struct{}
	readyOnce sync.Once
}

func newMirror(kv jetstream.KeyValue, log zerolog.Logger, resync time.Duration, target mirrored) *mirror {
	if resync <= 0 {
		resync = DefaultResync
	}
	return &mirror{kv: kv, log: log, resync: resync, target: target, ready: make(chan struct{})}
}

// run watches until ctx ends, then returns nil.
func (m *mirror) run(ctx context.Context) error {
	for {
		err := m.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			m.log.Warn().Err(err).Msg("watch interrupted; restarting")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// watch runs one watch until ctx ends, the resync period passes, or the
// watcher breaks. It returns nil for a planned restart.
func (m *mirror) watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := m.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer func() { _ = w.Stop() }()
	m.target.begin()
	loaded := false
	resync := time.NewTimer(m.resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch channel closed")
			}
			if e == nil { // end of the initial values
				m.target.commit()
				loaded = true
				m.readyOnce.Do(func() { close(m.ready) })
				continue
			}
			m.target.apply(e, loaded)
		}
	}
}
