package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
)

// TestDeliversBothFormatsExactly publishes one event to a form and a JSON
// subscription and checks each body byte for byte, and every header.
func TestDeliversBothFormatsExactly(t *testing.T) {
	a := startApp(t, t.TempDir())
	form, js := newReceiver(t), newReceiver(t)
	formSub := subscribe(t, a, "acme", map[string]any{"url": form.URL + "/panda", "events": []string{"video-created"}, "format": "form"})
	jsonSub := subscribe(t, a, "acme", map[string]any{"url": js.URL + "/live", "events": []string{"*"}, "format": "json", "method": "PUT"})

	data := json.RawMessage(`{"video_id":"123234","status":"success","encoding_ids":["firstid","secondid"],"metadata":{"width":1280,"height":720}}`)
	before := time.Now().Unix()
	id, seq := publishHTTP(t, a, "acme", map[string]any{"id": "evt-1", "type": "video-created", "data": data})
	if id != "evt-1" || seq == 0 {
		t.Fatalf("publish answered id %q sequence %d", id, seq)
	}

	f := form.waitN(t, 1, 10*time.Second)[0]
	wantForm := "event=video-created&video_id=123234&status=success&encoding_ids[0]=firstid&encoding_ids[1]=secondid&metadata[width]=1280&metadata[height]=720"
	if string(f.Body) != wantForm {
		t.Errorf("form body\n got %s\nwant %s", f.Body, wantForm)
	}
	j := js.waitN(t, 1, 10*time.Second)[0]
	wantJSON := `{"event":"video-created","video_id":"123234","status":"success","encoding_ids":["firstid","secondid"],"metadata":{"width":1280,"height":720}}`
	if string(j.Body) != wantJSON {
		t.Errorf("json body\n got %s\nwant %s", j.Body, wantJSON)
	}

	for _, c := range []struct {
		name, method, path, contentType, subID string
		r                                      received
	}{
		{"form", "POST", "/panda", "application/x-www-form-urlencoded", formSub, f},
		{"json", "PUT", "/live", "application/json", jsonSub, j},
	} {
		t.Run(c.name+" request carries every header", func(t *testing.T) {
			h := c.r.Header
			if c.r.Method != c.method || c.r.Path != c.path {
				t.Errorf("request %s %s, want %s %s", c.r.Method, c.r.Path, c.method, c.path)
			}
			want := map[string]string{
				"Content-Type":    c.contentType,
				"Webhook-Id":      herald.DeliveryID("acme", "evt-1", c.subID),
				"Herald-Event":    "video-created",
				"Herald-Attempt":  "1",
				"Herald-Sequence": strconv.FormatUint(seq, 10),
				"User-Agent":      "herald/" + herald.Version,
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			ts, err := strconv.ParseInt(h.Get("Webhook-Timestamp"), 10, 64)
			if err != nil || ts < before || ts > time.Now().Unix() {
				t.Errorf("webhook-timestamp %q is not the Unix time of the attempt", h.Get("Webhook-Timestamp"))
			}
			if h.Get("Webhook-Signature") != "" || h.Get("Authorization") != "" {
				t.Errorf("signature or authorization sent without a credential")
			}
		})
	}
	t.Run("form body decodes to the nested values", func(t *testing.T) {
		vals, err := url.ParseQuery(string(f.Body))
		if err != nil {
			t.Fatal(err)
		}
		if vals.Get("encoding_ids[1]") != "secondid" || vals.Get("metadata[width]") != "1280" {
			t.Errorf("decoded form %v", vals)
		}
	})
}

// TestTenantsAndScopes: a cloud never receives another cloud's events, and
// a scoped subscription only its job's.
func TestTenantsAndScopes(t *testing.T) {
	a := startApp(t, t.TempDir())
	ra, rb, rjob := newReceiver(t), newReceiver(t), newReceiver(t)
	subscribe(t, a, "cloud-a", map[string]any{"url": ra.URL, "events": []string{"*"}})
	subscribe(t, a, "cloud-b", map[string]any{"url": rb.URL, "events": []string{"*"}})
	subscribe(t, a, "cloud-a", map[string]any{"url": rjob.URL, "events": []string{"state_changed"}, "scope": map[string]string{"job_id": "j1"}})
	subscribe(t, a, "cloud-a", map[string]any{"url": rjob.URL + "/disabled", "events": []string{"*"}, "enabled": false})

	for i, job := range []string{"j1", "j2", "j1"} {
		publishHTTP(t, a, "cloud-a", map[string]any{"id": fmt.Sprintf("a-%d", i), "type": "state_changed", "data": map[string]string{"job_id": job, "state": "processing"}})
	}
	publishHTTP(t, a, "cloud-a", map[string]any{"id": "a-video", "type": "encoding-progress", "data": map[string]any{"encoding_id": "e1", "progress": 40}})
	publishHTTP(t, a, "cloud-b", map[string]any{"id": "b-0", "type": "encoding-complete", "data": map[string]any{"encoding_id": "e9"}})

	ra.waitN(t, 4, 10*time.Second)
	rb.waitN(t, 1, 10*time.Second)
	rjob.waitN(t, 2, 10*time.Second)
	// A last event to each cloud, then make sure nothing else came: once it
	// arrives, everything published before it has been fanned out.
	publishHTTP(t, a, "cloud-b", map[string]any{"id": "b-last", "type": "encoding-complete", "data": map[string]any{"encoding_id": "e9"}})
	rb.waitN(t, 2, 10*time.Second)
	publishHTTP(t, a, "cloud-a", map[string]any{"id": "a-last", "type": "state_changed", "data": map[string]string{"job_id": "j1", "state": "finished"}})
	rjob.waitN(t, 3, 10*time.Second)
	ra.waitN(t, 5, 10*time.Second)

	for _, r := range rb.requests() {
		if got := r.Header.Get("Herald-Event"); got != "encoding-complete" {
			t.Errorf("cloud-b received a %s event", got)
		}
	}
	if n := len(ra.requests()); n != 5 {
		t.Errorf("cloud-a's endpoint got %d notifications, want 5", n)
	}
	for _, r := range rjob.requests() {
		var body map[string]any
		_ = json.Unmarshal(r.Body, &body)
		if body["job_id"] != "j1" || r.Path == "/disabled" {
			t.Errorf("scoped endpoint got %s %v", r.Path, body)
		}
	}
	if n := len(rjob.requests()); n != 3 {
		t.Errorf("scoped endpoint got %d notifications, want 3 (j1 twice, then the last)", n)
	}
}

// TestRejectsBadEvents: unknown types and invalid data are refused at
// publish time with the field named, and nothing is delivered.
func TestRejectsBadEvents(t *testing.T) {
	a := startApp(t, t.TempDir())
	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"unknown type", map[string]any{"type": "video-exploded", "data": map[string]any{}}, "type"},
		{"missing required field", map[string]any{"type": "video-created", "data": map[string]any{"status": "success"}}, "data.video_id"},
		{"value outside the enum", map[string]any{"type": "video-created", "data": map[string]any{"video_id": "v", "status": "maybe"}}, "data.status"},
		{"progress out of range", map[string]any{"type": "encoding-progress", "data": map[string]any{"encoding_id": "e", "progress": 101}}, "data.progress"},
		{"bad id", map[string]any{"id": "has space", "type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}}, "id"},
		{"reserved event key", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e", "event": "x"}}, "data.event"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := mustCall(t, a, "POST", "/v1/clouds/acme/events", adminToken, c.body, http.StatusUnprocessableEntity)
			if out["field"] != c.field {
				t.Errorf("field %v, want %q (error %v)", out["field"], c.field, out["error"])
			}
		})
	}
	t.Run("the Go publisher names the field too", func(t *testing.T) {
		_, err := a.Publisher().Publish(context.Background(), herald.Event{Cloud: "acme", Type: "state_changed", Data: json.RawMessage(`{"job_id":"j","state":"exploded"}`)})
		var ve *herald.ValidationError
		if !errorsAs(err, &ve) || ve.Field != "data.state" {
			t.Fatalf("error %v, want a validation error on data.state", err)
		}
	})
}

