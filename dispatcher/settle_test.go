package dispatcher

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/deliverylog"
	"github.com/herald-webhooks/herald/natsserver/natstest"
	"github.com/herald-webhooks/herald/streams"
)

// fakeMsg is a delivery message that records how it was settled.
type fakeMsg struct {
	data   []byte
	meta   jetstream.MsgMetadata
	mu     sync.Mutex
	action string
	delay  time.Duration
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) { return &m.meta, nil }
func (m *fakeMsg) Data() []byte                              { return m.data }
func (m *fakeMsg) Headers() nats.Header                      { return nil }
func (m *fakeMsg) Subject() string                           { return "herald.deliveries.acme.sub_X" }
func (m *fakeMsg) Reply() string                             { return "" }
func (m *fakeMsg) Ack() error                                { return m.set("ack", 0) }
func (m *fakeMsg) DoubleAck(context.Context) error           { return m.set("ack", 0) }
func (m *fakeMsg) Nak() error                                { return m.set("nak", 0) }
func (m *fakeMsg) NakWithDelay(d time.Duration) error        { return m.set("nak", d) }
func (m *fakeMsg) InProgress() error                         { return nil }
func (m *fakeMsg) Term() error                               { return m.set("term", 0) }
func (m *fakeMsg) TermWithReason(string) error               { return m.set("term", 0) }
func (m *fakeMsg) set(a string, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.action != "" {
		panic("settled twice: " + m.action + " then " + a)
	}
	m.action, m.delay = a, d
	return nil
}

// fakeMatcher serves one subscription (or none).
type fakeMatcher struct{ sub *herald.Subscription }

func (f fakeMatcher) Match(string, string, json.RawMessage, []*herald.Subscription) []*herald.Subscription {
	return nil
}
func (f fakeMatcher) Subscription(context.Context, string, string) (*herald.Subscription, error) {
	if f.sub == nil {
		return nil, herald.ErrNotFound
	}
	return f.sub, nil
}

type noSchemas struct{}

func (noSchemas) Validate(string, json.RawMessage) error { return nil }
func (noSchemas) Digest(string) string                   { return "" }

