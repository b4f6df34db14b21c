package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
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
	// Retry marks a message that may not be the delivery's first: a
	// retry, a redelivery by hand, or a replayed event's. Its history, if
	// any, is in the log, which the deliver stage reads first.
	Retry bool `json:"retry,omitempty"`
}

func deliverySubject(cloud, subID string) string {
	return herald.DeliverySubjectPrefix + cloud + "." + subID
}

func (d *Dispatcher) fanoutConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     streams.FanoutConsumer,
		Description: "herald: match events to subscriptions, first attempts to fast endpoints",
		AckPolicy:   jetstream.AckExplicitPolicy,
		// An event is acknowledged after its first attempts: cover two of
		// them, as the deliver consumer does, and never less than 30 s.
		AckWait: max(30*time.Second, 2*d.cfg.AttemptTimeout+10*time.Second),
		// Events waiting for their first attempts (at most MaxInFlight
		// run at once) and those pulled ahead must not stop fan-out from
		// taking new ones.
		MaxAckPending: d.cfg.MaxInFlight + fanoutBuffer + 10*d.cfg.FanoutWorkers,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// firstPatience is how long fan-out waits for a free attempt slot, once
// per event, before it hands the event's remaining deliveries to the
// deliveries stream instead.
const firstPatience = 50 * time.Millisecond

// fanout handles one event: match; make the first attempt of each delivery
// to a fast endpoint with a free slot (firstAttempt, in the background);
// publish one delivery message for each of the others; ack the event when
// all of it is done. If a publish fails the event is redelivered after a
// pause. A redelivered event (a dispatcher died, or a publish failed) makes
// no attempts: every delivery becomes a message, marked to be checked
// against the log, so what succeeded is not sent again and what was
// published already is dropped as a duplicate by its Nats-Msg-Id.
func (d *Dispatcher) fanout(ctx context.Context, msg jetstream.Msg) {
	published := d.schemaChecked(msg)
	decode := herald.DecodeEnvelope
	if published {
		decode = herald.DecodePublishedEnvelope
	}
	ev, err := decode(msg.Subject(), msg.Data())
	if err == nil && !(published && plainObject(ev.Data)) {
		// Validate checks that data is an object without "event", as
		// ParseEnvelope would: data is decoded once.
		err = d.cfg.Schemas.Validate(ev.Type, ev.Data)
	}
	replay := false
	if meta, merr := msg.Metadata(); merr == nil {
		ev.Sequence = meta.Sequence.Stream
		replay = meta.NumDelivered > 1
	}
	if err != nil {
		d.reject(ctx, msg, ev.Sequence, err)
		return
	}
	subs := d.cfg.Matcher.Match(ev.Cloud, ev.Type, ev.Data, nil)
	fe := &fannedEvent{d: d, msg: msg, id: ev.ID, deliveries: len(subs)}
	fe.pending.Store(1)
	var queued []delivery
	patience := firstPatience
	// Events fanned out at once would otherwise reach a cloud's endpoints in
	// the same order, all at the same time: each event starts at another
	// subscription, which spreads attempts (and pooled connections) evenly
	// over the endpoints.
	off := 0
	if len(subs) > 1 {
		off = int(ev.Sequence * 0x9E3779B97F4A7C15 >> 33 % uint64(len(subs))) // consecutive events, far-apart starts
	}
	for k := range subs {
		s := subs[(k+off)%len(subs)]
		dl := delivery{ID: herald.DeliveryID(ev.Cloud, ev.ID, s.ID), SubscriptionID: s.ID, Event: ev, Retry: replay}
		if replay {
			queued = append(queued, dl)
			continue
		}
		release, waited := d.firstSlot(ctx, s.URL, patience)
		if waited {
			patience = 0 // the process is saturated: queue the rest at once
		}
		if release == nil {
			queued = append(queued, dl)
			continue
		}
		fe.pending.Add(1)
		d.firsts.Add(1)
		d.workers.run(func() { d.firstAttempt(fe, dl, s, release) })
	}
	if err := d.publishDeliveries(ctx, queued); err != nil {
		d.log.Warn().Err(err).Str("event_id", ev.ID).Msg("fan-out failed; event will be retried")
		fe.failed.Store(true)
	}
	fe.done()
}

// schemaChecked reports whether msg's publisher validated its data against
// the schema this dispatcher would apply (herald.HeaderSchema), so that it
// need not be validated again: the check costs more than the rest of
// fan-out.
func (d *Dispatcher) schemaChecked(msg jetstream.Msg) bool {
	v := msg.Headers().Get(herald.HeaderSchema)
	if v == "" {
		return false
	}
	_, typ, err := herald.ParseEventSubject(msg.Subject())
	return err == nil && v == d.cfg.Schemas.Digest(typ)
}

