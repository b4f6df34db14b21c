package app_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/natsserver"
)

// retryTolerance is how far from its schedule a retry may come across a
// NATS restart: JetStream keeps NAK delays through a graceful restart with
// about a second of resolution, and the restart itself takes a moment.
const retryTolerance = 2 * time.Second

// TestNATSRestartMidRun restarts the NATS server (same store) while events
// are being published and delivered and while retries wait on NAK delays.
// Every event JetStream accepted is delivered, and every retry comes within
// retryTolerance of its schedule.
func TestNATSRestartMidRun(t *testing.T) {
	store := filepath.Join(t.TempDir(), "js")
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:0", StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().String()
	a := startApp(t, t.TempDir(), func(c *app.Config) { c.NATSURL = ns.ClientURL() })
	healthy := newReceiver(t)
	flaky := newReceiver(t)
	flaky.setStatus(func(r received) int {
		if r.Header.Get("Herald-Attempt") == "1" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	subscribe(t, a, "acme", map[string]any{"url": healthy.URL, "events": []string{"encoding-complete"}})
	subscribe(t, a, "acme", map[string]any{"url": flaky.URL, "events": []string{"state_changed"},
		"retry": map[string]any{"strategy": "linear", "delay_delta": "3s", "max_retries": 3}})

	// Retries waiting on a 3 s NAK delay when the server goes down.
	const retries = 20
	for i := range retries {
		publishHTTP(t, a, "acme", map[string]any{"id": fmt.Sprintf("r-%d", i), "type": "state_changed",
			"data": map[string]string{"job_id": fmt.Sprint(i), "state": "processing"}})
	}
	flaky.waitN(t, retries, 10*time.Second)

	// Events published all through the restart; a publish that fails is
	// tried again with the same id until JetStream accepts it.
	const events = 1500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range events {
			publishPersistently(a, "acme", fmt.Sprintf("m-%d", i))
		}
	}()
	healthy.waitN(t, events/4, 30*time.Second)
	ns.Shutdown()
	ns.WaitForShutdown()
	ns2, err := natsserver.Start(natsserver.Config{Listen: addr, StoreDir: store})
	if err != nil {
		t.Fatalf("restart NATS on %s: %v", addr, err)
	}
	t.Cleanup(func() { ns2.Shutdown(); ns2.WaitForShutdown() })
	wg.Wait()

	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if got := distinctEvents(healthy.requests()); got < events {
			return fmt.Errorf("%d of %d accepted events delivered", got, events)
		}
		return nil
	})
	byJob := map[string][]received{}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		byJob = map[string][]received{}
		for _, r := range flaky.requests() {
			byJob[r.Header.Get("Webhook-Id")] = append(byJob[r.Header.Get("Webhook-Id")], r)
		}
		for id, rs := range byJob {
			if len(rs) < 2 {
				return fmt.Errorf("delivery %s has not been retried yet", id)
			}
		}
		return nil
	})
	worst := time.Duration(0)
	for id, rs := range byJob {
		gap := rs[1].At.Sub(rs[0].At)
		if rs[1].Header.Get("Herald-Attempt") != "2" {
			t.Errorf("delivery %s: retry carried attempt %q", id, rs[1].Header.Get("Herald-Attempt"))
		}
		if off := gap - 3*time.Second; off < -retryTolerance || off > retryTolerance {
			t.Errorf("delivery %s retried %s after its first attempt, want 3s ± %s", id, gap, retryTolerance)
		}
		worst = max(worst, absDuration(gap-3*time.Second))
	}
	all := len(healthy.requests())
	t.Logf("%d events accepted across a NATS restart, all delivered (%d requests, %d duplicates); %d retries, worst %s off schedule",
		events, all, all-events, len(byJob), worst)
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
