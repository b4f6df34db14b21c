package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/api"
)

const (
	adminToken = "admin-secret-token"
	acmeKey    = "hk_acme-secret-key"   // a key of cloud acme
	globexKey  = "hk_globex-secret-key" // a key of cloud globex
	badKey     = "hk_nobody"            // a key of no cloud
)

// harness is one API over fresh fakes, with its logs captured.
type harness struct {
	t       testing.TB
	handler http.Handler
	subs    *fakeSubscriptions
	keys    *fakeKeys
	creds   *fakeCredentials
	pub     *fakePublisher
	dlv     *fakeDeliveries
	logs    *syncBuffer
}

// newHarness builds an API with the admin token, keys for acme and globex,
// and a metrics registry; opts change the config first.
func newHarness(t testing.TB, opts ...func(*api.Config)) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		subs:  newFakeSubscriptions(),
		keys:  newFakeKeys(),
		creds: newFakeCredentials(),
		pub:   &fakePublisher{},
		dlv:   newFakeDeliveries(),
		logs:  &syncBuffer{},
	}
	h.keys.add(acmeKey, "acme")
	h.keys.add(globexKey, "globex")
	cfg := api.Config{
		AdminToken:    adminToken,
		Subscriptions: h.subs,
		Keys:          h.keys,
		Credentials:   h.creds,
		Publisher:     h.pub,
		Deliveries:    h.dlv,
		Ready:         func(context.Context) error { return nil },
		Metrics:       prometheus.NewRegistry(),
		Logger:        zerolog.New(h.logs).Level(zerolog.DebugLevel),
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := api.New(cfg)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	h.handler = a.Handler()
	return h
}

// seed stores a valid subscription of cloud and returns its id.
func (h *harness) seed(cloud string) string {
	h.t.Helper()
	url := "https://example.com/hook"
	s, err := h.subs.Create(context.Background(), cloud, herald.SubscriptionPatch{URL: &url, Events: []string{"*"}})
	if err != nil {
		h.t.Fatalf("seed subscription: %v", err)
	}
	return s.ID
}

// response is one answer of the API.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with token (none when empty) and body (none when
// empty). It checks what every answer must satisfy: JSON content type, and
// a JSON body unless the status is 204.
func (h *harness) do(method, path, token, body string) response {
	h.t.Helper()
	return h.send(newRequest(h.t, method, path, token, body))
}

func (h *harness) send(req *http.Request) response {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	if req.URL.Path == "/metrics" && res.status == http.StatusOK {
		return res
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		h.t.Errorf("%s %s: Content-Type = %q, want application/json", req.Method, req.URL.Path, ct)
	}
	if res.status != http.StatusNoContent && !json.Valid(res.body) {
		h.t.Errorf("%s %s: body is not JSON: %q", req.Method, req.URL.Path, res.body)
	}
	return res
}

