package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/natsserver/natstest"
	"github.com/herald-webhooks/herald/publisher"
	"github.com/herald-webhooks/herald/schemas"
	"github.com/herald-webhooks/herald/streams"
)

func newPublisher(t *testing.T) (*publisher.Publisher, jetstream.JetStream, *schemas.Registry) {
	t.Helper()
	js, _ := natstest.JetStream(t)
	if err := streams.Ensure(context.Background(), js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	reg, err := schemas.New("")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publisher.New(publisher.Config{JetStream: js, Schemas: reg})
	if err != nil {
		t.Fatal(err)
	}
	return pub, js, reg
}

// stored reads the event message at seq.
func stored(t *testing.T, js jetstream.JetStream, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	st, err := js.Stream(context.Background(), streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPublishMarksValidatedEvents: a published event carries the digest of
// the schema it was validated against, so the dispatcher need not validate
// it again.
func TestPublishMarksValidatedEvents(t *testing.T) {
	pub, js, reg := newPublisher(t)
	ev, err := pub.Publish(context.Background(), herald.Event{Cloud: "acme", Type: "video-created", Data: json.RawMessage(`{"video_id":"v1","status":"success"}`)})
	if err != nil {
		t.Fatal(err)
	}
	m := stored(t, js, ev.Sequence)
	if got, want := m.Header.Get(herald.HeaderSchema), reg.Digest("video-created"); got != want || want == "" {
		t.Errorf("%s = %q, want %q", herald.HeaderSchema, got, want)
	}
	if m.Header.Get("Nats-Msg-Id") != publisher.MsgID("acme", ev.ID) {
		t.Errorf("Nats-Msg-Id = %q", m.Header.Get("Nats-Msg-Id"))
	}
}

// TestPublishAsync: events are validated before anything is sent, accepted
// through their futures, and a second publish of an id is a duplicate.
func TestPublishAsync(t *testing.T) {
	pub, js, reg := newPublisher(t)
	if _, f, err := pub.PublishAsync(herald.Event{Cloud: "acme", Type: "encoding-progress", Data: json.RawMessage(`{"encoding_id":"e","progress":400}`)}); f != nil || !isInvalid(err, "data.progress") {
		t.Fatalf("invalid event: future %v, error %v; want a validation error naming data.progress", f, err)
	}
	var futures []jetstream.PubAckFuture
	for _, id := range []string{"a", "b", "a"} {
		ev, f, err := pub.PublishAsync(herald.Event{ID: id, Cloud: "acme", Type: "encoding-progress", Data: json.RawMessage(`{"encoding_id":"e","progress":40}`)})
		if err != nil {
			t.Fatal(err)
		}
		if ev.OccurredAt.IsZero() {
			t.Errorf("occurred_at not filled in")
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if dup := i == 2; ack.Duplicate != dup {
				t.Errorf("publish %d: duplicate = %v, want %v", i, ack.Duplicate, dup)
			}
			if i < 2 && stored(t, js, ack.Sequence).Header.Get(herald.HeaderSchema) != reg.Digest("encoding-progress") {
				t.Errorf("publish %d: no schema digest", i)
			}
		case err := <-f.Err():
			t.Fatalf("publish %d: %v", i, publisher.Unaccepted(f.Msg().Header.Get("Nats-Msg-Id"), err))
		}
	}
}

// TestUnacceptedExplains: JetStream's refusal reads as herald.ErrUnavailable.
func TestUnacceptedExplains(t *testing.T) {
	err := publisher.Unaccepted("acme:e1", jetstream.ErrNoStreamResponse)
	if !errors.Is(err, herald.ErrUnavailable) {
		t.Fatalf("%v is not ErrUnavailable", err)
	}
	if want := "publish acme:e1: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("error %q does not name the event", err)
	}
}

func isInvalid(err error, field string) bool {
	var ve *herald.ValidationError
	return errors.As(err, &ve) && ve.Field == field
}

// TestReservedAndNonObjectData: with the schema registry as validator the
// publisher still refuses data that is not an object or carries "event".
func TestReservedAndNonObjectData(t *testing.T) {
	pub, _, _ := newPublisher(t)
	for data, field := range map[string]string{
		`{"video_id":"v","status":"success","event":"x"}`: "data.event",
		`["video_id"]`: "data",
		`"text"`:       "data",
	} {
		_, err := pub.Publish(context.Background(), herald.Event{Cloud: "acme", Type: "video-created", Data: json.RawMessage(data)})
		if !isInvalid(err, field) {
			t.Errorf("data %s: %v, want a validation error naming %s", data, err, field)
		}
	}
}
