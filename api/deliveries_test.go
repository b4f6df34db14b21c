package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

// fakeDeliveries is an in-memory delivery log.
type fakeDeliveries struct {
	mu          sync.Mutex
	byID        map[string]herald.Delivery
	redelivered []string
	tested      []string
}

func newFakeDeliveries() *fakeDeliveries {
	return &fakeDeliveries{byID: map[string]herald.Delivery{}}
}

// seed stores a delivery of cloud's subscription subID and returns its id.
func (f *fakeDeliveries) seed(cloud, subID, eventID, status string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := herald.DeliveryID(cloud, eventID, subID)
	f.byID[id] = herald.Delivery{ID: id, Cloud: cloud, SubscriptionID: subID, EventID: eventID, EventType: "video-created",
		Status: status, Attempts: []herald.Attempt{{Number: 1, At: time.Now(), StatusCode: 500}}}
	return id
}

func (f *fakeDeliveries) List(_ context.Context, cloud string, flt herald.DeliveryFilter) (herald.DeliveryPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	page := herald.DeliveryPage{Deliveries: []herald.Delivery{}}
	for _, d := range f.byID {
		if d.Cloud == cloud && (flt.SubscriptionID == "" || d.SubscriptionID == flt.SubscriptionID) && (flt.Status == "" || d.Status == flt.Status) {
			page.Deliveries = append(page.Deliveries, d)
		}
	}
	return page, nil
}

func (f *fakeDeliveries) Delivery(_ context.Context, cloud, id string) (herald.Delivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.byID[id]
	if !ok || d.Cloud != cloud {
		return herald.Delivery{}, herald.ErrNotFound
	}
	return d, nil
}

func (f *fakeDeliveries) DeliveryOf(ctx context.Context, cloud, subID, id string) (herald.Delivery, error) {
	d, err := f.Delivery(ctx, cloud, id)
	if err == nil && d.SubscriptionID != subID {
		return herald.Delivery{}, herald.ErrNotFound
	}
	return d, err
}

func (f *fakeDeliveries) Redeliver(_ context.Context, cloud, id string) (herald.Delivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.byID[id]
	if !ok || d.Cloud != cloud {
		return herald.Delivery{}, herald.ErrNotFound
	}
	if d.Status == herald.StatusPending {
		return d, fmt.Errorf("%w: the delivery is pending", herald.ErrConflict)
	}
	d.Status = herald.StatusPending
	f.byID[id] = d
	f.redelivered = append(f.redelivered, id)
	return d, nil
}

func (f *fakeDeliveries) Test(_ context.Context, sub herald.Subscription) (herald.Event, herald.Attempt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tested = append(f.tested, sub.ID)
	return herald.Event{ID: "test_X", Cloud: sub.Cloud, Type: "video-created"}, herald.Attempt{Number: 1, StatusCode: 204}, nil
}

func TestListDeliveries(t *testing.T) {
	h := newHarness(t)
	sub := h.seed("acme")
	other := h.seed("acme")
	failed := h.dlv.seed("acme", sub, "evt-1", herald.StatusFailed)
	h.dlv.seed("acme", sub, "evt-2", herald.StatusSucceeded)
	h.dlv.seed("acme", other, "evt-1", herald.StatusSucceeded)
	h.dlv.seed("globex", "sub_G", "evt-1", herald.StatusFailed)

	for _, c := range []struct {
		name  string
		query string
		want  int
	}{
		{"the whole cloud", "", 3},
		{"one subscription", "?subscription_id=" + sub, 2},
		{"one status", "?status=failed", 1},
		{"one event across subscriptions", "?event_id=evt-1", 2},
		{"one event of one subscription", "?event_id=evt-1&subscription_id=" + sub, 1},
		{"one event and a status", "?event_id=evt-1&status=failed", 1},
		{"an event with no deliveries", "?event_id=nothing", 0},
	} {
		t.Run(c.name+" lists "+fmt.Sprint(c.want), func(t *testing.T) {
			r := h.do("GET", "/v1/clouds/acme/deliveries"+c.query, acmeKey, "")
			r.wantStatus(t, http.StatusOK)
			var page herald.DeliveryPage
			r.decode(t, &page)
			if len(page.Deliveries) != c.want {
				t.Errorf("%d deliveries, want %d: %s", len(page.Deliveries), c.want, r.body)
			}
		})
	}
	t.Run("one delivery reads back", func(t *testing.T) {
		r := h.do("GET", "/v1/clouds/acme/deliveries/"+failed, acmeKey, "")
		r.wantStatus(t, http.StatusOK)
		var d herald.Delivery
		r.decode(t, &d)
		if d.ID != failed || len(d.Attempts) != 1 {
			t.Errorf("read %+v", d)
		}
	})
}

