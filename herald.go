// Package herald holds the domain of the herald webhook service: events that
// encoders publish, the subscriptions through which each cloud (tenant) asks
// for them, the retry policies that govern redelivery, and the error kinds
// every other package speaks.
//
// The package knows no machinery: no NATS, no HTTP server, no storage. The
// packages beside it (publisher, dispatcher, subscriptions, schemas, api)
// import it; it imports none of them.
package herald

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Version is reported in the user-agent header of every notification.
var Version = "0.1.0"

// UserAgent is the user-agent header value herald sends.
func UserAgent() string { return "herald/" + Version }

// Subject layout. An event of type T for cloud C travels on
// herald.events.C.T; each (event, subscription) delivery on
// herald.deliveries.C.<subscription id>; a retry parked until it is due on
// herald.parked.C.<subscription id>.<delivery id>, and once due on
// herald.retries.C.<subscription id>.
const (
	EventSubjectPrefix    = "herald.events."
	DeliverySubjectPrefix = "herald.deliveries."
	ParkedSubjectPrefix   = "herald.parked."
	RetrySubjectPrefix    = "herald.retries."
	BacklogSubjectPrefix  = "herald.backlog."
)

// HeaderSchema is the NATS header a publisher sets on an event whose data it
// validated: the digest of the schema it used (schemas.Registry.Digest). The
// dispatcher validates an event again only when the header is absent or
// names another version of the type's schema, so data is checked once, at
// the edge, and an event published raw to NATS is still checked.
const HeaderSchema = "Herald-Schema"

var (
	cloudRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	typeRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	idRE      = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	objectIDs = regexp.MustCompile(`^[a-z]{2,4}_[A-Za-z0-9]{1,64}$`)
)

// ValidCloud reports whether s is a usable cloud id: 1–64 of [A-Za-z0-9_-],
// safe as one NATS subject token and one KV key token.
func ValidCloud(s string) bool { return cloudRE.MatchString(s) }

// ValidEventType reports whether s can name an event type (one subject token).
func ValidEventType(s string) bool { return typeRE.MatchString(s) }

// ValidEventID reports whether s is an acceptable event id: 1–128 of
// [A-Za-z0-9._:-], so that it travels safely in a Nats-Msg-Id header.
func ValidEventID(s string) bool { return idRE.MatchString(s) }

// ValidObjectID reports whether s looks like an id herald minted
// (a short prefix, an underscore, letters and digits).
func ValidObjectID(s string) bool { return objectIDs.MatchString(s) }

// NewID returns a fresh random id with the given prefix, such as "evt" or
// "sub": 128 bits of randomness in base32.
func NewID(prefix string) string { return prefix + "_" + rand.Text() }

// EventSubject is the subject an event of type typ for cloud is published on.
func EventSubject(cloud, typ string) string {
	return EventSubjectPrefix + cloud + "." + typ
}

// ParseEventSubject splits herald.events.<cloud>.<type> into its tokens and
// checks both.
func ParseEventSubject(subject string) (cloud, typ string, err error) {
	rest, ok := strings.CutPrefix(subject, EventSubjectPrefix)
	if !ok {
		return "", "", Invalid("subject", "not under "+EventSubjectPrefix)
	}
	cloud, typ, ok = strings.Cut(rest, ".")
	if !ok || !ValidCloud(cloud) {
		return "", "", Invalid("cloud", "subject does not name a valid cloud")
	}
	if !ValidEventType(typ) {
		return "", "", Invalid("type", "subject does not name a valid event type")
	}
	return cloud, typ, nil
}

// Event is one thing that happened on an encoding platform, as published by
// an encoder. ID is the idempotency key: publishing the same ID twice within
// the deduplication window delivers it once.
type Event struct {
	ID         string          `json:"id"`
	Cloud      string          `json:"cloud"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
	// Sequence is the event's stream sequence, set once JetStream stored it.
	Sequence uint64 `json:"sequence,omitempty"`
}

// MaxEnvelopeSize bounds an event as it travels on NATS (1 MiB, the default
// NATS max payload).
const MaxEnvelopeSize = 1 << 20

// envelope is the NATS message body of an event. Cloud and type travel in
// the subject, never in the body, so the two cannot disagree.
type envelope struct {
	ID         string          `json:"id"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// Envelope encodes e as the body of its NATS message:
// {"id":"…","occurred_at":"RFC 3339","data":{…}}.
func (e *Event) Envelope() ([]byte, error) {
	return json.Marshal(envelope{ID: e.ID, OccurredAt: e.OccurredAt.UTC(), Data: e.Data})
}

// ParseEnvelope decodes the body of a message published on subject into an
// Event. It checks the subject's tokens, the size, the id, the time and that
// data is a JSON object without the key "event" (CheckData); it does not
// check data against the type's schema.
func ParseEnvelope(subject string, body []byte) (Event, error) {
	e, err := DecodeEnvelope(subject, body)
	if err != nil {
		return Event{}, err
	}
	if err := CheckData(e.Data); err != nil {
		return Event{}, err
	}
	return e, nil
}

// DecodeEnvelope is ParseEnvelope without CheckData, for a caller that
// validates data against its schema next (which checks the same, and
// decodes data once instead of twice).
func DecodeEnvelope(subject string, body []byte) (Event, error) {
	return decodeEnvelope(subject, body, true)
}

// DecodePublishedEnvelope is DecodeEnvelope for a body written by herald's
// publisher (the message carries HeaderSchema), which never writes a field
// the envelope does not have: it ignores unknown fields instead of refusing
// them, and so decodes without copying the body first.
func DecodePublishedEnvelope(subject string, body []byte) (Event, error) {
	return decodeEnvelope(subject, body, false)
}

// badEnvelope is the error for a body that does not decode as an envelope.
func badEnvelope(err error) error {
	return Invalid("", "event envelope is not valid JSON of the form {id, occurred_at, data}: "+err.Error())
}

func decodeEnvelope(subject string, body []byte, strict bool) (Event, error) {
	cloud, typ, err := ParseEventSubject(subject)
	if err != nil {
		return Event{}, err
	}
	if len(body) > MaxEnvelopeSize {
		return Event{}, Invalid("", fmt.Sprintf("event is %d bytes, over the %d byte limit", len(body), MaxEnvelopeSize))
	}
	var env envelope
	if strict {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			return Event{}, badEnvelope(err)
		}
		if dec.More() {
			return Event{}, Invalid("", "event envelope has trailing data")
		}
	} else if err := json.Unmarshal(body, &env); err != nil { // trailing data is an error here too
		return Event{}, badEnvelope(err)
	}
	if !ValidEventID(env.ID) {
		return Event{}, Invalid("id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if env.OccurredAt.IsZero() {
		return Event{}, Invalid("occurred_at", "is required (RFC 3339 time)")
	}
	if len(env.Data) == 0 {
		return Event{}, Invalid("data", "must be a JSON object")
	}
	return Event{ID: env.ID, Cloud: cloud, Type: typ, OccurredAt: env.OccurredAt, Data: env.Data}, nil
}

// CheckData checks that data is a JSON object without the reserved key
// "event" (the notification body puts the event type there).
func CheckData(data json.RawMessage) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return Invalid("data", "must be a JSON object")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Invalid("data", "is not valid JSON: "+err.Error())
	}
	if _, ok := top["event"]; ok {
		return Invalid("data.event", `is reserved: the notification carries the event type under "event"`)
	}
	return nil
}
