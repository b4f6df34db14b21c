package subscriptions

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/webhook"
)

// CredentialCache holds every credential decrypted in memory, ready to
// apply, fed by a watch on the credentials bucket as Cache is fed by the
// subscriptions bucket: a credential created, rotated or deleted through
// any API process applies within milliseconds, and Apply costs no I/O.
// It implements dispatcher.Credentials.
type CredentialCache struct {
	creds  *Credentials
	log    zerolog.Logger
	mirror *mirror

	mu       sync.RWMutex
	byKey    map[string]*applier // by "<cloud>.<id>"; an applier is replaced, never changed
	snapshot map[string]*applier // being filled by a watch's initial values
}

// applier is one credential, ready to set on a request. It never prints.
type applier struct {
	id     string
	header string // canonical header name (basic, bearer, header)
	value  string // that header's value
	// hmac: the secrets, newest first, and when each stops signing (zero:
	// never).
	secrets []webhook.Secret
	expires []time.Time
	err     error // the credential cannot be used (it does not decrypt); no secret in it
}

func (applier) String() string               { return "[redacted]" }
func (applier) GoString() string             { return "[redacted]" }
func (applier) Format(f fmt.State, _ rune)   { io.WriteString(f, "[redacted]") }
func (applier) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// NewCache returns a CredentialCache of c's bucket; it fills once Run
// starts. resync of 0 means DefaultResync.
func (c *Credentials) NewCache(log zerolog.Logger, resync time.Duration) *CredentialCache {
	cc := &CredentialCache{
		creds: c,
		log:   log.With().Str("component", "credential-cache").Logger(),
		byKey: map[string]*applier{},
	}
	cc.mirror = newMirror(c.kv, cc.log, resync, cc)
	return cc
}

// Ready is closed once the cache has loaded the whole bucket.
func (cc *CredentialCache) Ready() <-chan struct{} { return cc.mirror.ready }

// Run watches the bucket until ctx ends (see mirror) and returns nil.
func (cc *CredentialCache) Run(ctx context.Context) error { return cc.mirror.run(ctx) }

func (cc *CredentialCache) begin() { cc.snapshot = map[string]*applier{} }

func (cc *CredentialCache) apply(e jetstream.KeyValueEntry, live bool) {
	a := cc.entry(e)
	if !live {
		setOrDelete(cc.snapshot, e.Key(), a)
		return
	}
	cc.mu.Lock()
	setOrDelete(cc.byKey, e.Key(), a)
	cc.mu.Unlock()
}

func (cc *CredentialCache) commit() {
	cc.mu.Lock()
	cc.byKey = cc.snapshot
	cc.mu.Unlock()
	cc.snapshot = nil
	cc.log.Debug().Int("credentials", cc.Len()).Msg("credential cache loaded")
}

func setOrDelete(m map[string]*applier, k string, a *applier) {
	if a == nil {
		delete(m, k)
	} else {
		m[k] = a
	}
}

// entry turns one KV entry into an applier; nil for a delete.
func (cc *CredentialCache) entry(e jetstream.KeyValueEntry) *applier {
	if e.Operation() != jetstream.KeyValuePut {
		return nil
	}
	sc, err := decodeStored(e.Value())
	if err != nil {
		cc.log.Error().Err(err).Str("key", e.Key()).Msg("undecodable credential record skipped")
		return nil
	}
	a := cc.creds.applier(&sc)
	if a.err != nil {
		cc.log.Error().Err(a.err).Str("cloud", sc.Cloud).Str("credential_id", sc.ID).Msg("credential cannot be used; deliveries that need it fail")
	}
	return a
}

// applier opens sc and prepares what it sets on a request.
func (c *Credentials) applier(sc *storedCredential) *applier {
	a := &applier{id: sc.ID}
	s, err := c.open(sc)
	if err != nil {
		a.err = err
		return a
	}
	switch sc.Type {
	case herald.CredentialBasic:
		a.header = "Authorization"
		a.value = "Basic " + base64.StdEncoding.EncodeToString([]byte(s.Username+":"+s.Password))
	case herald.CredentialBearer:
		a.header, a.value = "Authorization", "Bearer "+s.Token
	case herald.CredentialHeader:
		a.header, a.value = textproto.CanonicalMIMEHeaderKey(sc.Header), s.Value
	case herald.CredentialHMAC:
		for _, ss := range s.Signing {
			secret, err := webhook.ParseSecret(ss.Secret)
			if err != nil {
				a.err = fmt.Errorf("credential %s: a stored signing secret does not parse", sc.ID)
				return a
			}
			var exp time.Time
			if ss.ExpiresAt != nil {
				exp = *ss.ExpiresAt
			}
			a.secrets = append(a.secrets, secret)
			a.expires = append(a.expires, exp)
		}
		if len(a.secrets) == 0 {
			a.err = fmt.Errorf("credential %s: no signing secret", sc.ID)
		}
	default:
		a.err = fmt.Errorf("credential %s: unknown type %q", sc.ID, sc.Type)
	}
	return a
}

// Len is the number of credentials held.
func (cc *CredentialCache) Len() int {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	return len(cc.byKey)
}

// Apply sets on h what the credentials ids of cloud ask for: Authorization
// (basic, bearer), a header (header), webhook-signature over
// "{msgID}.{ts}.{body}" (hmac: the current secret first, then any previous
// one still within its rotation overlap at ts, space-separated). A
// credential it has not seen yet (created a moment ago through another
// process) is read from the bucket. It returns an error wrapping
// herald.ErrNotFound when a credential does not exist, and never puts a
// secret in an error. Safe for concurrent use.
func (cc *CredentialCache) Apply(ctx context.Context, cloud string, ids []string, h http.Header, msgID string, ts time.Time, body []byte) error {
	for _, id := range ids {
		a, err := cc.lookup(ctx, cloud, id)
		if err != nil {
			return err
		}
		if a.err != nil {
			return a.err
		}
		a.apply(h, msgID, ts, body)
	}
	return nil
}

func (cc *CredentialCache) lookup(ctx context.Context, cloud, id string) (*applier, error) {
	cc.mu.RLock()
	a := cc.byKey[key(cloud, id)]
	cc.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	sc, _, err := cc.creds.get(ctx, cloud, id)
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", id, err)
	}
	return cc.creds.applier(&sc), nil
}

// signatureHeader is webhook-signature in canonical form.
var signatureHeader = textproto.CanonicalMIMEHeaderKey(webhook.HeaderSignature)

func (a *applier) apply(h http.Header, msgID string, ts time.Time, body []byte) {
	if a.secrets == nil {
		h[a.header] = []string{a.value}
		return
	}
	active := a.secrets
	for i, exp := range a.expires {
		if !exp.IsZero() && !ts.Before(exp) {
			// Expired: sign with the others only (rare; allocate then).
			active = make([]webhook.Secret, 0, len(a.secrets))
			for j, s := range a.secrets {
				if j < i || a.expires[j].IsZero() || ts.Before(a.expires[j]) {
					active = append(active, s)
				}
			}
			break
		}
	}
	h[signatureHeader] = []string{webhook.SignatureHeader(active, msgID, ts, body)}
}
