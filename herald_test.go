package herald_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	ev := herald.Event{ID: "evt-1", Cloud: "acme", Type: "video-created",
		OccurredAt: time.Date(2026, 11, 23, 4, 3, 0, 123000000, time.UTC),
		Data:       json.RawMessage(`{"video_id":"v1","status":"success"}`)}
	body, err := ev.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"evt-1","occurred_at":"2026-11-23T04:03:00.123Z","data":{"video_id":"v1","status":"success"}}`
	if string(body) != want {
		t.Errorf("envelope\n got %s\nwant %s", body, want)
	}
	got, err := herald.ParseEnvelope(herald.EventSubject("acme", "video-created"), body)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.Cloud != "acme" || got.Type != "video-created" || !got.OccurredAt.Equal(ev.OccurredAt) || !bytes.Equal(got.Data, ev.Data) {
		t.Errorf("parsed %+v, want %+v", got, ev)
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	good := `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{}}`
	for _, c := range []struct {
		name, subject, body, field string
	}{
		{"subject outside herald.events", "other.acme.video-created", good, "subject"},
		{"cloud token with a bad character", "herald.events.ac*me.video-created", good, "cloud"},
		{"missing type token", "herald.events.acme", good, "cloud"},
		{"extra subject token", "herald.events.acme.video-created.x", good, "type"},
		{"not JSON", "herald.events.acme.t", `{"id":`, ""},
		{"trailing data", "herald.events.acme.t", good + `{}`, ""},
		{"unknown envelope field", "herald.events.acme.t", `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{},"cloud":"x"}`, ""},
		{"missing id", "herald.events.acme.t", `{"occurred_at":"2026-11-23T04:03:00Z","data":{}}`, "id"},
		{"id with a space", "herald.events.acme.t", `{"id":"a b","occurred_at":"2026-11-23T04:03:00Z","data":{}}`, "id"},
		{"missing time", "herald.events.acme.t", `{"id":"e1","data":{}}`, "occurred_at"},
		{"data not an object", "herald.events.acme.t", `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":[1]}`, "data"},
		{"data missing", "herald.events.acme.t", `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z"}`, "data"},
		{"reserved event key", "herald.events.acme.t", `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{"event":"x"}}`, "data.event"},
		{"over 1 MiB", "herald.events.acme.t", `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{"x":"` + strings.Repeat("a", 1<<20) + `"}}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := herald.ParseEnvelope(c.subject, []byte(c.body))
			var ve *herald.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v, want a *ValidationError", err)
			}
			if ve.Field != c.field {
				t.Errorf("field %q, want %q (%v)", ve.Field, c.field, err)
			}
		})
	}
}

// FuzzParseEnvelope: any subject and body either parse into an event that
// re-encodes and parses to the same thing, or fail with a ValidationError.
func FuzzParseEnvelope(f *testing.F) {
	f.Add("herald.events.acme.video-created", []byte(`{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{"video_id":"v"}}`))
	f.Add("herald.events.a.b", []byte(`{"id":"x","occurred_at":"2026-11-23T04:03:00.5+02:00","data":{"a":[1,{"b":null}]}}`))
	f.Add("herald.events..", []byte(`{}`))
	f.Add("herald.events.a.b", []byte(`{"id":"e","occurred_at":"0001-01-01T00:00:00Z","data":{}}`))
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		ev, err := herald.ParseEnvelope(subject, body)
		if err != nil {
			var ve *herald.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
			return
		}
		if !herald.ValidCloud(ev.Cloud) || !herald.ValidEventType(ev.Type) || !herald.ValidEventID(ev.ID) || !json.Valid(ev.Data) {
			t.Fatalf("accepted an invalid event %+v", ev)
		}
		again, err := ev.Envelope()
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := herald.ParseEnvelope(subject, again)
		if err != nil {
			t.Fatalf("re-encoded envelope %s does not parse: %v", again, err)
		}
		if ev2.ID != ev.ID || !ev2.OccurredAt.Equal(ev.OccurredAt) {
			t.Fatalf("round trip changed the event: %+v then %+v", ev, ev2)
		}
	})
}

func TestSubscriptionWants(t *testing.T) {
	sub := func(events []string, scope *herald.Scope, enabled bool) herald.Subscription {
		return herald.Subscription{Events: events, Scope: scope, Enabled: enabled}
	}
	job := json.RawMessage(`{"job_id":"j1","state":"processing"}`)
	for _, c := range []struct {
		name string
		s    herald.Subscription
		typ  string
		data json.RawMessage
		want bool
	}{
		{"listed type", sub([]string{"state_changed"}, nil, true), "state_changed", job, true},
		{"unlisted type", sub([]string{"video-created"}, nil, true), "state_changed", job, false},
		{"all types", sub([]string{"*"}, nil, true), "state_changed", job, true},
		{"disabled", sub([]string{"*"}, nil, false), "state_changed", job, false},
		{"same job", sub([]string{"*"}, &herald.Scope{JobID: "j1"}, true), "state_changed", job, true},
		{"other job", sub([]string{"*"}, &herald.Scope{JobID: "j2"}, true), "state_changed", job, false},
		{"scoped to a video, event without one", sub([]string{"*"}, &herald.Scope{VideoID: "v1"}, true), "encoding-progress", json.RawMessage(`{"encoding_id":"e","progress":1}`), false},
		{"scoped to a video, same video", sub([]string{"*"}, &herald.Scope{VideoID: "v1"}, true), "encoding-progress", json.RawMessage(`{"encoding_id":"e","progress":1,"video_id":"v1"}`), true},
		{"scoped, id not a string", sub([]string{"*"}, &herald.Scope{JobID: "1"}, true), "state_changed", json.RawMessage(`{"job_id":1}`), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.s.Wants(c.typ, c.data); got != c.want {
				t.Errorf("Wants = %v, want %v", got, c.want)
			}
		})
	}
}

func TestSubscriptionValidate(t *testing.T) {
	known := func(s string) bool { return s == "video-created" || s == "state_changed" }
	str := func(s string) *string { return &s }
	now := time.Now()
	for _, c := range []struct {
		name  string
		p     herald.SubscriptionPatch
		field string
	}{
		{"minimal", herald.SubscriptionPatch{URL: str("https://example.com/h"), Events: []string{"video-created"}}, ""},
		{"missing url", herald.SubscriptionPatch{Events: []string{"video-created"}}, "url"},
		{"ftp url", herald.SubscriptionPatch{URL: str("ftp://example.com/"), Events: []string{"*"}}, "url"},
		{"url without host", herald.SubscriptionPatch{URL: str("http:///x"), Events: []string{"*"}}, "url"},
		{"url with user info", herald.SubscriptionPatch{URL: str("https://u:p@example.com/"), Events: []string{"*"}}, "url"},
		{"url with a newline", herald.SubscriptionPatch{URL: str("https://example.com/\nx"), Events: []string{"*"}}, "url"},
		{"no events", herald.SubscriptionPatch{URL: str("https://example.com/")}, "events"},
		{"unknown event", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"video-created", "nope"}}, "events[1]"},
		{"star with others", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*", "video-created"}}, "events[0]"},
		{"listed twice", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"state_changed", "state_changed"}}, "events[1]"},
		{"bad format", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*"}, Format: str("xml")}, "format"},
		{"bad method", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*"}, Method: str("GET")}, "method"},
		{"lower-case put is PUT", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*"}, Method: str("put")}, ""},
		{"bad retry", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*"}, Retry: &herald.RetryPolicy{Strategy: "never"}}, "retry.strategy"},
		{"bad credential id", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*"}, CredentialID: str("../x")}, "credential_ids[0]"},
		{"scope too long", herald.SubscriptionPatch{URL: str("https://example.com/"), Events: []string{"*"}, Scope: &herald.Scope{JobID: strings.Repeat("j", 300)}}, "scope.job_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := herald.NewSubscription("acme", c.p, now)
			err := s.Validate(known)
			if c.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var ve *herald.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Errorf("error %v, want one on %s", err, c.field)
			}
		})
	}
}

// TestDecodePublishedEnvelope: the envelope of herald's own publisher is
// decoded like any other, except that an unknown field is ignored.
func TestDecodePublishedEnvelope(t *testing.T) {
	const subject = "herald.events.acme.video-created"
	ev, err := herald.DecodePublishedEnvelope(subject, []byte(`{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{"a":1},"extra":true}`))
	if err != nil || ev.ID != "e1" || ev.Cloud != "acme" || ev.Type != "video-created" || string(ev.Data) != `{"a":1}` {
		t.Fatalf("decoded %+v, %v", ev, err)
	}
	for name, body := range map[string]string{
		"trailing data": `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z","data":{}}{}`,
		"not JSON":      `{"id":`,
		"missing id":    `{"occurred_at":"2026-11-23T04:03:00Z","data":{}}`,
		"missing time":  `{"id":"e1","data":{}}`,
		"missing data":  `{"id":"e1","occurred_at":"2026-11-23T04:03:00Z"}`,
	} {
		var ve *herald.ValidationError
		if _, err := herald.DecodePublishedEnvelope(subject, []byte(body)); !errors.As(err, &ve) {
			t.Errorf("%s: error %v, want a *ValidationError", name, err)
		}
	}
}