func newRequest(t testing.TB, method, path, token, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// errorOf decodes an error answer.
func (r response) errorOf(t testing.TB) (msg, field string) {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
		Field string  `json:"field"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || *e.Error == "" {
		t.Fatalf("not an error body (%v): %s", err, r.body)
	}
	return *e.Error, e.Field
}

// wantStatus fails t unless r has status want.
func (r response) wantStatus(t testing.TB, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
}

// into decodes r's body into v.
func (r response) into(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines decodes every captured log line.
func (h *harness) logLines() []map[string]any {
	h.t.Helper()
	var out []map[string]any
	for line := range strings.Lines(h.logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			h.t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

const subscriptionBody = `{"url":"https://example.com/panda/notifications","events":["video-created","video-encoded"],"format":"form","retry":{"strategy":"linear","delay_delta":"5s","max_retries":50}}`

func TestRoutesAnswerSuccess(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string // %s is a seeded subscription of acme
		body   string
		want   int
		check  func(t *testing.T, h *harness, r response)
	}{
		{
			name: "key created", method: "POST", path: "/v1/clouds/acme/keys", want: http.StatusCreated,
			check: func(t *testing.T, h *harness, r response) {
				var k struct {
					ID        string    `json:"id"`
					Cloud     string    `json:"cloud"`
					CreatedAt time.Time `json:"created_at"`
					Key       string    `json:"key"`
				}
				r.into(t, &k)
				if k.ID == "" || k.Cloud != "acme" || k.CreatedAt.IsZero() || k.Key == "" {
					t.Fatalf("key answer = %+v", k)
				}
				if cc := r.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
				// The new key works on its cloud.
				h.do("GET", "/v1/clouds/acme/subscriptions", k.Key, "").wantStatus(t, http.StatusOK)
			},
		},
		{name: "key created from {}", method: "POST", path: "/v1/clouds/acme/keys", body: `{}`, want: http.StatusCreated},
		{
			name: "subscription created", method: "POST", path: "/v1/clouds/acme/subscriptions", body: subscriptionBody, want: http.StatusCreated,
			check: func(t *testing.T, h *harness, r response) {
				var s herald.Subscription
				r.into(t, &s)
				if !herald.ValidObjectID(s.ID) || s.Cloud != "acme" || s.Format != "form" || s.Retry.Strategy != "linear" {
					t.Fatalf("subscription = %+v", s)
				}
				if loc, want := r.header.Get("Location"), "/v1/clouds/acme/subscriptions/"+s.ID; loc != want {
					t.Errorf("Location = %q, want %q", loc, want)
				}
			},
		},
		{
			name: "subscriptions listed", method: "GET", path: "/v1/clouds/acme/subscriptions", want: http.StatusOK,
			check: func(t *testing.T, h *harness, r response) {
				var l struct{ Data []herald.Subscription }
				r.into(t, &l)
				if len(l.Data) != 1 || l.Data[0].Cloud != "acme" {
					t.Fatalf("list = %+v", l)
				}
			},
		},
		{
			name: "subscription read", method: "GET", path: "/v1/clouds/acme/subscriptions/%s", want: http.StatusOK,
			check: func(t *testing.T, h *harness, r response) {
				var s herald.Subscription
				r.into(t, &s)
				if s.URL != "https://example.com/hook" {
					t.Fatalf("subscription = %+v", s)
				}
			},
		},
		{
			name: "subscription changed", method: "PATCH", path: "/v1/clouds/acme/subscriptions/%s", body: `{"url":"https://example.com/new","enabled":false}`, want: http.StatusOK,
			check: func(t *testing.T, h *harness, r response) {
				var s herald.Subscription
				r.into(t, &s)
				if s.URL != "https://example.com/new" || s.Enabled {
					t.Fatalf("subscription = %+v", s)
				}
			},
		},
		{
			name: "subscription removed", method: "DELETE", path: "/v1/clouds/acme/subscriptions/%s", want: http.StatusNoContent,
			check: func(t *testing.T, h *harness, r response) {
				if len(r.body) != 0 {
					t.Errorf("204 body = %q, want none", r.body)
				}
			},
		},
		{
			name: "event accepted", method: "POST", path: "/v1/clouds/acme/events",
			body: `{"id":"evt-1","type":"video-created","data":{"video_id":"v1","status":"success"},"occurred_at":"2024-05-01T12:00:00Z"}`,
			want: http.StatusAccepted,
			check: func(t *testing.T, h *harness, r response) {
				var got map[string]any
				r.into(t, &got)
				if len(got) != 2 || got["id"] != "evt-1" || got["sequence"] != float64(1) {
					t.Fatalf("answer = %v, want {id: evt-1, sequence: 1}", got)
				}
				e, _ := h.pub.last()
				if e.Cloud != "acme" || e.Type != "video-created" || !e.OccurredAt.Equal(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)) {
					t.Fatalf("published %+v", e)
				}
			},
		},
		{
			name: "event accepted with generated id", method: "POST", path: "/v1/clouds/acme/events",
			body: `{"type":"state_changed","data":{"job_id":"j1","state":"processing"}}`, want: http.StatusAccepted,
			check: func(t *testing.T, h *harness, r response) {
				var got struct {
					ID       string
					Sequence uint64
				}
				r.into(t, &got)
				if !strings.HasPrefix(got.ID, "evt_") || got.Sequence != 1 {
					t.Fatalf("answer = %+v", got)
				}
			},
		},
		{
			name: "healthy", method: "GET", path: "/healthz", want: http.StatusOK,
			check: func(t *testing.T, h *harness, r response) {
				if got := strings.TrimSpace(string(r.body)); got != `{"status":"ok"}` {
					t.Fatalf("body = %s", got)
				}
			},
		},
		{name: "ready", method: "GET", path: "/readyz", want: http.StatusOK},
		{
			name: "metrics served", method: "GET", path: "/metrics", want: http.StatusOK,
			check: func(t *testing.T, h *harness, r response) {
				// Prometheus text, not JSON; the registry is still empty.
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Fatalf("Content-Type = %q, want Prometheus text", ct)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			path := tt.path
			if strings.Contains(path, "%s") {
				path = fmt.Sprintf(path, h.seed("acme"))
			} else {
				h.seed("acme")
			}
			r := h.do(tt.method, path, adminToken, tt.body)
			r.wantStatus(t, tt.want)
			if tt.check != nil {
				tt.check(t, h, r)
			}
		})
	}
}

// v1Route is one /v1 route as the auth matrix drives it.
type v1Route struct {
	name      string
	method    string
	path      string // %s is the cloud, then an object of acme (see obj)
	obj       string // which object the second %s is: "sub", "key", "crd" (bearer) or "hmac"
	body      string
	ok        int
	adminOnly bool
}

var v1Routes = []v1Route{
	{name: "create key", method: "POST", path: "/v1/clouds/%s/keys", ok: http.StatusCreated, adminOnly: true},
	{name: "list keys", method: "GET", path: "/v1/clouds/%s/keys", ok: http.StatusOK, adminOnly: true},
	{name: "revoke key", method: "DELETE", path: "/v1/clouds/%s/keys/%s", obj: "key", ok: http.StatusNoContent, adminOnly: true},
	{name: "create subscription", method: "POST", path: "/v1/clouds/%s/subscriptions", body: subscriptionBody, ok: http.StatusCreated},
	{name: "list subscriptions", method: "GET", path: "/v1/clouds/%s/subscriptions", ok: http.StatusOK},
	{name: "read subscription", method: "GET", path: "/v1/clouds/%s/subscriptions/%s", obj: "sub", ok: http.StatusOK},
	{name: "change subscription", method: "PATCH", path: "/v1/clouds/%s/subscriptions/%s", obj: "sub", body: `{"enabled":false}`, ok: http.StatusOK},
	{name: "remove subscription", method: "DELETE", path: "/v1/clouds/%s/subscriptions/%s", obj: "sub", ok: http.StatusNoContent},
	{name: "create credential", method: "POST", path: "/v1/clouds/%s/credentials", body: `{"name":"n","type":"bearer","token":"matrix-token"}`, ok: http.StatusCreated},
	{name: "list credentials", method: "GET", path: "/v1/clouds/%s/credentials", ok: http.StatusOK},
	{name: "read credential", method: "GET", path: "/v1/clouds/%s/credentials/%s", obj: "crd", ok: http.StatusOK},
	{name: "remove credential", method: "DELETE", path: "/v1/clouds/%s/credentials/%s", obj: "crd", ok: http.StatusNoContent},
	{name: "rotate credential", method: "POST", path: "/v1/clouds/%s/credentials/%s/rotate", obj: "hmac", body: `{}`, ok: http.StatusOK},
	{name: "publish event", method: "POST", path: "/v1/clouds/%s/events", body: `{"type":"video-encoded","data":{"video_id":"v","encoding_ids":["e"]}}`, ok: http.StatusAccepted},
	{name: "test subscription", method: "POST", path: "/v1/clouds/%s/subscriptions/%s/test", obj: "sub", ok: http.StatusOK},
	{name: "list deliveries", method: "GET", path: "/v1/clouds/%s/deliveries", ok: http.StatusOK},
	{name: "read delivery", method: "GET", path: "/v1/clouds/%s/deliveries/%s", obj: "dlv", ok: http.StatusOK},
	{name: "redeliver", method: "POST", path: "/v1/clouds/%s/deliveries/%s/redeliver", obj: "dlv", ok: http.StatusAccepted},
}

// objects are the ids of one object of each kind, seeded in acme.
type objects map[string]string

// seedAll seeds a subscription, a bearer and an hmac credential in acme,
// and returns their ids and the id of acme's key.
func (h *harness) seedAll() objects {
	h.t.Helper()
	sub := h.seed("acme")
	return objects{
		"sub":  sub,
		"dlv":  h.dlv.seed("acme", sub, "evt-seeded", herald.StatusFailed),
		"key":  h.keys.idOf(acmeKey),
		"crd":  h.creds.seed("acme", herald.CredentialBearer),
		"hmac": h.creds.seed("acme", herald.CredentialHMAC),
	}
}

// pathFor fills r's path for cloud and the objects.
func (r v1Route) pathFor(cloud string, objs objects) string {
	if strings.Count(r.path, "%s") == 2 {
		return fmt.Sprintf(r.path, cloud, objs[r.obj])
	}
	return fmt.Sprintf(r.path, cloud)
}

// state counts what the fakes hold, to check that a refused request
// changed nothing.
func (h *harness) state() string {
	h.subs.mu.Lock()
	subs := len(h.subs.byID)
	h.subs.mu.Unlock()
	h.creds.mu.Lock()
	creds := len(h.creds.byID)
	h.creds.mu.Unlock()
	h.keys.mu.Lock()
	keys := len(h.keys.keys)
	h.keys.mu.Unlock()
	h.dlv.mu.Lock()
	redelivered, tested := len(h.dlv.redelivered), len(h.dlv.tested)
	h.dlv.mu.Unlock()
	return fmt.Sprintf("%d subscriptions, %d credentials, %d keys, %d events, %d redelivered, %d tested", subs, creds, keys, h.pub.seq.Load(), redelivered, tested)
}

// missingBody is the body of a 404 for an object that does not exist.
func missingBody(t *testing.T) []byte {
	t.Helper()
	h := newHarness(t)
	r := h.do("GET", "/v1/clouds/acme/subscriptions/sub_doesnotexist", adminToken, "")
	r.wantStatus(t, http.StatusNotFound)
	return r.body
}

func TestAuthMatrix(t *testing.T) {
	notFound := missingBody(t)
	principals := []struct {
		name  string
		token string
	}{
		{"admin", adminToken},
		{"own cloud key", acmeKey},
		{"other cloud key", globexKey},
		{"no key", ""},
		{"bad key", badKey},
	}
	for _, rt := range v1Routes {
		for _, p := range principals {
			want := rt.ok
			switch {
			case p.token == "" || p.token == badKey:
				want = http.StatusUnauthorized
			case rt.adminOnly && p.token != adminToken:
				want = http.StatusForbidden
			case p.token == globexKey:
				want = http.StatusNotFound
			}
			t.Run(fmt.Sprintf("%s/%s answers %d", rt.name, p.name, want), func(t *testing.T) {
				h := newHarness(t)
				objs := h.seedAll()
				before := h.state()
				r := h.do(rt.method, rt.pathFor("acme", objs), p.token, rt.body)
				r.wantStatus(t, want)
				switch want {
				case http.StatusUnauthorized:
					if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
						t.Errorf("WWW-Authenticate = %q, want Bearer", got)
					}
					if msg, _ := r.errorOf(t); msg != "missing or invalid bearer token" {
						t.Errorf("error = %q", msg)
					}
				case http.StatusNotFound:
					if !bytes.Equal(r.body, notFound) {
						t.Errorf("foreign cloud body %s differs from a missing object's %s", r.body, notFound)
					}
				case http.StatusForbidden:
					r.errorOf(t)
				}
				if after := h.state(); want >= 400 && after != before {
					t.Errorf("a refused request changed the stores: %s, then %s", before, after)
				}
			})
		}
	}
}

// TestKeysRouteForbiddenAlike checks that a cloud key learns nothing from
// the admin-only keys route: its own cloud, another and an invalid one
// answer the same 403.
func TestKeysRouteForbiddenAlike(t *testing.T) {
	h := newHarness(t)
	own := h.do("POST", "/v1/clouds/acme/keys", acmeKey, "")
	own.wantStatus(t, http.StatusForbidden)
	for _, cloud := range []string{"globex", "nosuchcloud", "bad.cloud"} {
		t.Run(cloud+" answers the same 403", func(t *testing.T) {
			r := h.do("POST", "/v1/clouds/"+cloud+"/keys", acmeKey, "")
			r.wantStatus(t, http.StatusForbidden)
			if !bytes.Equal(r.body, own.body) {
				t.Errorf("body %s differs from own cloud's %s", r.body, own.body)
			}
		})
	}
}

func TestNotFoundBodiesAreIdentical(t *testing.T) {
	notFound := missingBody(t)
	h := newHarness(t)
	foreign := h.seed("globex")
	tests := []struct {
		name, method, path, token string
	}{
		{"foreign cloud's subscription by id", "GET", "/v1/clouds/globex/subscriptions/" + foreign, acmeKey},
		{"foreign subscription under own cloud", "GET", "/v1/clouds/acme/subscriptions/" + foreign, acmeKey},
		{"cloud that does not exist", "GET", "/v1/clouds/nosuchcloud/subscriptions", acmeKey},
		{"invalid cloud for a key", "GET", "/v1/clouds/bad.cloud/subscriptions", acmeKey},
		{"id herald never mints", "GET", "/v1/clouds/acme/subscriptions/not-an-id", acmeKey},
		{"missing subscription deleted", "DELETE", "/v1/clouds/acme/subscriptions/sub_gone", adminToken},
		{"unknown /v1 path", "GET", "/v1/nothing/here", adminToken},
		{"unknown route under a cloud", "GET", "/v1/clouds/acme/nothing", adminToken},
		{"trailing slash", "GET", "/v1/clouds/acme/subscriptions/", adminToken},
		{"unclean path", "GET", "/v1/clouds/acme/../acme/subscriptions", adminToken},
		{"path outside /v1", "GET", "/nothing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name+" answers the common 404", func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.token, "")
			r.wantStatus(t, http.StatusNotFound)
			if !bytes.Equal(r.body, notFound) {
				t.Errorf("body %s differs from a missing object's %s", r.body, notFound)
			}
		})
	}
}

func TestInvalidCloudForAdminNamesField(t *testing.T) {
	h := newHarness(t)
	for _, rt := range v1Routes {
		t.Run(rt.name+" answers 422 cloud", func(t *testing.T) {
			r := h.do(rt.method, rt.pathFor("bad.cloud", objects{"sub": "sub_x", "key": "key_x", "crd": "crd_x", "hmac": "crd_y", "dlv": "msg_x"}), adminToken, rt.body)
			r.wantStatus(t, http.StatusUnprocessableEntity)
			if _, field := r.errorOf(t); field != "cloud" {
				t.Errorf("field = %q, want cloud", field)
			}
		})
	}
}

func TestBearerHeader(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   int
	}{
		{"lower-case scheme is accepted", []string{"bearer " + acmeKey}, http.StatusOK},
		{"extra spaces are accepted", []string{"Bearer   " + acmeKey}, http.StatusOK},
		{"basic scheme is refused", []string{"Basic " + acmeKey}, http.StatusUnauthorized},
		{"scheme alone is refused", []string{"Bearer"}, http.StatusUnauthorized},
		{"empty token is refused", []string{"Bearer "}, http.StatusUnauthorized},
		{"token with a space is refused", []string{"Bearer " + acmeKey + " x"}, http.StatusUnauthorized},
		{"two headers are refused", []string{"Bearer " + acmeKey, "Bearer " + acmeKey}, http.StatusUnauthorized},
		{"admin token prefix is refused", []string{"Bearer " + adminToken[:5]}, http.StatusUnauthorized},
		{"overlong token is refused", []string{"Bearer " + strings.Repeat("a", 2000)}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			req := newRequest(t, "GET", "/v1/clouds/acme/subscriptions", "", "")
			for _, v := range tt.values {
				req.Header.Add("Authorization", v)
			}
			h.send(req).wantStatus(t, tt.want)
		})
	}
}

// padded returns a subscription body of exactly n bytes, padded in the URL.
func padded(n int) string {
	head, tail := `{"events":["*"],"url":"https://example.com/`, `"}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

func TestBodyErrors(t *testing.T) {
	const subs, events = "/v1/clouds/acme/subscriptions", "/v1/clouds/acme/events"
	tests := []struct {
		name      string
		method    string
		path      string // %s is a seeded subscription
		body      string
		chunked   bool // no Content-Length: the limit is met while reading
		want      int
		wantField string
	}{
		{name: "1 MiB + 1 body answers 413", method: "POST", path: subs, body: padded(1<<20 + 1), want: 413},
		{name: "1 MiB + 1 chunked body answers 413", method: "POST", path: subs, body: padded(1<<20 + 1), chunked: true, want: 413},
		{name: "1 MiB + 1 event answers 413", method: "POST", path: events, body: padded(1<<20 + 1), want: 413},
		{name: "1 MiB + 1 patch answers 413", method: "PATCH", path: subs + "/%s", body: padded(1<<20 + 1), chunked: true, want: 413},
		{name: "1 MiB body is read and validated", method: "POST", path: subs, body: padded(1 << 20), want: 422, wantField: "url"},
		{name: "empty body answers 400", method: "POST", path: subs, body: "", want: 400},
		{name: "white space body answers 400", method: "POST", path: subs, body: " \n\t", want: 400},
		{name: "malformed JSON answers 400", method: "POST", path: subs, body: `{"url":`, want: 400},
		{name: "bad JSON syntax answers 400", method: "POST", path: subs, body: `{url: 1}`, want: 400},
		{name: "trailing object answers 400", method: "POST", path: subs, body: `{} {}`, want: 400},
		{name: "trailing brace answers 400", method: "POST", path: events, body: `{"type":"x"}}`, want: 400},
		{name: "array body answers 400", method: "POST", path: subs, body: `[]`, want: 400},
		{name: "null body answers 400", method: "POST", path: events, body: `null`, want: 400},
		{name: "unknown field answers 422", method: "POST", path: subs, body: `{"url":"https://e.com","bogus":1}`, want: 422, wantField: "bogus"},
		{name: "nested unknown field answers 422 with its path", method: "POST", path: subs, body: `{"retry":{"strategy":"linear","bogus":1}}`, want: 422, wantField: "retry.bogus"},
		{name: "unknown field in patch answers 422", method: "PATCH", path: subs + "/%s", body: `{"scope":{"job":"j"}}`, want: 422, wantField: "scope.job"},
		{name: "wrong type answers 422", method: "POST", path: subs, body: `{"url":1}`, want: 422, wantField: "url"},
		{name: "wrong element type answers 422", method: "POST", path: subs, body: `{"events":[1]}`, want: 422, wantField: "events"},
		{name: "wrong nested type answers 422", method: "PATCH", path: subs + "/%s", body: `{"retry":{"max_retries":"x"}}`, want: 422, wantField: "retry.max_retries"},
		{name: "bad duration answers 422", method: "POST", path: subs, body: `{"retry":{"initial_delay":"soon"}}`, want: 422, wantField: "retry.initial_delay"},
		{name: "duration of wrong type answers 422", method: "PATCH", path: subs + "/%s", body: `{"url":"https://e.com","retry":{"window":5}}`, want: 422, wantField: "retry.window"},
		{name: "store validation answers 422", method: "POST", path: subs, body: `{"url":"https://e.com","events":["nope"]}`, want: 422, wantField: "events[0]"},
		{name: "store validation of patch answers 422", method: "PATCH", path: subs + "/%s", body: `{"format":"xml"}`, want: 422, wantField: "format"},
		{name: "event cloud in body answers 422", method: "POST", path: events, body: `{"cloud":"globex","type":"video-created","data":{}}`, want: 422, wantField: "cloud"},
		{name: "event type of wrong type answers 422", method: "POST", path: events, body: `{"type":5}`, want: 422, wantField: "type"},
		{name: "bad occurred_at answers 422", method: "POST", path: events, body: `{"type":"video-created","data":{},"occurred_at":"yesterday"}`, want: 422, wantField: "occurred_at"},
		{name: "unknown event type answers 422", method: "POST", path: events, body: `{"type":"nope","data":{}}`, want: 422, wantField: "type"},
		{name: "data not an object answers 422", method: "POST", path: events, body: `{"type":"video-created","data":[1]}`, want: 422, wantField: "data"},
		{name: "reserved data key answers 422", method: "POST", path: events, body: `{"type":"video-created","data":{"event":"x"}}`, want: 422, wantField: "data.event"},
		{name: "bad event id answers 422", method: "POST", path: events, body: `{"id":"a b","type":"video-created","data":{}}`, want: 422, wantField: "id"},
		{name: "unknown field in key body answers 422", method: "POST", path: "/v1/clouds/acme/keys", body: `{"name":"x"}`, want: 422, wantField: "name"},
		{name: "malformed key body answers 400", method: "POST", path: "/v1/clouds/acme/keys", body: `{`, want: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			path := tt.path
			if strings.Contains(path, "%s") {
				path = fmt.Sprintf(path, h.seed("acme"))
			}
			req := newRequest(t, tt.method, path, adminToken, tt.body)
			if tt.chunked {
				req.ContentLength = -1
			}
			r := h.send(req)
			r.wantStatus(t, tt.want)
			msg, field := r.errorOf(t)
			if field != tt.wantField {
				t.Errorf("field = %q, want %q (error %q)", field, tt.wantField, msg)
			}
		})
	}
}

func TestStoreErrorsMapToStatus(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		want      int
		wantField string
	}{
		{"not found answers 404", fmt.Errorf("get: %w", herald.ErrNotFound), 404, ""},
		{"conflict answers 409", fmt.Errorf("update: %w", herald.ErrConflict), 409, ""},
		{"unavailable answers 503", fmt.Errorf("kv: %w", herald.ErrUnavailable), 503, ""},
		{"wrapped validation error answers 422", fmt.Errorf("create: %w", herald.Invalid("credential_ids[0]", "no such credential")), 422, "credential_ids[0]"},
		{"deadline answers 503", context.DeadlineExceeded, 503, ""},
		{"unknown error answers 500", errBoom, 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.seed("acme")
			h.subs.err = tt.err
			r := h.do("PATCH", "/v1/clouds/acme/subscriptions/"+id, adminToken, `{"enabled":false}`)
			r.wantStatus(t, tt.want)
			msg, field := r.errorOf(t)
			if field != tt.wantField {
				t.Errorf("field = %q, want %q", field, tt.wantField)
			}
			if strings.Contains(msg, "secret") {
				t.Errorf("error %q leaks the internal error", msg)
			}
		})
	}
}

