package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/deliverylog"
	"github.com/herald-webhooks/herald/streams"
)

// Examples gives sample data of an event type for test notifications.
type Examples interface {
	Example(typ string) (data json.RawMessage, ok bool)
}

// ServiceConfig is what a Service needs. JetStream, Log and Examples are
// required; the rest mean what they mean in Config.
type ServiceConfig struct {
	JetStream           jetstream.JetStream
	Log                 *deliverylog.Log
	Examples            Examples
	Credentials         Credentials
	AttemptTimeout      time.Duration // default 10 s
	AllowPrivateTargets bool
	Now                 func() time.Time
}

// Service carries out what the API asks of deliveries: read the log,
// redeliver by hand, send a test notification. It needs no running
// Dispatcher, so an API-only process has one too. Safe for concurrent use.
type Service struct {
	js       jetstream.JetStream
	log      *deliverylog.Log
	examples Examples
	sender   *sender
	now      func() time.Time
}

// NewService returns a Service.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.JetStream == nil || cfg.Log == nil || cfg.Examples == nil {
		return nil, errors.New("dispatcher: service needs JetStream, Log and Examples")
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{
		js: cfg.JetStream, log: cfg.Log, examples: cfg.Examples, now: cfg.Now,
		sender: &sender{client: newClient(cfg.AttemptTimeout, 4, 64, cfg.AllowPrivateTargets), creds: cfg.Credentials, timeout: cfg.AttemptTimeout},
	}, nil
}

// List pages through cloud's delivery log.
func (s *Service) List(ctx context.Context, cloud string, f herald.DeliveryFilter) (herald.DeliveryPage, error) {
	return s.log.List(ctx, cloud, f)
}

// Delivery returns one delivery of cloud, or herald.ErrNotFound.
func (s *Service) Delivery(ctx context.Context, cloud, id string) (herald.Delivery, error) {
	return s.log.Find(ctx, cloud, id)
}

// DeliveryOf returns delivery id of subscription subID, or herald.ErrNotFound.
func (s *Service) DeliveryOf(ctx context.Context, cloud, subID, id string) (herald.Delivery, error) {
	return s.log.Lookup(ctx, cloud, subID, id)
}

// Redeliver sends a delivery that succeeded, failed or was superseded
// again now, on a fresh retry schedule; its next attempts are appended to
// the ones it has. A pending delivery answers herald.ErrConflict: it is
// already on its way. The event must still be in the events stream.
func (s *Service) Redeliver(ctx context.Context, cloud, id string) (herald.Delivery, error) {
	rec, err := s.log.Find(ctx, cloud, id)
	if err != nil {
		return rec, err
	}
	if rec.Status == herald.StatusPending {
		when := ""
		if rec.NextAttemptAt != nil {
			when = "; its next attempt is at " + rec.NextAttemptAt.Format(time.RFC3339)
		}
		return rec, herald.Conflict("the delivery is pending" + when + ": it is already on its way")
	}
	ev, err := s.event(ctx, rec)
	if err != nil {
		return rec, err
	}
	prev := rec
	now := s.now().UTC()
	rec.Status, rec.Reason, rec.NextAttemptAt = herald.StatusPending, "", &now
	rec.ScheduleBase, rec.ScheduleStart, rec.UpdatedAt = len(rec.Attempts), time.Time{}, now
	// The record first: the dispatcher reads it when the message comes, and
	// a message for a delivery the log calls settled is dropped.
	if err := s.log.Put(ctx, &rec); err != nil {
		return prev, fmt.Errorf("redeliver: %w: %v", herald.ErrUnavailable, err)
	}
	body, err := json.Marshal(delivery{ID: rec.ID, SubscriptionID: rec.SubscriptionID, Event: ev, Retry: true})
	if err != nil {
		return prev, err
	}
	if _, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: deliverySubject(cloud, rec.SubscriptionID), Data: body}); err != nil {
		_ = s.log.Put(ctx, &prev)
		return prev, fmt.Errorf("redeliver: %w: %v", herald.ErrUnavailable, err)
	}
	return rec, nil
}

// event reads a delivery's event back from the events stream.
func (s *Service) event(ctx context.Context, rec herald.Delivery) (herald.Event, error) {
	gone := herald.Conflict("event " + rec.EventID + " is no longer retained in the events stream (HERALD_EVENT_RETENTION)")
	st, err := s.js.Stream(ctx, streams.Events)
	if err != nil {
		return herald.Event{}, fmt.Errorf("redeliver: %w: %v", herald.ErrUnavailable, err)
	}
	raw, err := st.GetMsg(ctx, rec.EventSequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return herald.Event{}, gone
	}
	if err != nil {
		return herald.Event{}, fmt.Errorf("redeliver: %w: %v", herald.ErrUnavailable, err)
	}
	ev, err := herald.ParseEnvelope(raw.Subject, raw.Data)
	if err != nil || ev.ID != rec.EventID || ev.Cloud != rec.Cloud {
		return herald.Event{}, gone
	}
	ev.Sequence = rec.EventSequence
	return ev, nil
}

// Test sends sub a test notification now and returns the attempt. The
// event is of the subscription's first type (video-created for "*") with
// the type's example data and a fresh "test_" id; nothing is logged or
// retried. err is set only when no attempt could be made; a failed attempt
// is reported in the Attempt.
func (s *Service) Test(ctx context.Context, sub herald.Subscription) (herald.Event, herald.Attempt, error) {
	typ := "video-created"
	if len(sub.Events) > 0 && sub.Events[0] != herald.AllEvents {
		typ = sub.Events[0]
	}
	data, ok := s.examples.Example(typ)
	if !ok {
		data = json.RawMessage(`{}`)
	}
	ev := herald.Event{ID: herald.NewID("test"), Cloud: sub.Cloud, Type: typ, OccurredAt: s.now().UTC(), Data: data}
	body, contentType, err := encodeBody(nil, sub.Format, &ev)
	if err != nil {
		return ev, herald.Attempt{}, fmt.Errorf("build test notification: %w", err)
	}
	att := herald.Attempt{Number: 1, At: s.now().UTC()}
	if err := s.sender.send(ctx, &sub, herald.DeliveryID(sub.Cloud, ev.ID, sub.ID), &ev, &att, body, contentType); err != nil {
		att.Error = err.Error()
	}
	return ev, att, nil
}
