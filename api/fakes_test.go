package api_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/api"
)

var (
	_ api.Subscriptions = (*fakeSubscriptions)(nil)
	_ api.Keys          = (*fakeKeys)(nil)
	_ api.Publisher     = (*fakePublisher)(nil)
)

// knownTypes are the event types the fakes accept.
var knownTypes = []string{"video-created", "video-encoded", "encoding-progress", "encoding-complete", "state_changed"}

func known(t string) bool { return slices.Contains(knownTypes, t) }

// fakeSubscriptions is an in-memory Subscriptions that validates as the
// real store does. err, when set, is returned by every method; panic makes
// every method panic.
type fakeSubscriptions struct {
	mu    sync.Mutex
	byID  map[string]herald.Subscription // by cloud + "/" + id
	err   error
	panic bool
}

func newFakeSubscriptions() *fakeSubscriptions {
	return &fakeSubscriptions{byID: map[string]herald.Subscription{}}
}

func (f *fakeSubscriptions) fault() error {
	if f.panic {
		panic("fake subscriptions: boom")
	}
	return f.err
}

func (f *fakeSubscriptions) Create(ctx context.Context, cloud string, p herald.SubscriptionPatch) (herald.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault(); err != nil {
		return herald.Subscription{}, err
	}
	s := herald.NewSubscription(cloud, p, time.Now())
	if err := s.Validate(known); err != nil {
		return herald.Subscription{}, err
	}
	f.byID[cloud+"/"+s.ID] = s
	return s, nil
}

func (f *fakeSubscriptions) Get(ctx context.Context, cloud, id string) (herald.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault(); err != nil {
		return herald.Subscription{}, err
	}
	s, ok := f.byID[cloud+"/"+id]
	if !ok {
		return herald.Subscription{}, herald.ErrNotFound
	}
	return s, nil
}

func (f *fakeSubscriptions) List(ctx context.Context, cloud string) ([]herald.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault(); err != nil {
		return nil, err
	}
	var out []herald.Subscription
	for k, s := range f.byID {
		if strings.HasPrefix(k, cloud+"/") {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b herald.Subscription) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeSubscriptions) Update(ctx context.Context, cloud, id string, p herald.SubscriptionPatch) (herald.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault(); err != nil {
		return herald.Subscription{}, err
	}
	s, ok := f.byID[cloud+"/"+id]
	if !ok {
		return herald.Subscription{}, herald.ErrNotFound
	}
	s.Apply(p, time.Now())
	if err := s.Validate(known); err != nil {
		return herald.Subscription{}, err
	}
	f.byID[cloud+"/"+id] = s
	return s, nil
}

func (f *fakeSubscriptions) Delete(ctx context.Context, cloud, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault(); err != nil {
		return err
	}
	if _, ok := f.byID[cloud+"/"+id]; !ok {
		return herald.ErrNotFound
	}
	delete(f.byID, cloud+"/"+id)
	return nil
}

// fakeKeys is an in-memory Keys. err, when set, is returned by every method.
type fakeKeys struct {
	mu     sync.Mutex
	clouds map[string]string // token → cloud
	err    error
}

func newFakeKeys() *fakeKeys { return &fakeKeys{clouds: map[string]string{}} }

// add makes token a key of cloud.
func (f *fakeKeys) add(token, cloud string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clouds[token] = cloud
}

func (f *fakeKeys) Create(ctx context.Context, cloud string) (herald.Key, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return herald.Key{}, "", f.err
	}
	token := "hk_" + herald.NewID("tok")
	f.clouds[token] = cloud
	return herald.Key{ID: herald.NewID("key"), Cloud: cloud, CreatedAt: time.Now().UTC()}, token, nil
}

func (f *fakeKeys) Authenticate(ctx context.Context, token string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	cloud, ok := f.clouds[token]
	if !ok {
		return "", herald.ErrUnauthorized
	}
	return cloud, nil
}

// fakePublisher validates as the real publisher does (type known, data an
// object, id well formed), fills the blanks and records what it published.
type fakePublisher struct {
	mu        sync.Mutex
	published []herald.Event
	seq       atomic.Uint64
	err       error
}

func (f *fakePublisher) Publish(ctx context.Context, e herald.Event) (herald.Event, error) {
	if f.err != nil {
		return herald.Event{}, f.err
	}
	if !known(e.Type) {
		return herald.Event{}, herald.Invalid("type", "unknown event type")
	}
	if err := herald.CheckData(e.Data); err != nil {
		return herald.Event{}, err
	}
	if e.ID == "" {
		e.ID = herald.NewID("evt")
	}
	if !herald.ValidEventID(e.ID) {
		return herald.Event{}, herald.Invalid("id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = time.Now().UTC()
	}
	e.Sequence = f.seq.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, e)
	return e, nil
}

func (f *fakePublisher) last() (herald.Event, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.published) == 0 {
		return herald.Event{}, false
	}
	return f.published[len(f.published)-1], true
}

var errBoom = errors.New("boom: secret internal detail")
