package dispatcher

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/herald-webhooks/herald"
)

// headerMsg is an event message of a type, with headers.
type headerMsg struct {
	eventMsg
	typ string
	h   nats.Header
}

func (m *headerMsg) Headers() nats.Header { return m.h }
func (m *headerMsg) Subject() string      { return "herald.events.acme." + m.typ }

// digestSchemas knows video-created's schema as version "v1".
type digestSchemas struct{ noSchemas }

func (digestSchemas) Digest(typ string) string {
	if typ == "video-created" {
		return "v1"
	}
	return ""
}

// TestSchemaChecked: fan-out skips validation only for an event whose
// publisher validated it against the same schema version.
func TestSchemaChecked(t *testing.T) {
	d := &Dispatcher{cfg: Config{Schemas: digestSchemas{}}}
	for _, c := range []struct {
		name, typ, header string
		want              bool
	}{
		{"same version", "video-created", "v1", true},
		{"no header", "video-created", "", false},
		{"another version", "video-created", "v0", false},
		{"a type without a schema", "video-exploded", "", false},
		{"a type without a schema, with a header", "video-exploded", "v1", false},
		{"a bad subject", "video.created", "v1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &headerMsg{typ: c.typ, h: nats.Header{}}
			if c.header != "" {
				m.h.Set(herald.HeaderSchema, c.header)
			}
			if got := d.schemaChecked(m); got != c.want {
				t.Errorf("schemaChecked = %v, want %v", got, c.want)
			}
		})
	}
	if d.schemaChecked(&eventMsg{}) {
		t.Error("a message without headers counts as validated")
	}
}

// TestPlainObject: even a validated event's data must be an object that
// cannot hold the reserved "event" key.
func TestPlainObject(t *testing.T) {
	for data, want := range map[string]bool{
		`{"video_id":"v","status":"success"}`: true,
		` {"video_id":"v"}`:                   true,
		`{"video_id":"v","event":"x"}`:        false,
		`{"video_id":"v","\u0065vent":"x"}`:   false,
		`{"note":"an event"}`:                 true,
		`{"note":"\"event\""}`:                false, // validated in full: fine
		`["event"]`:                           false,
		`"text"`:                              false,
	} {
		if got := plainObject(json.RawMessage(data)); got != want {
			t.Errorf("plainObject(%s) = %v, want %v", data, got, want)
		}
	}
}