// testJetStream starts a private JetStream server with herald's streams.
func testJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, _ := natstest.JetStream(t)
	if err := streams.Ensure(context.Background(), js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func TestSettle(t *testing.T) {
	js := testJetStream(t)
	dlog, err := deliverylog.Open(context.Background(), deliverylog.Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	answer := map[string]func(w http.ResponseWriter){}
	var amu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		amu.Lock()
		f := answer[r.URL.Path]
		amu.Unlock()
		f(w)
	}))
	defer srv.Close()
	status := func(code int) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) { w.WriteHeader(code) }
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String() + "/"
	ln.Close()

	linear := func(retries int) herald.RetryPolicy {
		return herald.RetryPolicy{Strategy: "linear", MaxRetries: &retries}.WithDefaults()
	}
	for _, c := range []struct {
		name      string
		answer    func(http.ResponseWriter)
		url       string // default: the test server at /<name>
		retry     herald.RetryPolicy
		noSub     bool
		disabled  bool
		busy      bool
		wantDo    string // ack, nak, term
		wantDelay time.Duration
		wantState string // the log record's status; "" for no record
	}{
		{name: "200 acks", answer: status(200), wantDo: "ack", wantState: herald.StatusSucceeded},
		{name: "204 acks", answer: status(204), wantDo: "ack", wantState: herald.StatusSucceeded},
		{name: "redirect is a failure, not followed", answer: func(w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		}, wantDo: "nak", wantDelay: 5 * time.Second, wantState: herald.StatusPending},
		{name: "400 retries", answer: status(400), wantDo: "nak", wantDelay: 5 * time.Second, wantState: herald.StatusPending},
		{name: "500 retries", answer: status(500), wantDo: "nak", wantDelay: 5 * time.Second, wantState: herald.StatusPending},
		{name: "429 with Retry-After waits as asked", answer: func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "17")
			w.WriteHeader(429)
		}, wantDo: "nak", wantDelay: 17 * time.Second, wantState: herald.StatusPending},
		{name: "connection refused retries", url: refused, wantDo: "nak", wantDelay: 5 * time.Second, wantState: herald.StatusPending},
		{name: "last retry spent terminates as failed", answer: status(500), retry: linear(0), wantDo: "term", wantState: herald.StatusFailed},
		{name: "deleted subscription is dropped", noSub: true, wantDo: "term"},
		{name: "disabled subscription is dropped", disabled: true, answer: status(200), wantDo: "term"},
		{name: "busy endpoint defers without an attempt", busy: true, answer: status(200), wantDo: "nak"},
	} {
		t.Run(c.name, func(t *testing.T) {
			amu.Lock()
			answer["/"+url2id(c.name)] = c.answer
			amu.Unlock()
			u := srv.URL + "/" + url2id(c.name)
			if c.url != "" {
				u = c.url
			}
			retry := c.retry
			if retry.Strategy == "" {
				retry = herald.RetryPolicy{Strategy: "linear"}.WithDefaults()
			}
			sub := &herald.Subscription{ID: "sub_" + url2id(c.name), Cloud: "acme", URL: u, Events: []string{"*"},
				Format: "json", Method: "POST", Retry: retry, Enabled: !c.disabled}
			m := fakeMatcher{sub: sub}
			if c.noSub {
				m.sub = nil
			}
			d, err := New(Config{JetStream: js, Matcher: m, Schemas: noSchemas{}, Log: dlog, AllowPrivateTargets: true, EndpointConcurrency: 1})
			if err != nil {
				t.Fatal(err)
			}
			if c.busy {
				release, _ := d.endpoints.acquire(u)
				defer release(0)
			}
			ev := herald.Event{ID: "e-" + url2id(c.name), Cloud: "acme", Type: "encoding-complete", Data: json.RawMessage(`{"encoding_id":"x"}`), Sequence: 9}
			dl := delivery{ID: herald.DeliveryID("acme", ev.ID, sub.ID), SubscriptionID: sub.ID, Event: ev}
			body, _ := json.Marshal(dl)
			msg := &fakeMsg{data: body, meta: jetstream.MsgMetadata{NumDelivered: 1, Timestamp: time.Now()}}
			d.deliver(context.Background(), msg)

			if msg.action != c.wantDo {
				t.Fatalf("settled with %q, want %q", msg.action, c.wantDo)
			}
			if c.wantDelay != 0 && msg.delay != c.wantDelay {
				t.Errorf("delay %s, want %s", msg.delay, c.wantDelay)
			}
			if c.busy && (msg.delay < 100*time.Millisecond || msg.delay > 15*time.Second) {
				t.Errorf("busy delay %s, want between 100ms and the attempt timeout", msg.delay)
			}
			rec, err := dlog.Lookup(context.Background(), "acme", sub.ID, dl.ID)
			if c.wantState == "" {
				if err == nil {
					t.Errorf("a record was written: %+v", rec)
				}
				return
			}
			// Successes are written without waiting for the store: poll.
			for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				rec, err = dlog.Lookup(context.Background(), "acme", sub.ID, dl.ID)
			}
			if err != nil {
				t.Fatalf("no record: %v", err)
			}
			if rec.Status != c.wantState || len(rec.Attempts) != 1 {
				t.Errorf("record %s with %d attempts, want %s with 1", rec.Status, len(rec.Attempts), c.wantState)
			}
			if c.wantState == herald.StatusPending && (rec.NextAttemptAt == nil || rec.NextAttemptAt.Before(time.Now())) {
				t.Errorf("pending record's next attempt %v is not in the future", rec.NextAttemptAt)
			}
		})
	}
}

// url2id turns a case name into letters only.
func url2id(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			out = append(out, c)
		}
	}
	return string(out)
}
