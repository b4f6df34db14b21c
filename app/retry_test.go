package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/natsserver"
	"github.com/herald-webhooks/herald/streams"
)

// logRecord waits until the delivery log holds a record of delivery id in
// the wanted status and returns it.
func logRecord(t testing.TB, a *app.App, cloud, subID, id, status string) herald.Delivery {
	t.Helper()
	var rec herald.Delivery
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var err error
		rec, err = a.DeliveryLog().Lookup(context.Background(), cloud, subID, id)
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
	a := startApp(t, t.TempDir(), func(c *app.Config) {
		c.Dispatch.ParkAfter = time.Second
		c.Dispatch.BacklogRefresh = 100 * time.Millisecond
	})
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
	// The retry came due: the subscription's parked counter is back to 0
	// (it was 1: it has a value at all only because the park counted).
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st, err := a.JetStream().Stream(context.Background(), streams.Backlog)
		if err != nil {
			return err
		}
		m, err := st.GetLastMsgForSubject(context.Background(), herald.BacklogSubjectPrefix+"acme."+subID)
		if err != nil {
			return err
		}
		if string(m.Data) != `{"val":"0"}` {
			return fmt.Errorf("parked counter %s, want 0", m.Data)
		}
		return nil
	})
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

// TestRetryBacklogMetric: herald_retry_backlog counts each subscription's
// retries where they wait: parked as schedules, or held on the consumer.
func TestRetryBacklogMetric(t *testing.T) {
	a := startApp(t, t.TempDir(), func(c *app.Config) { c.Dispatch.BacklogRefresh = 100 * time.Millisecond })
	rc := newReceiver(t)
	rc.setStatus(func(received) int { return http.StatusInternalServerError })
	long := subscribe(t, a, "acme", map[string]any{"url": rc.URL + "/long", "events": []string{"encoding-complete"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "1h", "max_retries": 3}})
	short := subscribe(t, a, "acme", map[string]any{"url": rc.URL + "/short", "events": []string{"encoding-progress"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "30s", "max_retries": 3}})
	for i := range 3 {
		publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": fmt.Sprint(i)}})
	}
	for i := range 2 {
		publishHTTP(t, a, "acme", map[string]any{"type": "encoding-progress", "data": map[string]any{"encoding_id": fmt.Sprint(i), "progress": 1}})
	}
	checkFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		p := gauge(t, a, "herald_retry_backlog", map[string]string{"subscription": long, "where": "parked"})
		h := gauge(t, a, "herald_retry_backlog", map[string]string{"subscription": short, "where": "consumer"})
		if p != 3 || h != 2 {
			return fmt.Errorf("backlog: %v parked for %s (want 3), %v held for %s (want 2)", p, long, h, short)
		}
		return nil
	})
}

// TestRestartKeepsTheWindowAndParkedRetries stops herald (server and
// dispatcher) while one delivery is midway through a 4 s exponential window
// and another waits parked, and starts it again on the same data: the first
// still gives up 4 s after its first attempt, not 4 s after the restart;
// the parked retry still comes, as attempt 2.
func TestRestartKeepsTheWindowAndParkedRetries(t *testing.T) {
	dir := t.TempDir()
	fast := func(c *app.Config) { c.Dispatch.ParkAfter = time.Second }
	a := startApp(t, dir, fast)
	rc := newReceiver(t)
	var recovered atomic.Bool
	rc.setStatus(func(r received) int {
		if r.Path == "/parked" && recovered.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	windowSub := subscribe(t, a, "acme", map[string]any{"url": rc.URL + "/window", "events": []string{"encoding-complete"},
		"retry": map[string]any{"strategy": "exponential", "initial_delay": "1s", "max_delay": "1s", "window": "4s"}})
	parkedSub := subscribe(t, a, "acme", map[string]any{"url": rc.URL + "/parked", "events": []string{"encoding-progress"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "3s", "max_retries": 2}})
	w, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "w"}})
	p, _ := publishHTTP(t, a, "acme", map[string]any{"type": "encoding-progress", "data": map[string]any{"encoding_id": "p", "progress": 1}})
	wID, pID := herald.DeliveryID("acme", w, windowSub), herald.DeliveryID("acme", p, parkedSub)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		rec, err := a.DeliveryLog().Lookup(context.Background(), "acme", windowSub, wID)
		if err != nil || len(rec.Attempts) < 2 {
			return fmt.Errorf("window delivery not at attempt 2 yet")
		}
		if _, err := a.DeliveryLog().Lookup(context.Background(), "acme", parkedSub, pID); err != nil {
			return err
		}
		return nil
	})
	a.Stop()
	recovered.Store(true)
	b := startApp(t, dir, fast)

	rec := logRecord(t, b, "acme", windowSub, wID, herald.StatusFailed)
	first, last := rec.Attempts[0].At, rec.Attempts[len(rec.Attempts)-1].At
	// The window runs from the first attempt, before the restart and after.
	if d := rec.ScheduleStart.Sub(first); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("the window starts at %s, %s after the first attempt: it restarted with herald", rec.ScheduleStart, d)
	}
	// The last attempt was planned within 4 s of the first; parked retries
	// come at the next whole second, so it may be up to 1 s late.
	if span := last.Sub(first); span > 5*time.Second+500*time.Millisecond {
		t.Errorf("attempts spanned %s (%d attempts): the 4 s window restarted with herald", span, len(rec.Attempts))
	}
	if n := len(rec.Attempts); n < 3 || n > 6 {
		t.Errorf("%d attempts in a 4 s window of 1 s delays", n)
	}
	for i, at := range rec.Attempts {
		if at.Number != i+1 {
			t.Errorf("attempt %d is numbered %d", i+1, at.Number)
		}
	}
	prec := logRecord(t, b, "acme", parkedSub, pID, herald.StatusSucceeded)
	if len(prec.Attempts) != 2 {
		t.Errorf("parked delivery ended with %d attempts, want 2", len(prec.Attempts))
	}
}
