package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/natsserver"
)

// logRecord waits until the delivery log holds a record of delivery id in
// the wanted status and returns it.
func logRecord(t testing.TB, a *app.App, cloud, subID, id, status string) herald.Delivery {
	t.Helper()
	var rec herald.Delivery
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var err error
		rec, err = a.DeliveryLog().Get(context.Background(), cloud, subID, id)
		if err != nil {
			return err
		}
		if rec.Status != status {
			return fmt.Errorf("status %s (%d attempts), want %s", rec.Status, len(rec.Attempts), status)
		}
		return nil
	})
	return rec
}

func attemptHeaders(rs []received) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Header.Get("Herald-Attempt"))
	}
	return out
}

// TestLinearScheduleGivesUpIntoTheDeadLetterLog: max_retries 2 means three
// attempts, spaced 1 s then 2 s, then the delivery is failed and keeps
// every attempt.
func TestLinearScheduleGivesUpIntoTheDeadLetterLog(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	rc.setStatus(func(received) int { return http.StatusBadGateway })
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "1s", "max_retries": 2}})
	id, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	dlv := herald.DeliveryID("acme", id, subID)

	rec := logRecord(t, a, "acme", subID, dlv, herald.StatusFailed)
	got := rc.requests()
	if fmt.Sprint(attemptHeaders(got)) != "[1 2 3]" {
		t.Fatalf("attempt headers %v, want [1 2 3]", attemptHeaders(got))
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second} {
		gap := got[i+1].At.Sub(got[i].At)
		if gap < want-200*time.Millisecond || gap > want+1500*time.Millisecond {
			t.Errorf("retry %d came %s after attempt %d, want about %s", i+1, gap, i+1, want)
		}
	}
	if len(rec.Attempts) != 3 || rec.NextAttemptAt != nil || rec.Reason == "" {
		t.Fatalf("record %+v, want 3 attempts, no next attempt, a reason", rec)
	}
	for i, at := range rec.Attempts {
		if at.Number != i+1 || at.StatusCode != http.StatusBadGateway || at.DurationMS <= 0 || at.At.IsZero() {
			t.Errorf("attempt %d recorded as %+v", i+1, at)
		}
	}
	// Nothing more comes once it has failed.
	publishHTTP(t, a, "acme", map[string]any{"id": "marker", "type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	rc.waitN(t, 4, 10*time.Second)
	if n := len(rc.requests()); n != 4 {
		t.Errorf("%d requests after the delivery failed and one more event, want 4", n)
	}
}

// TestLongRetriesAreParkedAsSchedules: with a 1 s park threshold, a 2 s
// retry waits as a message schedule, comes back on time with the next
// attempt number, and succeeds.
func TestLongRetriesAreParkedAsSchedules(t *testing.T) {
	a := startApp(t, t.TempDir(), func(c *app.Config) { c.Dispatch.ParkAfter = time.Second })
	rc := newReceiver(t)
	rc.setStatus(func(r received) int {
		if r.Header.Get("Herald-Attempt") == "1" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "2s", "max_retries": 5}})
	id, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	got := rc.waitN(t, 2, 15*time.Second)
	if gap := got[1].At.Sub(got[0].At); gap < 1500*time.Millisecond || gap > 4*time.Second {
		t.Errorf("parked retry came %s after the first attempt, want about 2s (1 s schedule resolution)", gap)
	}
	if got[1].Header.Get("Herald-Attempt") != "2" || got[1].Header.Get("Webhook-Id") != got[0].Header.Get("Webhook-Id") {
		t.Errorf("parked retry carried attempt %q, id %q", got[1].Header.Get("Herald-Attempt"), got[1].Header.Get("Webhook-Id"))
	}
	rec := logRecord(t, a, "acme", subID, herald.DeliveryID("acme", id, subID), herald.StatusSucceeded)
	if len(rec.Attempts) != 2 {
		t.Errorf("record has %d attempts, want 2", len(rec.Attempts))
	}
	if v := counter(t, a, "herald_retries_parked_total"); v != 1 {
		t.Errorf("herald_retries_parked_total = %v, want 1", v)
	}
}

