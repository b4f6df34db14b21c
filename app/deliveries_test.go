package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

// TestDeliveryLogAndRedelivery: a delivery that gives up is listed as
// failed with every attempt; redelivered by hand, it gets a fresh schedule,
// its attempts are appended, and it succeeds.
func TestDeliveryLogAndRedelivery(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	var healthy atomic.Bool
	rc.setStatus(func(received) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "1s", "max_retries": 1}})
	evID, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	id := herald.DeliveryID("acme", evID, subID)
	logRecord(t, a, "acme", subID, id, herald.StatusFailed)

	var page herald.DeliveryPage
	if code := call(t, a, "GET", "/v1/clouds/acme/deliveries?status=failed", adminToken, nil, &page); code != http.StatusOK {
		t.Fatalf("list failed deliveries: %d", code)
	}
	if len(page.Deliveries) != 1 || page.Deliveries[0].ID != id {
		t.Fatalf("failed deliveries %+v, want just %s", page.Deliveries, id)
	}
	d := page.Deliveries[0]
	if len(d.Attempts) != 2 || d.Attempts[0].StatusCode != 503 || d.Reason == "" || d.EventID != evID || d.SubscriptionID != subID {
		t.Errorf("dead letter %+v", d)
	}
	var byEvent herald.DeliveryPage
	call(t, a, "GET", "/v1/clouds/acme/deliveries?event_id="+evID, adminToken, nil, &byEvent)
	if len(byEvent.Deliveries) != 1 || byEvent.Deliveries[0].ID != id {
		t.Errorf("deliveries of event %s: %+v", evID, byEvent.Deliveries)
	}

	healthy.Store(true)
	var again herald.Delivery
	if code := call(t, a, "POST", "/v1/clouds/acme/deliveries/"+id+"/redeliver", adminToken, nil, &again); code != http.StatusAccepted {
		t.Fatalf("redeliver: %d", code)
	}
	if again.Status != herald.StatusPending {
		t.Errorf("redelivered delivery is %s, want pending", again.Status)
	}
	rec := logRecord(t, a, "acme", subID, id, herald.StatusSucceeded)
	if len(rec.Attempts) != 3 || rec.ScheduleBase != 2 {
		t.Errorf("after redelivery: %d attempts, schedule base %d; want 3 and 2", len(rec.Attempts), rec.ScheduleBase)
	}
	got := rc.requests()
	if last := got[len(got)-1]; last.Header.Get("Herald-Attempt") != "3" || last.Header.Get("Webhook-Id") != id {
		t.Errorf("redelivery sent attempt %q with id %q", last.Header.Get("Herald-Attempt"), last.Header.Get("Webhook-Id"))
	}
}

// TestPendingDeliveryIsNotRedelivered: a delivery waiting for its retry
// is already on its way; redelivering it answers 409 and sends nothing.
func TestPendingDeliveryIsNotRedelivered(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	rc.setStatus(func(received) int { return http.StatusInternalServerError })
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "1h", "max_retries": 1}})
	evID, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	id := herald.DeliveryID("acme", evID, subID)
	rec := logRecord(t, a, "acme", subID, id, herald.StatusPending)
	if rec.NextAttemptAt == nil || time.Until(*rec.NextAttemptAt) < 59*time.Minute {
		t.Errorf("next attempt at %v, want in an hour", rec.NextAttemptAt)
	}
	out := mustCall(t, a, "POST", "/v1/clouds/acme/deliveries/"+id+"/redeliver", adminToken, nil, http.StatusConflict)
	if msg, _ := out["error"].(string); !strings.Contains(msg, "pending") || !strings.Contains(msg, "next attempt") {
		t.Errorf("409 says %q, want why (pending) and when", msg)
	}
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests, want only the first attempt", n)
	}
}

// TestDeliveryLogPages lists a cloud's log a page at a time.
func TestDeliveryLogPages(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
	for i := range 5 {
		publishHTTP(t, a, "acme", map[string]any{"id": fmt.Sprintf("p-%d", i), "type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	}
	for i := range 5 {
		logRecord(t, a, "acme", subID, herald.DeliveryID("acme", fmt.Sprintf("p-%d", i), subID), herald.StatusSucceeded)
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		var page herald.DeliveryPage
		path := "/v1/clouds/acme/deliveries?limit=2&subscription_id=" + subID
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if code := call(t, a, "GET", path, adminToken, nil, &page); code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		pages++
		for _, d := range page.Deliveries {
			if seen[d.ID] {
				t.Errorf("delivery %s on two pages", d.ID)
			}
			seen[d.ID] = true
		}
		if page.Cursor == "" {
			break
		}
		if len(page.Deliveries) != 2 || pages > 5 {
			t.Fatalf("page %d has %d deliveries and a cursor", pages, len(page.Deliveries))
		}
		cursor = page.Cursor
	}
	if len(seen) != 5 || pages != 3 {
		t.Errorf("%d deliveries over %d pages, want 5 over 3", len(seen), pages)
	}
}

// TestTestNotification sends a test notification through the API and
// answers with the attempt.
func TestTestNotification(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL + "/t", "events": []string{"state_changed"}, "format": "form"})
	var out struct {
		Succeeded bool           `json:"succeeded"`
		Attempt   herald.Attempt `json:"attempt"`
		Event     herald.Event   `json:"event"`
	}
	if code := call(t, a, "POST", "/v1/clouds/acme/subscriptions/"+subID+"/test", adminToken, nil, &out); code != http.StatusOK {
		t.Fatalf("test: %d", code)
	}
	if !out.Succeeded || out.Attempt.StatusCode != 200 || out.Event.Type != "state_changed" {
		t.Errorf("test answer %+v", out)
	}
	r := rc.waitN(t, 1, time.Second)[0]
	if r.Header.Get("Herald-Event") != "state_changed" || r.Path != "/t" {
		t.Errorf("test request %s with event %q", r.Path, r.Header.Get("Herald-Event"))
	}
	var example map[string]any
	if err := json.Unmarshal(out.Event.Data, &example); err != nil || example["job_id"] == nil {
		t.Errorf("test event data %s is not the type's example", out.Event.Data)
	}

	rc.setStatus(func(received) int { return http.StatusTeapot })
	call(t, a, "POST", "/v1/clouds/acme/subscriptions/"+subID+"/test", adminToken, nil, &out)
	if out.Succeeded || out.Attempt.StatusCode != http.StatusTeapot {
		t.Errorf("a 418 reported as %+v", out)
	}
}
