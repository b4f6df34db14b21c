package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/schemas"
)

// TestMalformedMessagesAreRecordedNotDelivered publishes hostile messages
// straight onto herald.events.*: each is terminated and recorded with its
// reason, and the dispatcher goes on to deliver the valid event after them.
func TestMalformedMessagesAreRecordedNotDelivered(t *testing.T) {
	a := startApp(t, t.TempDir())
	rc := newReceiver(t)
	subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	now := time.Now().UTC().Format(time.RFC3339)
	reg, err := schemas.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, subject, body, reason string
		schema                      string // herald.HeaderSchema, as a publisher would set it
	}{
		{"not JSON", "herald.events.acme.video-created", `{"id":`, "not valid JSON", ""},
		{"a cloud token herald cannot hold", "herald.events.ac!me.video-created", `{"id":"e","occurred_at":"` + now + `","data":{}}`, "cloud", ""},
		{"an unknown type", "herald.events.acme.video-exploded", `{"id":"e","occurred_at":"` + now + `","data":{}}`, "unknown event type", ""},
		{"data that fails the schema", "herald.events.acme.encoding-progress", `{"id":"e","occurred_at":"` + now + `","data":{"encoding_id":"x","progress":400}}`, "data.progress", ""},
		{"too many tokens", "herald.events.acme.video-created.extra", `{"id":"e","occurred_at":"` + now + `","data":{}}`, "type", ""},
		{"binary junk", "herald.events.acme.state_changed", "\x00\xff\xfe garbage", "not valid JSON", ""},
		// A publisher's word that data was validated counts only for the
		// schema this herald applies, and never lets "event" through.
		{"a header naming another schema version", "herald.events.acme.encoding-progress", `{"id":"e","occurred_at":"` + now + `","data":{"encoding_id":"x","progress":400}}`, "data.progress", "0123456789abcdef01234567"},
		{"a forged header on reserved data", "herald.events.acme.video-created", `{"id":"e","occurred_at":"` + now + `","data":{"video_id":"v","status":"success","event":"x"}}`, "data.event", reg.Digest("video-created")},
		{"a forged header on an escaped reserved key", "herald.events.acme.video-created", `{"id":"e","occurred_at":"` + now + `","data":{"video_id":"v","status":"success","\u0065vent":"x"}}`, "data.event", reg.Digest("video-created")},
	} {
		t.Run(c.name+" is recorded", func(t *testing.T) {
			msg := &nats.Msg{Subject: c.subject, Data: []byte(c.body), Header: nats.Header{}}
			if c.schema != "" {
				msg.Header.Set(herald.HeaderSchema, c.schema)
			}
			ack, err := js.PublishMsg(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				r, err := a.DeliveryLog().RejectedEvent(context.Background(), ack.Sequence)
				if errors.Is(err, herald.ErrNotFound) {
					return fmt.Errorf("message %d not recorded yet", ack.Sequence)
				}
				if err != nil {
					return err
				}
				if r.Subject != c.subject || !strings.Contains(r.Reason, c.reason) {
					t.Errorf("recorded %+v, want subject %s and a reason about %q", r, c.subject, c.reason)
				}
				return nil
			})
		})
	}
	publishHTTP(t, a, "acme", map[string]any{"type": "encoding-complete", "data": map[string]any{"encoding_id": "after"}})
	got := rc.waitN(t, 1, 10*time.Second)
	if len(got) != 1 || !strings.Contains(string(got[0].Body), "after") {
		t.Errorf("the endpoint got %d notifications; want only the valid one", len(got))
	}
	if v := metric(t, a, "herald_events_total", "outcome", "rejected"); v != 9 {
		t.Errorf("herald_events_total{outcome=rejected} = %v, want 9", v)
	}
}
