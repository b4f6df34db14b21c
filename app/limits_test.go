package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
)

// TestFullEventsStreamRefusesClearly fills a small events stream: the
// publish that does not fit fails with an error saying the stream is full
// (503 over HTTP, with the reason), and every event that was accepted is
// delivered. Nothing is dropped silently.
func TestFullEventsStreamRefusesClearly(t *testing.T) {
	a := startApp(t, t.TempDir(), func(c *app.Config) { c.Streams.MaxEventBytes = 32 << 10 })
	rc := newReceiver(t)
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
	accepted := 0
	var refusal error
	for i := range 10_000 {
		_, err := a.Publisher().Publish(context.Background(), herald.Event{ID: fmt.Sprintf("f-%d", i), Cloud: "acme", Type: "encoding-complete",
			Data: json.RawMessage(`{"encoding_id":"` + strings.Repeat("x", 200) + `"}`)})
		if err != nil {
			refusal = err
			break
		}
		accepted++
	}
	if refusal == nil {
		t.Fatal("10,000 events fitted in a 32 KiB stream")
	}
	if !errors.Is(refusal, herald.ErrUnavailable) || !strings.Contains(refusal.Error(), "full") {
		t.Errorf("refusal %q, want an ErrUnavailable saying the stream is full", refusal)
	}
	out := mustCall(t, a, "POST", "/v1/clouds/acme/events", adminToken,
		map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": strings.Repeat("y", 200)}}, http.StatusServiceUnavailable)
	if msg, _ := out["error"].(string); !strings.Contains(msg, "full") {
		t.Errorf("API said %q, want the reason", msg)
	}
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := distinctEvents(rc.requests()); got != accepted {
			return fmt.Errorf("%d of %d accepted events delivered", got, accepted)
		}
		return nil
	})
	t.Logf("a 32 KiB stream took %d events, then refused: %v", accepted, refusal)
}