func TestInternalErrorIsLoggedNotShown(t *testing.T) {
	h := newHarness(t)
	h.pub.err = errBoom
	r := h.do("POST", "/v1/clouds/acme/events", adminToken, `{"type":"video-created","data":{"video_id":"body-secret"}}`)
	r.wantStatus(t, http.StatusInternalServerError)
	if msg, _ := r.errorOf(t); msg != "internal error" {
		t.Errorf("error = %q, want the generic message", msg)
	}
	var logged bool
	for _, l := range h.logLines() {
		if l["level"] == "error" {
			logged = true
			if l["method"] != "POST" || l["route"] != "POST /v1/clouds/{cloud}/events" || !strings.Contains(fmt.Sprint(l["error"]), errBoom.Error()) {
				t.Errorf("error log = %v, want method, route and the error", l)
			}
		}
	}
	if !logged {
		t.Fatalf("no error logged: %s", h.logs)
	}
	if logs := h.logs.String(); strings.Contains(logs, "body-secret") || strings.Contains(logs, adminToken) {
		t.Errorf("logs carry the body or the token: %s", logs)
	}
}

func TestKeysUnavailableAnswers503(t *testing.T) {
	h := newHarness(t)
	h.keys.err = fmt.Errorf("kv: %w", herald.ErrUnavailable)
	h.do("GET", "/v1/clouds/acme/subscriptions", acmeKey, "").wantStatus(t, http.StatusServiceUnavailable)
	// The admin token is checked without the key store.
	h.do("GET", "/v1/clouds/acme/subscriptions", adminToken, "").wantStatus(t, http.StatusOK)
}

