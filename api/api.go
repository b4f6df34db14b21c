// Package api is herald's HTTP API: JSON under /v1 for cloud keys,
// subscriptions, credentials and events, plus /healthz, /readyz and
// /metrics for operators (SPEC §5).
//
// Every /v1 route takes "Authorization: Bearer <token>". The admin token acts
// on every cloud; a cloud key acts on its own cloud only, and any other cloud
// answers 404 exactly as an object that does not exist. Failed
// authentication is limited per client address (429 with Retry-After).
// Errors are JSON {"error": "...", "field": "..."}; one function,
// errorStatus, maps error kinds to status codes.
//
// Credentials are write-only: no answer carries a secret, except the one
// herald generates for an hmac credential, shown once in the answer that
// creates (or rotates) it, with Cache-Control: no-store.
//
// The package stores nothing itself: it speaks to the small interfaces
// Subscriptions, Keys, Credentials and Publisher, declared here and
// implemented elsewhere.
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
)

// Subscriptions stores a cloud's subscriptions. Every method is safe for
// concurrent use, honours ctx, and returns herald.ErrNotFound for an id that
// does not exist in that cloud, a *herald.ValidationError for bad input (the
// store validates), herald.ErrConflict on a concurrent change, and
// herald.ErrUnavailable when storage cannot be reached.
type Subscriptions interface {
	Create(ctx context.Context, cloud string, p herald.SubscriptionPatch) (herald.Subscription, error)
	Get(ctx context.Context, cloud, id string) (herald.Subscription, error)
	List(ctx context.Context, cloud string) ([]herald.Subscription, error)
	Update(ctx context.Context, cloud, id string, p herald.SubscriptionPatch) (herald.Subscription, error)
	Delete(ctx context.Context, cloud, id string) error
}

// Keys mints, lists, revokes and checks cloud keys. Every method is safe for
// concurrent use and returns herald.ErrUnavailable when storage cannot be
// reached.
type Keys interface {
	// Create mints a key for cloud; token is shown to the caller once and
	// never stored in the clear.
	Create(ctx context.Context, cloud string) (k herald.Key, token string, err error)
	// List returns cloud's keys, without tokens.
	List(ctx context.Context, cloud string) ([]herald.Key, error)
	// Delete revokes a key of cloud, at once; a key of another cloud is
	// herald.ErrNotFound.
	Delete(ctx context.Context, cloud, id string) error
	// Authenticate returns the cloud a key token belongs to, or
	// herald.ErrUnauthorized.
	Authenticate(ctx context.Context, token string) (cloud string, err error)
}

// Credentials stores a cloud's credentials, write-only. Every method is
// safe for concurrent use, honours ctx, and returns herald.ErrNotFound for
// an id that does not exist in that cloud, a *herald.ValidationError
// naming the field for bad input (never quoting a secret),
// herald.ErrConflict for a credential a subscription still names (Delete)
// or a concurrent change, and herald.ErrUnavailable when storage cannot be
// reached. No value returned holds a secret, except generated.
type Credentials interface {
	// Create stores a credential; generated is the secret herald made for
	// an hmac credential sent without one (else empty), shown once.
	Create(ctx context.Context, cloud string, spec herald.CredentialSpec) (c herald.Credential, generated string, err error)
	Get(ctx context.Context, cloud, id string) (herald.Credential, error)
	List(ctx context.Context, cloud string) ([]herald.Credential, error)
	Delete(ctx context.Context, cloud, id string) error
	// Rotate gives an hmac credential a new secret (generated when r has
	// none, and then returned as generated); the previous one keeps
	// signing until previousExpiresAt.
	Rotate(ctx context.Context, cloud, id string, r herald.Rotation) (c herald.Credential, generated string, previousExpiresAt time.Time, err error)
}

// Publisher validates and publishes an event. It is safe for concurrent use.
// It fills ID (when empty), OccurredAt (when zero) and Sequence, and returns
// a *herald.ValidationError for an unknown type or bad data (Field "type",
// "data.<path>", "id"), herald.ErrUnavailable when NATS cannot take it.
type Publisher interface {
	Publish(ctx context.Context, e herald.Event) (herald.Event, error)
}

