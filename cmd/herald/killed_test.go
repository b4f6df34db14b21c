package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/publisher"
)

// TestDispatcherKilledMidRun publishes events to 3 endpoints while two
// `herald dispatch` processes share the work, SIGKILLs one midway and
// starts it again. Every (event, endpoint) pair must arrive at least once;
// the duplicates (deliveries the killed process had made but not
// acknowledged) are counted and reported. CI runs 1,000 events;
// HERALD_FAULT_EVENTS=10000 runs the full size.
func TestDispatcherKilledMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	events := 1000
	if v := os.Getenv("HERALD_FAULT_EVENTS"); v != "" {
		events, _ = strconv.Atoi(v)
	}
	const endpoints = 3
	var mu sync.Mutex
	seen := map[string]int{} // webhook-id → arrivals
	var total int
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen[r.Header.Get("Webhook-Id")]++
		total++
		mu.Unlock()
	}))
	defer rc.Close()
	counts := func() (distinct, all int) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen), total
	}

	dir := t.TempDir()
	natsURL, apiURL := startAPIOnly(t, dir)
	env := dispatchEnvFor(natsURL)
	d1 := startHerald(t, env, "dispatch")
	d2 := startHerald(t, env, "dispatch")
	for i := range endpoints {
		apiPost(t, apiURL, "/v1/clouds/acme/subscriptions", fmt.Sprintf(`{"url":"%s/e%d","events":["*"]}`, rc.URL, i))
	}
	d1.waitLog(t, "dispatcher running")
	d2.waitLog(t, "dispatcher running")

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	for i := range events {
		ev := herald.Event{ID: fmt.Sprintf("k-%06d", i), OccurredAt: time.Now(), Data: json.RawMessage(`{"encoding_id":"e"}`)}
		body, _ := ev.Envelope()
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: herald.EventSubject("acme", "encoding-complete"), Data: body},
			jetstream.WithMsgID(publisher.MsgID("acme", ev.ID))); err != nil {
			t.Fatal(err)
		}
		if i == events/3 {
			// Kill one dispatcher once deliveries are flowing.
			waitFor(t, 30*time.Second, func() bool { d, _ := counts(); return d > 0 })
			if err := d1.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-d1.done
			d1 = startHerald(t, env, "dispatch")
		}
	}
	<-js.PublishAsyncComplete()
	want := events * endpoints
	waitFor(t, 3*time.Minute, func() bool { d, _ := counts(); return d >= want })
	distinct, all := counts()
	if distinct != want {
		t.Fatalf("%d distinct (event, endpoint) deliveries arrived, want %d", distinct, want)
	}
	t.Logf("%d events × %d endpoints: %d deliveries arrived, %d duplicates (%.2f%%) after a SIGKILL of one of two dispatchers",
		events, endpoints, all, all-distinct, 100*float64(all-distinct)/float64(want))
}

func waitFor(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