// plainObject reports whether data, valid JSON, is an object that cannot
// hold the key "event": the notification body needs that even if a
// publisher's HeaderSchema lies. It is cheap: data that mentions "event"
// anywhere, or has an escape that could spell it, is validated in full.
func plainObject(data json.RawMessage) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{' && !bytes.Contains(data, []byte(`"event"`)) && bytes.IndexByte(data, '\\') < 0
}

// fannedEvent is an event whose first attempts may still run: the last of
// them (or fan-out itself) acknowledges it, or hands it back when a
// delivery could not be recorded.
type fannedEvent struct {
	d          *Dispatcher
	msg        jetstream.Msg
	id         string
	deliveries int
	pending    atomic.Int32
	failed     atomic.Bool
}

func (fe *fannedEvent) done() {
	if fe.pending.Add(-1) != 0 {
		return
	}
	if fe.failed.Load() {
		_ = fe.msg.NakWithDelay(time.Second)
		return
	}
	fe.d.metrics.events.WithLabelValues("fanned_out").Inc()
	fe.d.metrics.fanout.Add(float64(fe.deliveries))
	if err := fe.msg.Ack(); err != nil {
		fe.d.log.Debug().Err(err).Str("event_id", fe.id).Msg("ack event")
	}
}

// firstSlot takes an attempt slot and a slot of rawURL's endpoint for a
// first attempt made by fan-out, or returns nil when the endpoint is not
// known to answer fast or no slot frees up within patience. waited reports
// that the patience ran out on the process's attempt slots.
func (d *Dispatcher) firstSlot(ctx context.Context, rawURL string, patience time.Duration) (release func(time.Duration), waited bool) {
	if !d.endpoints.fast(rawURL) {
		return nil, false
	}
	select {
	case d.attemptSlots <- struct{}{}:
	default:
		if patience <= 0 {
			return nil, false
		}
		t := time.NewTimer(patience)
		defer t.Stop()
		select {
		case d.attemptSlots <- struct{}{}:
		case <-t.C:
			return nil, true
		case <-ctx.Done():
			return nil, false
		}
	}
	rel, ok := d.endpoints.acquireWait(ctx, rawURL, fastEndpoint)
	if !ok {
		<-d.attemptSlots
		return nil, false
	}
	return func(took time.Duration) { rel(took); <-d.attemptSlots }, false
}

// firstAttempt makes a delivery's first attempt on fan-out's behalf and
// settles it like the deliver stage would: a success is logged, a failure
// recorded and its retry published as a delivery message (see firstMsg).
func (d *Dispatcher) firstAttempt(fe *fannedEvent, dl delivery, sub *herald.Subscription, release func(time.Duration)) {
	defer d.firsts.Done()
	defer fe.done()
	ctx := d.firstCtx
	j := &job{dl: dl, sub: sub}
	fm := &firstMsg{ctx: ctx, d: d, j: j}
	j.msg = fm
	d.metrics.firsts.Inc()
	start := time.Now()
	err := d.attemptNow(ctx, j)
	release(time.Since(start))
	d.settle(ctx, j, err)
	if fm.err != nil {
		d.log.Warn().Err(fm.err).Str("delivery_id", j.dl.ID).Msg("could not queue the retry of a first attempt; the event will be fanned out again")
		fe.failed.Store(true)
	}
}

// firstMsg stands for the delivery message a first attempt made by fan-out
// does not have, so that settle treats both alike. Its NakWithDelay
// publishes the delivery message of the retry: settle has recorded the
// attempt and its next time in the log, and the deliver stage holds the
// message until then. Ack and Term have nothing to acknowledge.
type firstMsg struct {
	ctx context.Context
	d   *Dispatcher
	j   *job
	err error
}

func (m *firstMsg) Ack() error  { return nil }
func (m *firstMsg) Term() error { return nil }
func (m *firstMsg) NakWithDelay(time.Duration) error {
	dl := m.j.dl
	dl.Retry = true
	m.err = m.d.publishDeliveries(m.ctx, []delivery{dl})
	return m.err
}

// waitFirsts waits for first attempts in flight at shutdown, cancelling
// them after grace.
func (d *Dispatcher) waitFirsts(grace time.Duration) {
	waitOrCancel(&d.firsts, grace, d.firstCancel, func() {
		d.log.Warn().Msg("first attempts still running at shutdown; cancelling them (their events will be fanned out again)")
	})
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

// publishDeliveries publishes dls and waits until all are stored. A
// message's Nats-Msg-Id is its delivery id, so a replay of the event does
// not double it.
func (d *Dispatcher) publishDeliveries(ctx context.Context, dls []delivery) error {
	if len(dls) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(dls))
	for i := range dls {
		body, err := json.Marshal(&dls[i])
		if err != nil {
			return fmt.Errorf("encode delivery: %w", err)
		}
		m := &nats.Msg{Subject: deliverySubject(dls[i].Event.Cloud, dls[i].SubscriptionID), Data: body}
		f, err := d.js.PublishMsgAsync(m, jetstream.WithMsgID(dls[i].ID))
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
