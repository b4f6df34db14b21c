package dispatcher

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/herald-webhooks/herald"
)

// headerMsg is an event message with headers.
type headerMsg struct {
	eventMsg
	h nats.Header
}

func (m *headerMsg) Headers() nats.Header { return m.h }

// digestSchemas knows video-created's schema as version "v1".
type digestSchemas struct{ noSchemas }

func (digestSchemas) Digest(typ string) string {
	if typ == "video-created" {
		return "v1"
	}
	return ""
}

// TestValidatedByPublisher: fan-out skips validation only for an event
// whose publisher validated it against the same schema version, and even
// then not for data that could carry the reserved "event" key.
func TestValidatedByPublisher(t *testing.T) {
	d := &Dispatcher{cfg: Config{Schemas: digestSchemas{}}}
	for _, c := range []struct {
		name, typ, header, data string
		want                    bool
	}{
		{"same version", "video-created", "v1", `{"video_id":"v","status":"success"}`, true},
		{"leading space", "video-created", "v1", ` {"video_id":"v"}`, true},
		{"no header", "video-created", "", `{"video_id":"v"}`, false},
		{"another version", "video-created", "v0", `{"video_id":"v"}`, false},
		{"a type without a schema", "video-exploded", "", `{"video_id":"v"}`, false},
		{"reserved key", "video-created", "v1", `{"video_id":"v","event":"x"}`, false},
		{"an escape", "video-created", "v1", `{"video_id":"v","\u0065vent":"x"}`, false},
		{"not an object", "video-created", "v1", `["event"]`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &headerMsg{h: nats.Header{}}
			if c.header != "" {
				m.h.Set(herald.HeaderSchema, c.header)
			}
			ev := herald.Event{Type: c.typ, Data: json.RawMessage(c.data)}
			if got := d.validated(m, ev); got != c.want {
				t.Errorf("validated = %v, want %v", got, c.want)
			}
		})
	}
	if d.validated(&eventMsg{}, herald.Event{Type: "video-created", Data: json.RawMessage(`{}`)}) {
		t.Error("a message without headers counts as validated")
	}
}
