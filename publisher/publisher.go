// Package publisher is the producer side of herald: the Go API an encoder
// embeds to publish events. It validates each event against its type's
// schema, fills in the id and time when the producer left them out, and
// publishes it on herald.events.<cloud>.<type> with a Nats-Msg-Id header so
// that JetStream drops a second publish of the same id, and a Herald-Schema
// header naming the schema it validated against, so that the dispatcher
// does not validate it again.
//
//	nc, _ := nats.Connect(url)
//	js, _ := jetstream.New(nc)
//	reg, _ := schemas.New("")
//	pub, _ := publisher.New(publisher.Config{JetStream: js, Schemas: reg})
//	ev, err := pub.Publish(ctx, herald.Event{Cloud: "acme", Type: "video-created", Data: data})
package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
)

// Validator checks an event's data against its type's schema. It returns a
// *herald.ValidationError naming the field ("type" for an unknown type,
// "data.<path>" for bad data). It must be safe for concurrent use.
type Validator interface {
	Validate(typ string, data json.RawMessage) error
}

// Config is what a Publisher needs. JetStream and Schemas are required.
type Config struct {
	JetStream jetstream.JetStream
	Schemas   Validator
	Logger    zerolog.Logger
	// Now stamps events published without occurred_at (default time.Now).
	Now func() time.Time
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.JetStream == nil {
		return errors.New("publisher: JetStream is required")
	}
	if c.Schemas == nil {
		return errors.New("publisher: Schemas is required")
	}
	return nil
}

// Publisher validates and publishes events. It is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	schemas Validator
	log     zerolog.Logger
	now     func() time.Time
}

// New returns a Publisher.
func New(cfg Config) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Publisher{js: cfg.JetStream, schemas: cfg.Schemas, log: cfg.Logger.With().Str("component", "publisher").Logger(), now: cfg.Now}, nil
}

// MsgID is the Nats-Msg-Id of an event: the event id scoped by its cloud,
// "<cloud>:<id>", because JetStream deduplicates across the whole stream and
// one cloud's id must never suppress another cloud's event.
func MsgID(cloud, id string) string { return cloud + ":" + id }

// Prepare validates e and fills in what the producer may leave out: a fresh
// id, and occurred_at = now. It returns the event as it will be published.
func (p *Publisher) Prepare(e herald.Event) (herald.Event, error) {
	if !herald.ValidCloud(e.Cloud) {
		return e, herald.Invalid("cloud", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if e.ID == "" {
		e.ID = herald.NewID("evt")
	} else if !herald.ValidEventID(e.ID) {
		return e, herald.Invalid("id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if e.Type == "" {
		return e, herald.Invalid("type", "is required")
	}
	if _, ok := p.schemas.(Digester); !ok {
		// A Digester refuses the same itself, with data decoded once.
		if err := herald.CheckData(e.Data); err != nil {
			return e, err
		}
	}
	if err := p.schemas.Validate(e.Type, e.Data); err != nil {
		return e, err
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = p.now()
	}
	e.OccurredAt = e.OccurredAt.UTC()
	return e, nil
}

// Publish validates e, publishes it and waits for JetStream to store it. It
// returns e with ID, OccurredAt and Sequence set. Publishing an id that was
// already published within the dedupe window stores nothing and returns the
// first publish's sequence. Errors: *herald.ValidationError for bad input;
// herald.ErrUnavailable (wrapped) when JetStream cannot take the event now
// (unreachable, stream missing, stream full): the event was not accepted.
func (p *Publisher) Publish(ctx context.Context, e herald.Event) (herald.Event, error) {
	e, msg, err := p.message(e)
	if err != nil {
		return e, err
	}
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(MsgID(e.Cloud, e.ID)))
	if err != nil {
		return e, Unaccepted(e.ID, err)
	}
	e.Sequence = ack.Sequence
	if ack.Duplicate {
		p.log.Debug().Str("cloud", e.Cloud).Str("event_id", e.ID).Uint64("sequence", ack.Sequence).Msg("duplicate event id; already stored")
	}
	return e, nil
}

// PublishAsync validates e and publishes it without waiting for JetStream,
// for a producer with many events at once. It returns e with ID and
// OccurredAt set, and JetStream's answer to come: the event is accepted
// once the future's Ok channel yields (a duplicate id too, with
// PubAck.Duplicate set), and not accepted if its Err channel does, with an
// error that Unaccepted explains. The JetStream context bounds the
// publishes awaiting an answer (jetstream.WithPublishAsyncMaxPending);
// js.PublishAsyncComplete waits for all of them. Errors returned here are
// those of Publish: nothing was sent.
func (p *Publisher) PublishAsync(e herald.Event) (herald.Event, jetstream.PubAckFuture, error) {
	e, msg, err := p.message(e)
	if err != nil {
		return e, nil, err
	}
	f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(MsgID(e.Cloud, e.ID)))
	if err != nil {
		return e, nil, Unaccepted(e.ID, err)
	}
	return e, f, nil
}

// Unaccepted describes JetStream's refusal of event id, or its failure to
// answer (err from a publish or a PubAckFuture), as an error wrapping
// herald.ErrUnavailable: the event was not accepted.
func Unaccepted(id string, err error) error {
	return fmt.Errorf("publish %s: %w", id, herald.Unavailable(explain(err)))
}

// Digester is a Validator that names the version of the schema it applied
// (schemas.Registry is one). The publisher sends it with each event as
// herald.HeaderSchema, so that the dispatcher, holding the same version,
// does not validate the event a second time. A Digester's Validate also
// refuses what herald.CheckData refuses (data that is not an object, or
// has the reserved "event" key), so the publisher does not check that
// separately.
type Digester interface {
	Digest(typ string) string
}

// message is e prepared and encoded as its NATS message.
func (p *Publisher) message(e herald.Event) (herald.Event, *nats.Msg, error) {
	e, err := p.Prepare(e)
	if err != nil {
		return e, nil, err
	}
	body, err := e.Envelope()
	if err != nil {
		return e, nil, fmt.Errorf("publish: encode: %w", err)
	}
	if len(body) > herald.MaxEnvelopeSize {
		return e, nil, herald.Invalid("data", fmt.Sprintf("event is %d bytes, over the %d byte limit", len(body), herald.MaxEnvelopeSize))
	}
	msg := &nats.Msg{Subject: herald.EventSubject(e.Cloud, e.Type), Data: body, Header: nats.Header{}}
	if d, ok := p.schemas.(Digester); ok {
		if v := d.Digest(e.Type); v != "" {
			msg.Header.Set(herald.HeaderSchema, v)
		}
	}
	return e, msg, nil
}

// jsStoreFailed is JetStream's "storing the message failed" error code: a
// stream at its size limit with DiscardNew, or a full disk.
const jsStoreFailed = 10077

// explain turns the JetStream errors a publisher can meet into a sentence.
func explain(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return "no events stream answers (is herald running, and this the right NATS server?)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "JetStream did not acknowledge in time: " + err.Error()
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsStoreFailed:
		return "the events stream cannot take the event (" + apiErr.Description + "): it is full (HERALD_EVENT_MAX_BYTES) or its disk is; the event was not accepted"
	case errors.As(err, &apiErr):
		return apiErr.Description
	}
	return err.Error()
}
