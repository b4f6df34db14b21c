package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald/api"
)

// fuzzBodyLimit is small so that the fuzzer reaches the 413 answer too.
const fuzzBodyLimit = 512

// checkFuzzAnswer fails t unless r is one of the statuses allowed and a
// well-formed answer: a JSON object, with a non-empty "error" on errors and
// a "field" only on a 422.
func checkFuzzAnswer(t *testing.T, r response, allowed ...int) {
	t.Helper()
	if !slices.Contains(allowed, r.status) {
		t.Fatalf("status %d is not one of %v; body %s", r.status, allowed, r.body)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("answer is not a JSON object: %q", r.body)
	}
	if r.status < 400 {
		return
	}
	if msg, _ := body["error"].(string); msg == "" {
		t.Fatalf("error answer without a message: %s", r.body)
	}
	if _, ok := body["field"]; ok && r.status != http.StatusUnprocessableEntity {
		t.Fatalf("%d answer names a field: %s", r.status, r.body)
	}
}

func FuzzDecodeSubscription(f *testing.F) {
	for _, seed := range []string{
		subscriptionBody,
		`{"url":"https://e.com","events":["*"]}`,
		`{"retry":{"strategy":"exponential","initial_delay":"30s","max_delay":"1h","window":"24h"}}`,
		`{"retry":{"initial_delay":"soon"}}`,
		`{"scope":{"job_id":"j1"},"credential_id":"crd_abc","enabled":true}`,
		`{"url":1}`, `{"bogus":1}`, `{"retry":{"bogus":1}}`, `{} {}`, `[]`, `null`, ``, `{"url":`,
		`{"events":[1,"x"]}`, `{"retry":{"max_retries":1e400}}`, `{"URL":"https://e.com"}`,
		padded(fuzzBodyLimit + 1),
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, body string, patch bool) {
		h := newFuzzHarness(t)
		if patch {
			r := h.do("PATCH", "/v1/clouds/acme/subscriptions/"+h.seed("acme"), adminToken, body)
			checkFuzzAnswer(t, r, 200, 400, 413, 422)
			return
		}
		r := h.do("POST", "/v1/clouds/acme/subscriptions", adminToken, body)
		checkFuzzAnswer(t, r, 201, 400, 413, 422)
	})
}

func FuzzDecodeEvent(f *testing.F) {
	for _, seed := range []string{
		`{"id":"evt-1","type":"video-created","data":{"video_id":"v1","status":"success"},"occurred_at":"2024-05-01T12:00:00Z"}`,
		`{"type":"state_changed","data":{"job_id":"j1","state":"processing"}}`,
		`{"type":"video-created","data":{"event":"x"}}`,
		`{"type":"nope","data":{}}`, `{"type":5}`, `{"occurred_at":3}`, `{"occurred_at":"yesterday"}`,
		`{"cloud":"x"}`, `{"data":null}`, `{"id":"a b","type":"video-created","data":{}}`,
		`{} {}`, `[]`, `null`, ``, `{"type":`, strings.Repeat(`{"data":`, 40),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h := newFuzzHarness(t)
		r := h.do("POST", "/v1/clouds/acme/events", adminToken, body)
		checkFuzzAnswer(t, r, 202, 400, 413, 422)
	})
}

// newFuzzHarness is a harness with a small body limit, no metrics and no
// logs: one per input, so that inputs share nothing.
func newFuzzHarness(t *testing.T) *harness {
	t.Helper()
	return newHarness(t, func(c *api.Config) {
		c.MaxBodyBytes = fuzzBodyLimit
		c.Metrics = nil
		c.Logger = zerolog.Nop()
	})
}
