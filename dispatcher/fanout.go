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

// delivery is the body of a message on HERALD_DELIVERIES: one event for one
// subscription. The subscription itself is read fresh at each attempt, so a
// change of URL or format applies to retries too.
type delivery struct {
	ID             string       `json:"id"`
	SubscriptionID string       `json:"subscription_id"`
	Event          herald.Event `json:"event"`
	// Retry marks a message that is not the delivery's first: a parked
	// retry come due, or a redelivery by hand. Its history is in the log.
	Retry bool `json:"retry,omitempty"`
}

func deliverySubject(cloud, subID string) string {
	return herald.DeliverySubjectPrefix + cloud + "." + subID
}

func (d *Dispatcher) fanoutConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       streams.FanoutConsumer,
		Description:   "herald: match events to subscriptions",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 10 * d.cfg.FanoutWorkers,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// fanout handles one event: match, publish one delivery message per match,
// then ack the event. If any publish fails the event is redelivered after a
// pause; deliveries already published are dropped as duplicates by their
// Nats-Msg-Id.
func (d *Dispatcher) fanout(ctx context.Context, msg jetstream.Msg) {
	// Validate checks that data is an object without "event", as
	// ParseEnvelope would: data is decoded once.
	ev, err := herald.DecodeEnvelope(msg.Subject(), msg.Data())
	if err == nil {
		err = d.cfg.Schemas.Validate(ev.Type, ev.Data)
	}
	meta, merr := msg.Metadata()
	if merr == nil {
		ev.Sequence = meta.Sequence.Stream
	}
	if err != nil {
		d.reject(ctx, msg, ev.Sequence, err)
		return
	}
	subs := d.cfg.Matcher.Match(ev.Cloud, ev.Type, ev.Data, nil)
	if err := d.publishDeliveries(ctx, &ev, subs); err != nil {
		d.log.Warn().Err(err).Str("event_id", ev.ID).Msg("fan-out failed; event will be retried")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	d.metrics.events.WithLabelValues("fanned_out").Inc()
	d.metrics.fanout.Add(float64(len(subs)))
	if err := msg.Ack(); err != nil {
		d.log.Debug().Err(err).Str("event_id", ev.ID).Msg("ack event")
	}
}

// reject terminates a message fan-out cannot accept and records why, so
// that a producer publishing straight onto NATS can find out. Nothing of
// it is delivered; the dispatcher goes on with the next message.
func (d *Dispatcher) reject(ctx context.Context, msg jetstream.Msg, seq uint64, why error) {
	d.metrics.events.WithLabelValues("rejected").Inc()
	d.log.Warn().Str("subject", msg.Subject()).Uint64("sequence", seq).Str("reason", why.Error()).Msg("malformed event terminated")
	r := deliverylog.Rejected{Sequence: seq, Subject: msg.Subject(), Reason: why.Error(), Size: len(msg.Data()), At: d.cfg.Now().UTC()}
	if err := d.cfg.Log.RecordRejected(ctx, r); err != nil {
		d.log.Warn().Err(err).Uint64("sequence", seq).Msg("could not record the rejected event")
	}
	_ = msg.TermWithReason(why.Error())
}

func (d *Dispatcher) publishDeliveries(ctx context.Context, ev *herald.Event, subs []*herald.Subscription) error {
	if len(subs) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(subs))
	for _, s := range subs {
		dl := delivery{ID: herald.DeliveryID(ev.Cloud, ev.ID, s.ID), SubscriptionID: s.ID, Event: *ev}
		body, err := json.Marshal(dl)
		if err != nil {
			return fmt.Errorf("encode delivery: %w", err)
		}
		m := &nats.Msg{Subject: deliverySubject(ev.Cloud, s.ID), Data: body}
		f, err := d.js.PublishMsgAsync(m, jetstream.WithMsgID(dl.ID))
		if err != nil {
			return fmt.Errorf("publish delivery: %w", err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish delivery: %w", err)
		case <-timeout.C:
			return errors.New("publish delivery: no acknowledgement within 10s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