// DefaultMaxBodyBytes bounds a request body when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// readyTimeout caps one readiness check, whatever the prober's own timeout.
const readyTimeout = 5 * time.Second

// Config is what New needs. AdminToken, Subscriptions, Keys, Credentials
// and Publisher are required; every other zero value means the default.
type Config struct {
	// AdminToken acts on every cloud and alone may create cloud keys.
	AdminToken    string
	Subscriptions Subscriptions
	Keys          Keys
	Credentials   Credentials
	Publisher     Publisher
	Deliveries    Deliveries
	// Ready reports readiness: nil when NATS is reachable and the streams
	// exist. Its error text is shown on the unauthenticated /readyz, so it
	// must not carry secrets. Nil means always ready.
	Ready func(ctx context.Context) error
	// Metrics, when set, is served at /metrics, and the API registers its
	// request metrics (herald_http_*) in it. Nil means no /metrics route.
	Metrics *prometheus.Registry
	// Logger receives request logs at debug level and failures at error
	// level. The zero value logs nothing, as zerolog.Nop() does.
	Logger zerolog.Logger
	// MaxBodyBytes bounds a request body; a longer one is answered 413.
	// Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// AuthLimit limits failed authentication per client address.
	AuthLimit AuthLimit
	// Now is the clock of the authentication limit (default time.Now).
	Now func() time.Time
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	switch {
	case c.AdminToken == "":
		return errors.New("api: AdminToken is required")
	case !validToken(c.AdminToken):
		return fmt.Errorf("api: AdminToken must be 1-%d printable ASCII characters without spaces, to travel in a Bearer header", maxTokenLength)
	case c.Subscriptions == nil:
		return errors.New("api: Subscriptions is required")
	case c.Keys == nil:
		return errors.New("api: Keys is required")
	case c.Credentials == nil:
		return errors.New("api: Credentials is required")
	case c.Publisher == nil:
		return errors.New("api: Publisher is required")
	case c.Deliveries == nil:
		return errors.New("api: Deliveries is required")
	case c.MaxBodyBytes < 0:
		return errors.New("api: MaxBodyBytes must not be negative")
	}
	return nil
}

// API serves herald's HTTP API. Build it with New; it is safe for
// concurrent use.
type API struct {
	admin   [32]byte // SHA-256 of the admin token
	subs    Subscriptions
	keys    Keys
	creds   Credentials
	pub     Publisher
	dlv     Deliveries
	limit   *failureLimiter // nil: no limit
	ready   func(ctx context.Context) error
	log     zerolog.Logger
	maxBody int64
	metrics *metrics // nil without a registry
	mux     *http.ServeMux
}

// New checks cfg and builds the API.
func New(cfg Config) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &API{
		admin:   tokenSum(cfg.AdminToken),
		subs:    cfg.Subscriptions,
		keys:    cfg.Keys,
		creds:   cfg.Credentials,
		pub:     cfg.Publisher,
		dlv:     cfg.Deliveries,
		ready:   cfg.Ready,
		log:     cfg.Logger.With().Str("component", "api").Logger(),
		maxBody: cfg.MaxBodyBytes,
		mux:     http.NewServeMux(),
	}
	if a.maxBody == 0 {
		a.maxBody = DefaultMaxBodyBytes
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	a.limit = newFailureLimiter(cfg.AuthLimit.withDefaults(), now)
	if cfg.Metrics != nil {
		m, err := newMetrics(cfg.Metrics)
		if err != nil {
			return nil, err
		}
		a.metrics = m
	}
	a.routes(cfg.Metrics)
	return a, nil
}

// Handler returns the whole API: /v1, /healthz, /readyz and /metrics.
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serve) }

// route is one method and path pattern of the API.
type route struct {
	method, path string
	handler      http.Handler
}

