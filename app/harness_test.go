package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/dispatcher"
	"github.com/herald-webhooks/herald/internal/poll"
)

const adminToken = "test-admin-token"

// startApp starts a whole herald process (embedded JetStream, API,
// dispatcher) on free 127.0.0.1 ports with its data in dir.
func startApp(t testing.TB, dir string, mod ...func(*app.Config)) *app.App {
	t.Helper()
	cfg := app.Config{
		NATSListen: "127.0.0.1:0",
		HTTPAddr:   "127.0.0.1:0",
		DataDir:    dir,
		AdminToken: adminToken,
		API:        true,
		Dispatcher: true,
		Dispatch: dispatcher.Config{
			AttemptTimeout:      2 * time.Second,
			AllowPrivateTargets: true,
		},
		Logger: testLogger(t),
	}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start herald: %v", err)
	}
	t.Cleanup(a.Stop)
	return a
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// checkFor waits for fn to return nil (poll.Until).
var checkFor = poll.Until

// call makes one API request and decodes the JSON answer into out (if not nil).
func call(t testing.TB, a *app.App, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+a.HTTPAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %d is not JSON: %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

// mustCall is call that fails the test unless the status is want.
func mustCall(t testing.TB, a *app.App, method, path, token string, body any, want int) map[string]any {
	t.Helper()
	var out map[string]any
	if got := call(t, a, method, path, token, body, &out); got != want {
		t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, want, out)
	}
	return out
}

// subscribe creates a subscription and waits until the dispatcher of every
// app in also (and of a) matches events against it: a new subscription
// reaches dispatchers through a KV watch, within milliseconds but not
// synchronously, and an event fanned out before then does not go to it.
func subscribe(t testing.TB, a *app.App, cloud string, body map[string]any, also ...*app.App) string {
	t.Helper()
	out := mustCall(t, a, "POST", "/v1/clouds/"+cloud+"/subscriptions", adminToken, body, http.StatusCreated)
	id := out["id"].(string)
	updated, err := time.Parse(time.RFC3339Nano, out["updated_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range append([]*app.App{a}, also...) {
		if c := x.SubscriptionCache(); c != nil {
			checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if !c.Has(cloud, id, updated) {
					return fmt.Errorf("subscription %s not yet seen by the dispatcher", id)
				}
				return nil
			})
		}
	}
	return id
}

func publishHTTP(t testing.TB, a *app.App, cloud string, body map[string]any) (id string, seq uint64) {
	t.Helper()
	out := mustCall(t, a, "POST", "/v1/clouds/"+cloud+"/events", adminToken, body, http.StatusAccepted)
	return out["id"].(string), uint64(out["sequence"].(float64))
}

// received is one request a receiver got.
type received struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// receiver is an httptest endpoint that records every request and answers
// with what status returns (200 when nil).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	status func(r received) int
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := rc.record(r)
		rc.mu.Lock()
		status := rc.status
		rc.mu.Unlock()
		code := http.StatusOK
		if status != nil {
			code = status(rec)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// record stores r (a handler installed in rc.Config.Handler calls it).
func (rc *receiver) record(r *http.Request) received {
	b, _ := io.ReadAll(r.Body)
	rec := received{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: b, At: time.Now()}
	rc.mu.Lock()
	rc.got = append(rc.got, rec)
	rc.mu.Unlock()
	return rec
}

func (rc *receiver) setStatus(f func(received) int) {
	rc.mu.Lock()
	rc.status = f
	rc.mu.Unlock()
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// waitN waits until the receiver has at least n requests and returns them.
func (rc *receiver) waitN(t testing.TB, n int, timeout time.Duration) []received {
	t.Helper()
	var got []received
	checkFor(t, timeout, 10*time.Millisecond, func() error {
		got = rc.requests()
		if len(got) < n {
			return fmt.Errorf("receiver has %d requests, want %d", len(got), n)
		}
		return nil
	})
	return got
}

// publishPersistently publishes an encoding-complete event with id for
// cloud, trying again with the same id (so JetStream stores it once) until
// it is accepted: what a producer does through a server restart or a
// failover.
func publishPersistently(a *app.App, cloud, id string) {
	ev := herald.Event{ID: id, Cloud: cloud, Type: "encoding-complete", Data: json.RawMessage(`{"encoding_id":"e"}`)}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := a.Publisher().Publish(ctx, ev)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
