package dispatcher

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

// TestSendDoesNotFollowRedirects: a 3xx answer is a failed attempt, with
// its status, and the place it points to is never asked.
func TestSendDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	s := &sender{client: newClient(5*time.Second, 4, 16, true), timeout: 5 * time.Second}
	defer s.client.close()
	sub := &herald.Subscription{ID: "sub_r", Cloud: "acme", URL: srv.URL + "/hook", Method: http.MethodPost}
	ev := &herald.Event{ID: "e1", Cloud: "acme", Type: "video-created", Sequence: 3}
	att := &herald.Attempt{Number: 1, At: time.Now()}
	err := s.send(context.Background(), sub, "dlv_1", ev, att, []byte(`{}`), "application/json")
	var de *herald.DeliveryError
	if !errors.As(err, &de) || de.Status != http.StatusFound || !de.Retryable {
		t.Fatalf("send: %v, want a retryable failure with status 302", err)
	}
	if att.StatusCode != http.StatusFound || followed.Load() {
		t.Errorf("attempt status %d, redirect followed: %v", att.StatusCode, followed.Load())
	}
}
