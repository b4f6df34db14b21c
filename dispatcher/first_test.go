package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/deliverylog"
	"github.com/herald-webhooks/herald/streams"
)

// oneMatch matches every event to its subscription.
type oneMatch struct{ fakeMatcher }

func (m oneMatch) Match(_, _ string, _ json.RawMessage, dst []*herald.Subscription) []*herald.Subscription {
	return append(dst, m.sub)
}

// eventMsg is an event on the events stream.
type eventMsg struct{ fakeMsg }

func (m *eventMsg) Subject() string { return "herald.events.acme.video-created" }

func (m *fakeMsg) settled() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.action
}

// TestFanoutFirstAttempt: fan-out makes the first attempt itself when the
// endpoint is known fast; a failed first attempt becomes a recorded retry
// that the deliver stage holds until its time; a replayed event and an
// endpoint not known fast go through the deliveries stream.
func TestFanoutFirstAttempt(t *testing.T) {
	for _, c := range []struct {
		name       string
		code       int
		notFast    bool
		replay     bool
		wantHits   int32
		wantQueued bool   // a delivery message was published
		wantCheck  bool   // … marked to be checked against the log
		wantState  string // the log record's status; "" for none
	}{
		{name: "success is not queued", code: 200, wantHits: 1, wantState: herald.StatusSucceeded},
		{name: "failure queues its retry", code: 500, wantHits: 1, wantQueued: true, wantCheck: true, wantState: herald.StatusPending},
		{name: "unknown endpoint is queued", code: 200, notFast: true, wantQueued: true},
		{name: "replayed event is queued and checked", code: 200, replay: true, wantQueued: true, wantCheck: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			js := testJetStream(t)
			dlog, err := deliverylog.Open(context.Background(), deliverylog.Config{JetStream: js})
			if err != nil {
				t.Fatal(err)
			}
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(c.code)
			}))
			defer srv.Close()
			sub := &herald.Subscription{ID: "sub_first", Cloud: "acme", URL: srv.URL + "/hook", Events: []string{"*"},
				Format: "json", Method: "POST", Retry: herald.RetryPolicy{Strategy: "linear"}.WithDefaults(), Enabled: true}
			d, err := New(Config{JetStream: js, Matcher: oneMatch{fakeMatcher{sub: sub}}, Schemas: noSchemas{}, Log: dlog, AllowPrivateTargets: true})
			if err != nil {
				t.Fatal(err)
			}
			if !c.notFast {
				release, _ := d.endpoints.acquire(sub.URL)
				release(2 * time.Millisecond) // known to answer in 2 ms
			}
			delivered := uint64(1)
			if c.replay {
				delivered = 2
			}
			msg := &eventMsg{fakeMsg{
				data: []byte(`{"id":"ev1","occurred_at":"2026-11-23T10:00:00Z","data":{"video_id":"v1","status":"success"}}`),
				meta: jetstream.MsgMetadata{NumDelivered: delivered, Sequence: jetstream.SequencePair{Stream: 7}},
			}}
			d.fanout(context.Background(), msg)
			for deadline := time.Now().Add(10 * time.Second); msg.settled() == "" && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if got := msg.settled(); got != "ack" {
				t.Fatalf("event settled with %q, want ack", got)
			}
			if got := hits.Load(); got != c.wantHits {
				t.Errorf("endpoint got %d requests, want %d", got, c.wantHits)
			}

			id := herald.DeliveryID("acme", "ev1", sub.ID)
			st, err := js.Stream(context.Background(), streams.Deliveries)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := st.GetLastMsgForSubject(context.Background(), deliverySubject("acme", sub.ID))
			if !c.wantQueued {
				if err == nil {
					t.Fatalf("a delivery message was published: %s", raw.Data)
				}
			} else {
				if err != nil {
					t.Fatalf("no delivery message: %v", err)
				}
				var dl delivery
				if err := json.Unmarshal(raw.Data, &dl); err != nil || dl.ID != id || dl.Event.Sequence != 7 {
					t.Fatalf("delivery message %s (%v)", raw.Data, err)
				}
				if dl.Retry != c.wantCheck {
					t.Errorf("delivery message retry=%v, want %v", dl.Retry, c.wantCheck)
				}
			}

			rec, err := dlog.Lookup(context.Background(), "acme", sub.ID, id)
			for deadline := time.Now().Add(5 * time.Second); c.wantState != "" && err != nil && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond) // successes are logged without waiting
				rec, err = dlog.Lookup(context.Background(), "acme", sub.ID, id)
			}
			switch {
			case c.wantState == "" && !errors.Is(err, herald.ErrNotFound):
				t.Fatalf("record %+v (%v), want none", rec, err)
			case c.wantState == "":
				return
			case err != nil:
				t.Fatalf("no record: %v", err)
			case rec.Status != c.wantState || len(rec.Attempts) != 1 || rec.EventSequence != 7:
				t.Fatalf("record %s with %d attempts, event sequence %d; want %s with 1, 7", rec.Status, len(rec.Attempts), rec.EventSequence, c.wantState)
			}
			if c.wantState != herald.StatusPending {
				return
			}
			// The retry's message arrives at once; the deliver stage holds
			// it until the time the log gives, without an attempt.
			retry := &fakeMsg{data: raw.Data, meta: jetstream.MsgMetadata{NumDelivered: 1}}
			d.deliver(context.Background(), retry)
			wait := time.Until(*rec.NextAttemptAt)
			if retry.settled() != "nak" || retry.delay < wait-time.Second || retry.delay > wait+time.Second {
				t.Errorf("early retry settled with %q after %s, want nak after about %s", retry.settled(), retry.delay, wait)
			}
			if got := hits.Load(); got != 1 {
				t.Errorf("endpoint got %d requests, want 1: the retry came early", got)
			}
		})
	}
}
