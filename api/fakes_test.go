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
	"github.com/herald-webhooks/herald/webhook"
)

var (
	_ api.Subscriptions = (*fakeSubscriptions)(nil)
	_ api.Keys          = (*fakeKeys)(nil)
	_ api.Credentials   = (*fakeCredentials)(nil)
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
	clouds map[string]string     // token → cloud
	keys   map[string]herald.Key // id → key
	tokens map[string]string     // id → token
	err    error
}

func newFakeKeys() *fakeKeys {
	return &fakeKeys{clouds: map[string]string{}, keys: map[string]herald.Key{}, tokens: map[string]string{}}
}

// add makes token a key of cloud and returns its id.
func (f *fakeKeys) add(token, cloud string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := herald.NewID("key")
	f.clouds[token] = cloud
	f.keys[id] = herald.Key{ID: id, Cloud: cloud, CreatedAt: time.Now().UTC()}
	f.tokens[id] = token
	return id
}

func (f *fakeKeys) Create(ctx context.Context, cloud string) (herald.Key, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return herald.Key{}, "", f.err
	}
	token := "hk_" + herald.NewID("tok")
	k := herald.Key{ID: herald.NewID("key"), Cloud: cloud, CreatedAt: time.Now().UTC()}
	f.clouds[token] = cloud
	f.keys[k.ID] = k
	f.tokens[k.ID] = token
	return k, token, nil
}

func (f *fakeKeys) List(ctx context.Context, cloud string) ([]herald.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []herald.Key
	for _, k := range f.keys {
		if k.Cloud == cloud {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b herald.Key) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeKeys) Delete(ctx context.Context, cloud, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	k, ok := f.keys[id]
	if !ok || k.Cloud != cloud {
		return herald.ErrNotFound
	}
	delete(f.clouds, f.tokens[id])
	delete(f.keys, id)
	delete(f.tokens, id)
	return nil
}

// idOf returns the id of the key whose token is token.
func (f *fakeKeys) idOf(token string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, tok := range f.tokens {
		if tok == token {
			return id
		}
	}
	return ""
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

// fakeCredentials is an in-memory Credentials that validates as the real
// store does (CredentialSpec.Validate, the whsec_ prefix) and keeps the
// secrets it was given, to check that no answer carries them. inUse makes
// Delete answer a conflict.
type fakeCredentials struct {
	mu      sync.Mutex
	byID    map[string]herald.Credential // by cloud + "/" + id
	secrets map[string]herald.CredentialSpec
	inUse   map[string]bool // by id
	err     error
}

func newFakeCredentials() *fakeCredentials {
	return &fakeCredentials{byID: map[string]herald.Credential{}, secrets: map[string]herald.CredentialSpec{}, inUse: map[string]bool{}}
}

func (f *fakeCredentials) Create(ctx context.Context, cloud string, spec herald.CredentialSpec) (herald.Credential, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return herald.Credential{}, "", f.err
	}
	if err := spec.Validate(); err != nil {
		return herald.Credential{}, "", err
	}
	var generated string
	if spec.Type == herald.CredentialHMAC {
		if spec.Secret == "" {
			generated = "whsec_" + strings.Repeat("A", 43) + "="
			spec.Secret = herald.SecretString(generated)
		} else if _, err := webhook.ParseSecret(spec.Secret.Reveal()); err != nil {
			return herald.Credential{}, "", err
		}
	}
	c := herald.Credential{ID: herald.NewID("crd"), Cloud: cloud, Name: spec.Name, Type: spec.Type, CreatedAt: time.Now().UTC()}
	f.byID[cloud+"/"+c.ID] = c
	f.secrets[c.ID] = spec
	return c, generated, nil
}

func (f *fakeCredentials) Get(ctx context.Context, cloud, id string) (herald.Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return herald.Credential{}, f.err
	}
	c, ok := f.byID[cloud+"/"+id]
	if !ok {
		return herald.Credential{}, herald.ErrNotFound
	}
	return c, nil
}

func (f *fakeCredentials) List(ctx context.Context, cloud string) ([]herald.Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []herald.Credential
	for k, c := range f.byID {
		if strings.HasPrefix(k, cloud+"/") {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b herald.Credential) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeCredentials) Delete(ctx context.Context, cloud, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if _, ok := f.byID[cloud+"/"+id]; !ok {
		return herald.ErrNotFound
	}
	if f.inUse[id] {
		return herald.ErrConflict
	}
	delete(f.byID, cloud+"/"+id)
	return nil
}

func (f *fakeCredentials) Rotate(ctx context.Context, cloud, id string, r herald.Rotation) (herald.Credential, string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return herald.Credential{}, "", time.Time{}, f.err
	}
	overlap, err := r.Overlap()
	if err != nil {
		return herald.Credential{}, "", time.Time{}, err
	}
	c, ok := f.byID[cloud+"/"+id]
	if !ok {
		return herald.Credential{}, "", time.Time{}, herald.ErrNotFound
	}
	if c.Type != herald.CredentialHMAC {
		return herald.Credential{}, "", time.Time{}, herald.Invalid("type", "only hmac credentials rotate")
	}
	var generated string
	if r.Secret == "" {
		generated = "whsec_" + strings.Repeat("B", 43) + "="
	}
	return c, generated, time.Now().Add(overlap).UTC(), nil
}

// seed stores a credential of cloud and returns its id.
func (f *fakeCredentials) seed(cloud, typ string) string {
	spec := herald.CredentialSpec{Name: "seeded", Type: typ}
	switch typ {
	case herald.CredentialBasic:
		spec.Username, spec.Password = "seed-user", "seed-password"
	case herald.CredentialBearer:
		spec.Token = "seed-token"
	case herald.CredentialHeader:
		spec.Header, spec.Value = "X-Api-Key", "seed-value"
	case herald.CredentialHMAC:
		spec.Secret = "whsec_c2VlZC1zZWNyZXQtc2VlZC1zZWNyZXQtc2VlZA=="
	}
	c, _, err := f.Create(context.Background(), cloud, spec)
	if err != nil {
		panic(err)
	}
	return c.ID
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
