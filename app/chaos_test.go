package app_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

// connCounter counts a test server's open connections.
type connCounter struct {
	mu   sync.Mutex
	open map[net.Conn]bool
}

func (c *connCounter) track(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.open[conn] = true
	case http.StateClosed, http.StateHijacked:
		delete(c.open, conn)
	}
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

// TestEndpointChaos delivers to endpoints that answer slowly, reset the
// connection, fail at random and hang. Every delivery ends succeeded or
// failed by its schedule, and once herald stops no goroutine or connection
// it opened is left behind.
func TestEndpointChaos(t *testing.T) {
	goroutinesBefore := runtime.NumGoroutine()
	dir := t.TempDir()
	a := startApp(t, dir)

	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	handlers := map[string]http.HandlerFunc{
		"slow": func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond)
		},
		"reset": func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close with RST
			}
			_ = c.Close()
		},
		"flaky": func(w http.ResponseWriter, r *http.Request) {
			rmu.Lock()
			fail := rng.IntN(2) == 0
			rmu.Unlock()
			if fail {
				w.WriteHeader(http.StatusInternalServerError)
			}
		},
		"hang": func(w http.ResponseWriter, r *http.Request) {
			// Read the body first: only then does the server notice the
			// client hanging up and cancel r's context.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		},
	}
	conns := map[string]*connCounter{}
	subs := map[string]string{}
	var servers []*httptest.Server
	for name, h := range handlers {
		cc := &connCounter{open: map[net.Conn]bool{}}
		srv := httptest.NewUnstartedServer(h)
		srv.Config.ConnState = cc.track
		srv.Start()
		servers = append(servers, srv)
		conns[name] = cc
		subs[name] = subscribe(t, a, "acme", map[string]any{"url": srv.URL + "/" + name, "events": []string{"*"},
			"retry": map[string]any{"strategy": "linear", "delay_delta": "1s", "max_retries": 2}})
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()

	const events = 20
	var ids []string
	for i := range events {
		id, _ := publishHTTP(t, a, "acme", map[string]any{"id": fmt.Sprintf("c-%d", i), "type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
		ids = append(ids, id)
	}
	outcomes := map[string]map[string]int{}
	checkFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		outcomes = map[string]map[string]int{}
		for name, sub := range subs {
			outcomes[name] = map[string]int{}
			for _, ev := range ids {
				rec, err := a.DeliveryLog().Lookup(context.Background(), "acme", sub, herald.DeliveryID("acme", ev, sub))
				if err != nil || rec.Status == herald.StatusPending {
					return fmt.Errorf("%s: a delivery of %s is not settled yet", name, ev)
				}
				outcomes[name][rec.Status]++
				if rec.Status == herald.StatusFailed && len(rec.Attempts) != 3 {
					t.Errorf("%s: delivery of %s failed after %d attempts, want 3 (max_retries 2)", name, ev, len(rec.Attempts))
				}
			}
		}
		return nil
	})
	if outcomes["slow"][herald.StatusSucceeded] != events {
		t.Errorf("slow endpoint: %v, want all succeeded", outcomes["slow"])
	}
	for _, name := range []string{"reset", "hang"} {
		if outcomes[name][herald.StatusFailed] != events {
			t.Errorf("%s endpoint: %v, want all failed after their schedule", name, outcomes[name])
		}
	}
	t.Logf("outcomes: %v", outcomes)

	// While herald runs, connections are pooled: at most the idle pool per
	// endpoint stays open.
	for name, cc := range conns {
		if n := cc.count(); n > 64 {
			t.Errorf("%s endpoint holds %d open connections", name, n)
		}
	}
	a.Stop()
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for name, cc := range conns {
			if n := cc.count(); n != 0 {
				return fmt.Errorf("%s endpoint still has %d connections from herald open", name, n)
			}
		}
		return nil
	})
	for _, s := range servers {
		s.Close()
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > goroutinesBefore+2 {
			return fmt.Errorf("%d goroutines after herald stopped, %d before it started", n, goroutinesBefore)
		}
		return nil
	})
}