func TestListDeliveriesRejectsBadFilters(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct{ name, query, field string }{
		{"unknown parameter", "?colour=red", "colour"},
		{"repeated parameter", "?status=failed&status=pending", "status"},
		{"unknown status", "?status=lost", "status"},
		{"limit not a number", "?limit=many", "limit"},
		{"limit too large", "?limit=501", "limit"},
		{"limit zero", "?limit=0", "limit"},
		{"bad subscription id", "?subscription_id=../x", "subscription_id"},
		{"bad event id", "?event_id=a%20b", "event_id"},
		{"cursor with an event", "?event_id=e&cursor=5", "cursor"},
	} {
		t.Run(c.name+" names "+c.field, func(t *testing.T) {
			r := h.do("GET", "/v1/clouds/acme/deliveries"+c.query, acmeKey, "")
			r.wantStatus(t, http.StatusUnprocessableEntity)
			if _, field := r.errorOf(t); field != c.field {
				t.Errorf("field %q, want %q", field, c.field)
			}
		})
	}
}

func TestRedeliver(t *testing.T) {
	h := newHarness(t)
	sub := h.seed("acme")
	failed := h.dlv.seed("acme", sub, "evt-1", herald.StatusFailed)
	pending := h.dlv.seed("acme", sub, "evt-2", herald.StatusPending)
	gone := h.dlv.seed("acme", "sub_DELETED", "evt-3", herald.StatusFailed)

	t.Run("a failed delivery is queued again", func(t *testing.T) {
		r := h.do("POST", "/v1/clouds/acme/deliveries/"+failed+"/redeliver", acmeKey, "")
		r.wantStatus(t, http.StatusAccepted)
		var d herald.Delivery
		r.decode(t, &d)
		if d.Status != herald.StatusPending || len(h.dlv.redelivered) != 1 {
			t.Errorf("answer %+v, redelivered %v", d, h.dlv.redelivered)
		}
	})
	t.Run("a pending delivery answers 409", func(t *testing.T) {
		h.do("POST", "/v1/clouds/acme/deliveries/"+pending+"/redeliver", acmeKey, "").wantStatus(t, http.StatusConflict)
	})
	t.Run("a delivery of a deleted subscription answers 409", func(t *testing.T) {
		h.do("POST", "/v1/clouds/acme/deliveries/"+gone+"/redeliver", acmeKey, "").wantStatus(t, http.StatusConflict)
	})
	t.Run("another cloud's delivery answers 404", func(t *testing.T) {
		h.do("POST", "/v1/clouds/acme/deliveries/"+failed+"/redeliver", globexKey, "").wantStatus(t, http.StatusNotFound)
	})
	t.Run("a body with fields answers 422", func(t *testing.T) {
		h.do("POST", "/v1/clouds/acme/deliveries/"+failed+"/redeliver", acmeKey, `{"now":true}`).wantStatus(t, http.StatusUnprocessableEntity)
	})
}

func TestTestSubscription(t *testing.T) {
	h := newHarness(t)
	sub := h.seed("acme")
	r := h.do("POST", "/v1/clouds/acme/subscriptions/"+sub+"/test", acmeKey, "")
	r.wantStatus(t, http.StatusOK)
	var out struct {
		Succeeded bool           `json:"succeeded"`
		Attempt   herald.Attempt `json:"attempt"`
		Event     herald.Event   `json:"event"`
	}
	r.decode(t, &out)
	if !out.Succeeded || out.Attempt.StatusCode != 204 || out.Event.Type != "video-created" {
		t.Errorf("answer %s", r.body)
	}
	h.do("POST", "/v1/clouds/acme/subscriptions/sub_NOPE/test", acmeKey, "").wantStatus(t, http.StatusNotFound)
}

// decode reads the answer's JSON body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %s", r.status, r.body)
	}
}
