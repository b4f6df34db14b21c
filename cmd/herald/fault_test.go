package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/deliverylog"
)

// TestKilledDispatcherKeepsTheAttemptCount: a `herald dispatch` process is
// SIGKILLed while a delivery waits for its retry. The dispatcher started in
// its place makes the retry as attempt 2, not 1, and the delivery still
// gives up after max_retries in all (3 attempts), not 3 more.
func TestKilledDispatcherKeepsTheAttemptCount(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	var mu sync.Mutex
	var attempts []string
	var times []time.Time
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts = append(attempts, r.Header.Get("Herald-Attempt"))
		times = append(times, time.Now())
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer rc.Close()
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), attempts...) }

	dir := t.TempDir()
	natsURL, apiURL := startAPIOnly(t, dir)
	dispatchEnv := dispatchEnvFor(natsURL)
	d1 := startHerald(t, dispatchEnv, "dispatch")
	d1.waitLog(t, "dispatcher running")

	subID := apiPost(t, apiURL, "/v1/clouds/acme/subscriptions",
		`{"url":"`+rc.URL+`","events":["*"],"retry":{"strategy":"linear","delay_delta":"3s","max_retries":2}}`)["id"].(string)
	evID := apiPost(t, apiURL, "/v1/clouds/acme/events", `{"type":"encoding-complete","data":{"encoding_id":"e1"}}`)["id"].(string)

	// Wait until attempt 1 failed and its retry is recorded, then kill.
	log := openLog(t, natsURL)
	dlv := herald.DeliveryID("acme", evID, subID)
	waitRecord(t, log, subID, dlv, func(d herald.Delivery) bool { return len(d.Attempts) == 1 && d.Status == herald.StatusPending })
	if err := d1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d1.done

	d2 := startHerald(t, dispatchEnv, "dispatch")
	d2.waitLog(t, "dispatcher running")
	rec := waitRecord(t, log, subID, dlv, func(d herald.Delivery) bool { return d.Status == herald.StatusFailed })
	if got := fmt.Sprint(seen()); got != "[1 2 3]" {
		t.Errorf("attempt headers %s, want [1 2 3] across the kill", got)
	}
	if len(rec.Attempts) != 3 {
		t.Errorf("the log has %d attempts, want 3", len(rec.Attempts))
	}
	mu.Lock()
	gap := times[1].Sub(times[0])
	mu.Unlock()
	// The retry was NAKed with 3 s before the kill; JetStream keeps that
	// delay unless the kill comes within about a second of the NAK, when the
	// message returns at AckWait (14 s here) instead: late, never lost.
	if gap < 2500*time.Millisecond || gap > 20*time.Second {
		t.Errorf("retry came %s after attempt 1, want 3s (or AckWait)", gap)
	}
	t.Logf("retry %s after attempt 1, across a SIGKILL of the dispatcher", gap)
}

func apiPost(t *testing.T, base, path, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = jsonDecode(resp.Body, &out)
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %d %v", path, resp.StatusCode, out)
	}
	return out
}

func openLog(t *testing.T, natsURL string) *deliverylog.Log {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := deliverylog.Open(context.Background(), deliverylog.Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func waitRecord(t *testing.T, l *deliverylog.Log, subID, id string, ok func(herald.Delivery) bool) herald.Delivery {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		d, err := l.Get(context.Background(), "acme", subID, id)
		if err == nil && ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %s never reached the wanted state: last %+v, %v", id, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startAPIOnly runs `herald serve --api-only` on free ports with its data in
// dir and the admin token "admin", and returns its NATS and API addresses.
func startAPIOnly(t *testing.T, dir string) (natsURL, apiURL string) {
	t.Helper()
	api := startHerald(t, []string{
		"HERALD_DATA_DIR=" + dir, "HERALD_HTTP_ADDR=127.0.0.1:0", "HERALD_NATS_LISTEN=127.0.0.1:0",
		"HERALD_LOG_FORMAT=json", "HERALD_ADMIN_TOKEN=admin", "HERALD_ALLOW_PRIVATE_TARGETS=true",
	}, "serve", "--api-only")
	natsURL = api.waitLog(t, "embedded JetStream server listening")["nats"].(string)
	apiURL = api.waitLog(t, "HTTP API listening")["addr"].(string)
	return natsURL, apiURL
}

// dispatchEnvFor is the environment of a `herald dispatch` against natsURL.
func dispatchEnvFor(natsURL string) []string {
	return []string{"HERALD_NATS_URL=" + natsURL, "HERALD_ALLOW_PRIVATE_TARGETS=true", "HERALD_LOG_FORMAT=json", "HERALD_ATTEMPT_TIMEOUT=2s"}
}