// TestRetryAfterIsHonoured: a 429 asking for 2 s delays the retry past the
// schedule's 1 s.
func TestRetryAfterIsHonoured(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	rc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		if r.Header.Get("Herald-Attempt") == "1" {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "1s", "max_retries": 3}})
	publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	got := rc.waitN(t, 2, 15*time.Second)
	if gap := got[1].At.Sub(got[0].At); gap < 1900*time.Millisecond {
		t.Errorf("retry came %s after a 429 with Retry-After: 2, want at least 2s", gap)
	}
}

// TestStaleProgressRetryIsSuperseded: a progress notification that failed
// is dropped at its retry once a newer progress of the same encoding has
// reached the endpoint.
func TestStaleProgressRetryIsSuperseded(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	rc.setStatus(func(r received) int {
		var body map[string]any
		_ = json.Unmarshal(r.Body, &body)
		if body["progress"] == float64(10) {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "2s", "max_retries": 3}})
	old, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-progress", "data": map[string]any{"encoding_id": "enc-1", "progress": 10}})
	rc.waitN(t, 1, 10*time.Second)
	publishHTTP(t, a, "acme", map[string]any{"type": "encoding-progress", "data": map[string]any{"encoding_id": "enc-1", "progress": 20}})
	publishHTTP(t, a, "acme", map[string]any{"type": "encoding-progress", "data": map[string]any{"encoding_id": "enc-2", "progress": 5}})
	rec := logRecord(t, a, "acme", subID, herald.DeliveryID("acme", old, subID), herald.StatusSuperseded)
	if len(rec.Attempts) != 1 {
		t.Errorf("superseded delivery has %d attempts, want the 1 that failed", len(rec.Attempts))
	}
	for _, r := range rc.requests() {
		var body map[string]any
		_ = json.Unmarshal(r.Body, &body)
		if body["progress"] == float64(10) && r.Header.Get("Herald-Attempt") != "1" {
			t.Errorf("the stale progress was retried (attempt %s)", r.Header.Get("Herald-Attempt"))
		}
	}
}

// TestRetryWaitingOnNakSurvivesNATSRestart: an external NATS server is
// restarted (same store) while a retry waits on its NAK delay; the retry
// still happens, once, with the next attempt number.
func TestRetryWaitingOnNakSurvivesNATSRestart(t *testing.T) {
	store := filepath.Join(t.TempDir(), "js")
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:0", StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().String()
	a := startApp(t, t.TempDir(), func(c *app.Config) { c.NATSURL = ns.ClientURL() })
	rc := newReceiver(t)
	rc.setStatus(func(r received) int {
		if r.Header.Get("Herald-Attempt") == "1" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	subID := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "4s", "max_retries": 5}})
	id, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	first := rc.waitN(t, 1, 10*time.Second)[0]
	logRecord(t, a, "acme", subID, herald.DeliveryID("acme", id, subID), herald.StatusPending)

	ns.Shutdown()
	ns.WaitForShutdown()
	ns2, err := natsserver.Start(natsserver.Config{Listen: addr, StoreDir: store})
	if err != nil {
		t.Fatalf("restart NATS on %s: %v", addr, err)
	}
	t.Cleanup(func() { ns2.Shutdown(); ns2.WaitForShutdown() })

	got := rc.waitN(t, 2, 30*time.Second)
	gap := got[1].At.Sub(first.At)
	if got[1].Header.Get("Herald-Attempt") != "2" {
		t.Errorf("retry after the restart carried attempt %q, want 2", got[1].Header.Get("Herald-Attempt"))
	}
	// The NAK delay is 4 s; after a graceful restart JetStream honours it
	// to about a second. It must not come back at once, nor be lost.
	if gap < 3*time.Second || gap > 20*time.Second {
		t.Errorf("retry came %s after the first attempt, want about 4s", gap)
	}
	logRecord(t, a, "acme", subID, herald.DeliveryID("acme", id, subID), herald.StatusSucceeded)
	rc.waitN(t, 2, time.Second)
	if n := len(rc.requests()); n != 2 {
		t.Errorf("%d requests, want 2: the retry must happen once", n)
	}
	t.Logf("retry came %s after the first attempt, across a NATS restart", gap)
}