func TestPanicAnswers500(t *testing.T) {
	h := newHarness(t)
	h.subs.panic = true
	r := h.do("GET", "/v1/clouds/acme/subscriptions", adminToken, "")
	r.wantStatus(t, http.StatusInternalServerError)
	if msg, _ := r.errorOf(t); msg != "internal error" {
		t.Errorf("error = %q", msg)
	}
	if !strings.Contains(h.logs.String(), `"level":"error"`) {
		t.Errorf("panic not logged: %s", h.logs)
	}
}

func TestWrongMethodAnswers405(t *testing.T) {
	tests := []struct {
		method, path, allow string
	}{
		{"PUT", "/v1/clouds/acme/subscriptions", "GET, HEAD, POST"},
		{"POST", "/v1/clouds/acme/subscriptions/sub_x", "DELETE, GET, HEAD, PATCH"},
		{"PUT", "/v1/clouds/acme/keys", "GET, HEAD, POST"},
		{"GET", "/v1/clouds/acme/keys/key_x", "DELETE"},
		{"PATCH", "/v1/clouds/acme/credentials/crd_x", "DELETE, GET, HEAD"},
		{"GET", "/v1/clouds/acme/credentials/crd_x/rotate", "POST"},
		{"DELETE", "/v1/clouds/acme/events", "POST"},
		{"POST", "/healthz", "GET, HEAD"},
		{"POST", "/readyz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" answers 405", func(t *testing.T) {
			r := h.do(tt.method, tt.path, adminToken, "")
			r.wantStatus(t, http.StatusMethodNotAllowed)
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			r.errorOf(t)
		})
	}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name  string
		ready func(context.Context) error
		want  int
		body  string
	}{
		{"ready answers 200", func(context.Context) error { return nil }, 200, `{"status":"ready"}`},
		{"no check answers 200", nil, 200, `{"status":"ready"}`},
		{"not ready answers 503", func(context.Context) error { return errors.New("stream HERALD_EVENTS missing") }, 503, `{"error":"not ready: stream HERALD_EVENTS missing"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *api.Config) { c.Ready = tt.ready })
			r := h.do("GET", "/readyz", "", "")
			r.wantStatus(t, tt.want)
			if got := strings.TrimSpace(string(r.body)); got != tt.body {
				t.Errorf("body = %s, want %s", got, tt.body)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Run("request counted", func(t *testing.T) {
		h := newHarness(t)
		h.do("GET", "/v1/clouds/acme/subscriptions", adminToken, "").wantStatus(t, http.StatusOK)
		r := h.do("GET", "/metrics", "", "")
		r.wantStatus(t, http.StatusOK)
		want := `herald_http_requests_total{code="200",route="GET /v1/clouds/{cloud}/subscriptions"} 1`
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s:\n%s", want, r.body)
		}
	})
	t.Run("no registry answers 404", func(t *testing.T) {
		h := newHarness(t, func(c *api.Config) { c.Metrics = nil })
		h.do("GET", "/metrics", "", "").wantStatus(t, http.StatusNotFound)
	})
	t.Run("shared registry accepted", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		for range 2 {
			newHarness(t, func(c *api.Config) { c.Metrics = reg })
		}
	})
}

func TestRequestLog(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/v1/clouds/acme/subscriptions", acmeKey, subscriptionBody).wantStatus(t, http.StatusCreated)
	lines := h.logLines()
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1: %s", len(lines), h.logs)
	}
	l := lines[0]
	want := map[string]any{
		"level": "debug", "component": "api", "message": "request",
		"method": "POST", "route": "POST /v1/clouds/{cloud}/subscriptions", "status": float64(201), "cloud": "acme",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("log %s = %v, want %v", k, l[k], v)
		}
	}
	if _, ok := l["duration"]; !ok {
		t.Errorf("log lacks duration: %v", l)
	}
	if logs := h.logs.String(); strings.Contains(logs, acmeKey) || strings.Contains(logs, "panda") {
		t.Errorf("log carries the key or the body: %s", logs)
	}
}

func TestSubscriptionLifecycle(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/clouds/acme/subscriptions", acmeKey, subscriptionBody)
	r.wantStatus(t, http.StatusCreated)
	var s herald.Subscription
	r.into(t, &s)
	path := "/v1/clouds/acme/subscriptions/" + s.ID

	h.do("GET", path, acmeKey, "").wantStatus(t, http.StatusOK)
	h.do("PATCH", path, acmeKey, `{"method":"put"}`).wantStatus(t, http.StatusOK)
	var got herald.Subscription
	h.do("GET", path, acmeKey, "").into(t, &got)
	if got.Method != "PUT" {
		t.Errorf("method after patch = %q, want PUT", got.Method)
	}
	h.do("DELETE", path, acmeKey, "").wantStatus(t, http.StatusNoContent)
	h.do("GET", path, acmeKey, "").wantStatus(t, http.StatusNotFound)
	h.do("DELETE", path, acmeKey, "").wantStatus(t, http.StatusNotFound)

	var l struct{ Data []herald.Subscription }
	r = h.do("GET", "/v1/clouds/acme/subscriptions", acmeKey, "")
	r.into(t, &l)
	if l.Data == nil || len(l.Data) != 0 {
		t.Errorf("empty list = %s, want data: []", r.body)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := api.Config{AdminToken: "t", Subscriptions: newFakeSubscriptions(), Keys: newFakeKeys(), Credentials: newFakeCredentials(), Publisher: &fakePublisher{}, Deliveries: newFakeDeliveries()}
	tests := []struct {
		name    string
		change  func(*api.Config)
		wantErr bool
	}{
		{"complete config is valid", func(*api.Config) {}, false},
		{"missing admin token is refused", func(c *api.Config) { c.AdminToken = "" }, true},
		{"admin token with a space is refused", func(c *api.Config) { c.AdminToken = "a b" }, true},
		{"missing subscriptions is refused", func(c *api.Config) { c.Subscriptions = nil }, true},
		{"missing keys is refused", func(c *api.Config) { c.Keys = nil }, true},
		{"missing credentials is refused", func(c *api.Config) { c.Credentials = nil }, true},
		{"missing publisher is refused", func(c *api.Config) { c.Publisher = nil }, true},
		{"negative body limit is refused", func(c *api.Config) { c.MaxBodyBytes = -1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if _, nerr := api.New(c); (nerr != nil) != tt.wantErr {
				t.Fatalf("New() = %v, want error %v", nerr, tt.wantErr)
			}
		})
	}
}

// TestMinimalConfigServes builds the API from the required fields alone: a
// zero Logger, no Ready, no Metrics, the default body limit.
func TestMinimalConfigServes(t *testing.T) {
	a, err := api.New(api.Config{AdminToken: "t", Subscriptions: newFakeSubscriptions(), Keys: newFakeKeys(), Credentials: newFakeCredentials(), Publisher: &fakePublisher{}, Deliveries: newFakeDeliveries()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
}

// TestUnroutedAnswersNeedNoToken pins that 404 and 405 come before
// authentication: they depend on the path's shape alone.
func TestUnroutedAnswersNeedNoToken(t *testing.T) {
	h := newHarness(t)
	h.do("GET", "/v1/clouds/acme/nothing", "", "").wantStatus(t, http.StatusNotFound)
	h.do("PUT", "/v1/clouds/acme/subscriptions", "", "").wantStatus(t, http.StatusMethodNotAllowed)
}