// TestDuplicateIDDeliveredOnce publishes one id three ways and checks one
// notification arrives.
func TestDuplicateIDDeliveredOnce(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
	ev := map[string]any{"id": "dup-1", "type": "encoding-complete", "data": map[string]any{"encoding_id": "e1"}}
	_, seq1 := publishHTTP(t, a, "acme", ev)
	_, seq2 := publishHTTP(t, a, "acme", ev)
	got, err := a.Publisher().Publish(context.Background(), herald.Event{ID: "dup-1", Cloud: "acme", Type: "encoding-complete", Data: json.RawMessage(`{"encoding_id":"e1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if seq1 != seq2 || got.Sequence != seq1 {
		t.Errorf("duplicate publishes answered sequences %d, %d, %d; want the first's each time", seq1, seq2, got.Sequence)
	}
	// The same id in another cloud is another event.
	publishHTTP(t, a, "other", ev)
	publishHTTP(t, a, "acme", map[string]any{"id": "after", "type": "encoding-complete", "data": map[string]any{"encoding_id": "e2"}})
	rc.waitN(t, 2, 10*time.Second)
	if n := len(rc.requests()); n != 2 {
		t.Errorf("got %d notifications, want 2 (dup-1 once, then after)", n)
	}
}

// TestSubscriptionsSurviveRestart: what the API stored is there, unchanged,
// after herald restarts on the same data directory, and still delivers.
func TestSubscriptionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	rc := newReceiver(t)
	a := startApp(t, dir)
	id := subscribe(t, a, "acme", map[string]any{
		"url": rc.URL, "events": []string{"state_changed"}, "format": "form",
		"retry": map[string]any{"strategy": "linear", "delay_delta": "2s", "max_retries": 7},
		"scope": map[string]string{"job_id": "j1"},
	})
	before := mustCall(t, a, "GET", "/v1/clouds/acme/subscriptions/"+id, adminToken, nil, http.StatusOK)
	a.Stop()

	b := startApp(t, dir)
	after := mustCall(t, b, "GET", "/v1/clouds/acme/subscriptions/"+id, adminToken, nil, http.StatusOK)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("subscription changed across restart:\nbefore %v\n after %v", before, after)
	}
	publishHTTP(t, b, "acme", map[string]any{"type": "state_changed", "data": map[string]string{"job_id": "j1", "state": "finished"}})
	r := rc.waitN(t, 1, 10*time.Second)[0]
	if want := "event=state_changed&job_id=j1&state=finished"; string(r.Body) != want {
		t.Errorf("body %s, want %s", r.Body, want)
	}
}

// TestSubscriptionChangeSeenQuickly: a change through the API reaches the
// dispatcher's cache without polling.
func TestSubscriptionChangeSeenQuickly(t *testing.T) {
	a := startApp(t, t.TempDir())
	old, moved := newReceiver(t), newReceiver(t)
	id := subscribe(t, a, "acme", map[string]any{"url": old.URL, "events": []string{"*"}})
	mustCall(t, a, "PATCH", "/v1/clouds/acme/subscriptions/"+id, adminToken, map[string]any{"url": moved.URL}, http.StatusOK)
	start := time.Now()
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
		if len(moved.requests()) == 0 {
			return fmt.Errorf("no notification at the new URL yet")
		}
		return nil
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("the change took %s to reach the dispatcher, want under 1s", d)
	}
}

// TestFailedAttemptIsRetried: a 500 is not lost; the delivery comes back.
func TestFailedAttemptIsRetried(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	rc.setStatus(func(r received) int {
		if r.Header.Get("Herald-Attempt") == "1" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}, "retry": map[string]any{"strategy": "linear", "delay_delta": "1s", "max_retries": 3}})
	other := newReceiver(t)
	subscribe(t, a, "acme", map[string]any{"url": other.URL, "events": []string{"*"}})
	publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "e"}})
	got := rc.waitN(t, 2, 10*time.Second)
	if got[0].Header.Get("Webhook-Id") != got[1].Header.Get("Webhook-Id") || got[1].Header.Get("Herald-Attempt") != "2" {
		t.Errorf("retry headers: id %q then %q, attempt %q", got[0].Header.Get("Webhook-Id"), got[1].Header.Get("Webhook-Id"), got[1].Header.Get("Herald-Attempt"))
	}
	if d := got[1].At.Sub(got[0].At); d < 900*time.Millisecond {
		t.Errorf("retry came after %s, want about 1s (linear, 1 × delay_delta)", d)
	}
	if n := len(other.requests()); n != 1 {
		t.Errorf("the other endpoint got %d notifications; a failure elsewhere must not re-send to it", n)
	}
}

// TestTwoDispatchersShareWork: a second process on the same NATS takes part
// of the work, and in steady state nothing is delivered twice.
func TestTwoDispatchersShareWork(t *testing.T) {
	a := startApp(t, t.TempDir())
	b := startApp(t, t.TempDir(), func(c *app.Config) {
		c.NATSURL = a.NATSURL()
		c.API = false
	})
	rc := newReceiver(t)
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}}, b)
	const n = 400
	publishMany(t, a, "acme", n)
	rc.waitN(t, n, 30*time.Second)
	seen := map[string]int{}
	for _, r := range rc.requests() {
		seen[r.Header.Get("Webhook-Id")]++
	}
	for id, c := range seen {
		if c > 1 {
			t.Errorf("delivery %s arrived %d times", id, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct deliveries, want %d", len(seen), n)
	}
	sa, sb := succeeded(t, a), succeeded(t, b)
	if sa == 0 || sb == 0 {
		t.Errorf("work not shared: dispatcher a delivered %v, b %v", sa, sb)
	}
	t.Logf("dispatcher a delivered %v, b %v", sa, sb)
}

// TestShutdownUnderLoadLosesNothing publishes 1,000 events, stops herald
// midway through delivering them, starts it again on the same data, and
// checks that every event arrived at least once.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	dir := t.TempDir()
	rc := newReceiver(t)
	rc.setStatus(func(received) int { time.Sleep(2 * time.Millisecond); return http.StatusOK })
	a := startApp(t, dir)
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
	const n = 1000
	publishMany(t, a, "acme", n)
	rc.waitN(t, n/4, 30*time.Second)
	a.Stop()
	stoppedAt := len(rc.requests())

	startApp(t, dir)
	checkFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if got := distinctEvents(rc.requests()); got < n {
			return fmt.Errorf("%d of %d events delivered", got, n)
		}
		return nil
	})
	total := len(rc.requests())
	t.Logf("stopped after %d deliveries; %d requests in all for %d events (%d duplicates)", stoppedAt, total, n, total-n)
	if stoppedAt >= n {
		t.Logf("all events were delivered before the stop took effect; the restart proved nothing new")
	}
}

func publishMany(t testing.TB, a *app.App, cloud string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := a.Publisher().Publish(context.Background(), herald.Event{
				ID: fmt.Sprintf("e-%05d", i), Cloud: cloud, Type: "encoding-progress",
				Data: json.RawMessage(fmt.Sprintf(`{"encoding_id":"enc-%d","progress":%d}`, i, i%101)),
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
}

func distinctEvents(rs []received) int {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.Header.Get("Webhook-Id")] = true
	}
	return len(seen)
}