// routes registers every route, a 405 answer for each of their paths under
// any other method, and a 404 answer for every other path.
//
// The 404 and 405 answers come before authentication: they depend on the
// shape of the path alone, never on a cloud or an object, so they tell an
// anonymous caller nothing the route table in the docs does not.
func (a *API) routes(reg *prometheus.Registry) {
	const (
		cloud = "/v1/clouds/{cloud}"
		keys  = cloud + "/keys"
		subs  = cloud + "/subscriptions"
		creds = cloud + "/credentials"
		dlvs  = cloud + "/deliveries"
	)
	table := []route{
		{"POST", keys, a.adminOnly(a.createKey)},
		{"GET", keys, a.adminOnly(a.listKeys)},
		{"DELETE", keys + "/{id}", a.adminOnly(a.deleteKey)},
		{"POST", creds, a.forCloud(a.createCredential)},
		{"GET", creds, a.forCloud(a.listCredentials)},
		{"GET", creds + "/{id}", a.forCloud(a.getCredential)},
		{"DELETE", creds + "/{id}", a.forCloud(a.deleteCredential)},
		{"POST", creds + "/{id}/rotate", a.forCloud(a.rotateCredential)},
		{"POST", subs, a.forCloud(a.createSubscription)},
		{"GET", subs, a.forCloud(a.listSubscriptions)},
		{"GET", subs + "/{id}", a.forCloud(a.getSubscription)},
		{"PATCH", subs + "/{id}", a.forCloud(a.updateSubscription)},
		{"DELETE", subs + "/{id}", a.forCloud(a.deleteSubscription)},
		{"POST", subs + "/{id}/test", a.forCloud(a.testSubscription)},
		{"POST", cloud + "/events", a.forCloud(a.publishEvent)},
		{"GET", dlvs, a.forCloud(a.listDeliveries)},
		{"GET", dlvs + "/{id}", a.forCloud(a.getDelivery)},
		{"POST", dlvs + "/{id}/redeliver", a.forCloud(a.redeliver)},
		{"GET", "/healthz", http.HandlerFunc(a.healthz)},
		{"GET", "/readyz", http.HandlerFunc(a.readyz)},
	}
	if reg != nil {
		table = append(table, route{"GET", "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	}

	allowed := map[string][]string{}
	var paths []string
	for _, rt := range table {
		a.mux.Handle(rt.method+" "+rt.path, rt.handler)
		if _, ok := allowed[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
		if rt.method == "GET" {
			// ServeMux answers HEAD with the GET handler.
			allowed[rt.path] = append(allowed[rt.path], "HEAD")
		}
	}
	// A pattern without a method is less specific than one with, so these
	// only see the methods no route takes.
	for _, p := range paths {
		methods := allowed[p]
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		a.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.fail(w, r, errMethodNotAllowed)
		})
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, herald.ErrNotFound)
	})
}

// serve wraps the mux: JSON content type, panic recovery, the request log
// and the request metrics.
func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	rec.Header().Set("Content-Type", "application/json")
	rec.Header().Set("X-Content-Type-Options", "nosniff")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			if rec.status == 0 {
				a.fail(rec, r, fmt.Errorf("panic: %v", v))
			} else {
				a.log.Error().Str("method", r.Method).Str("route", routeOf(r)).
					Str("panic", fmt.Sprint(v)).Msg("handler panicked after answering")
			}
		}
		a.observe(r, rec.Status(), time.Since(start))
	}()
	// ServeMux would redirect an unclean path (//, .., a trailing slash)
	// with an HTML body; no route has such a path, so answer 404 here.
	if p := r.URL.Path; p != "/" && path.Clean(p) != p {
		a.fail(rec, r, herald.ErrNotFound)
		return
	}
	a.mux.ServeHTTP(rec, r)
}

// observe logs one answered request at debug level and counts it. It never
// logs headers or bodies.
func (a *API) observe(r *http.Request, status int, d time.Duration) {
	route := routeOf(r)
	a.log.Debug().
		Str("method", r.Method).
		Str("route", route).
		Int("status", status).
		Dur("duration", d).
		Str("cloud", r.PathValue("cloud")).
		Msg("request")
	if a.metrics != nil {
		a.metrics.observe(route, status, d)
	}
}

// routeOf is the pattern that matched r, or "unmatched" before the mux ran.
func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// statusRecorder remembers the status code a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Status is the answered status; 200 when the handler wrote nothing.
func (s *statusRecorder) Status() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
