package schemas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var builtinTypes = []string{"encoding-complete", "encoding-progress", "state_changed", "video-created", "video-encoded"}

// newRegistry returns a registry of the built-in types plus the schema
// files given as name → content, written to a fresh directory.
func newRegistry(t testing.TB, files map[string]string) *schemas.Registry {
	t.Helper()
	dir := ""
	if files != nil {
		dir = writeDir(t, files)
	}
	r, err := schemas.New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkValidation checks that Validate(typ, data) returns nil when field is
// empty, and otherwise a *herald.ValidationError with exactly field and msg.
func checkValidation(t *testing.T, r *schemas.Registry, typ, data, field, msg string) {
	t.Helper()
	err := r.Validate(typ, json.RawMessage(data))
	if field == "" {
		if err != nil {
			t.Fatalf("Validate(%q, %s) = %v, want nil", typ, data, err)
		}
		return
	}
	var verr *herald.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Validate(%q, %s) = %#v, want a *herald.ValidationError", typ, data, err)
	}
	if verr.Field != field || verr.Message != msg {
		t.Fatalf("Validate(%q, %s):\n got %s: %s\nwant %s: %s", typ, data, verr.Field, verr.Message, field, msg)
	}
}

func TestValidateBuiltinTypes(t *testing.T) {
	long := strings.Repeat("é", 256) // 256 characters, 512 bytes
	tooLong := strings.Repeat("a", 257)
	const idMsg = "must be a non-empty string of at most 256 characters"
	const statusMsg = `must be one of "success", "fail"`
	const stateMsg = `must be one of "error", "standby", "processing", "disconnected", "cancelling", "finishing", "cancelled", "finished", "failed"`

	tests := []struct {
		name  string
		typ   string
		data  string
		field string // "" when the data is valid
		msg   string
	}{
		// video-created
		{"video-created/minimal is valid", "video-created", `{"video_id":"v1","status":"success"}`, "", ""},
		{"video-created/failure is valid", "video-created", `{"video_id":"v1","status":"fail"}`, "", ""},
		{"video-created/all fields and custom ones are valid", "video-created",
			`{"video_id":"v1","status":"success","encoding_ids":["e1","e2"],"metadata":{"width":1280,"height":720,"duration":12.5,"codec":"h264"},"custom":{"x":[1,2]}}`, "", ""},
		{"video-created/empty encoding_ids is valid", "video-created", `{"video_id":"v1","status":"success","encoding_ids":[]}`, "", ""},
		{"video-created/zero metadata is valid", "video-created", `{"video_id":"v1","status":"success","metadata":{"width":0,"height":0,"duration":0}}`, "", ""},
		{"video-created/integral float width is valid", "video-created", `{"video_id":"v1","status":"success","metadata":{"width":1280.0}}`, "", ""},
		{"video-created/256-character id is valid", "video-created", `{"video_id":"` + long + `","status":"success"}`, "", ""},
		{"video-created/missing video_id is required", "video-created", `{"status":"success"}`, "data.video_id", "is required"},
		{"video-created/missing status is required", "video-created", `{"video_id":"v1"}`, "data.status", "is required"},
		{"video-created/empty object names the first required property", "video-created", `{}`, "data.video_id", "is required"},
		{"video-created/missing property beats a deeper error", "video-created", `{"status":"success","metadata":{"width":-1}}`, "data.video_id", "is required"},
		{"video-created/unknown status is rejected", "video-created", `{"video_id":"v1","status":"done"}`, "data.status", statusMsg},
		{"video-created/non-string status is rejected", "video-created", `{"video_id":"v1","status":1}`, "data.status", statusMsg},
		{"video-created/empty video_id is rejected", "video-created", `{"video_id":"","status":"success"}`, "data.video_id", idMsg},
		{"video-created/257-character video_id is rejected", "video-created", `{"video_id":"` + tooLong + `","status":"success"}`, "data.video_id", idMsg},
		{"video-created/numeric video_id is rejected", "video-created", `{"video_id":42,"status":"success"}`, "data.video_id", idMsg},
		{"video-created/null video_id is rejected", "video-created", `{"video_id":null,"status":"success"}`, "data.video_id", idMsg},
		{"video-created/encoding_ids not an array is rejected", "video-created", `{"video_id":"v1","status":"success","encoding_ids":"e1"}`, "data.encoding_ids", "must be an array of strings"},
		{"video-created/empty encoding id is rejected", "video-created", `{"video_id":"v1","status":"success","encoding_ids":["e1",""]}`, "data.encoding_ids[1]", idMsg},
		{"video-created/numeric encoding id is rejected", "video-created", `{"video_id":"v1","status":"success","encoding_ids":[7]}`, "data.encoding_ids[0]", idMsg},
		{"video-created/metadata not an object is rejected", "video-created", `{"video_id":"v1","status":"success","metadata":[]}`, "data.metadata", "must be an object"},
		{"video-created/negative width is rejected", "video-created", `{"video_id":"v1","status":"success","metadata":{"width":-1}}`, "data.metadata.width", "must be a non-negative integer"},
		{"video-created/fractional height is rejected", "video-created", `{"video_id":"v1","status":"success","metadata":{"height":720.5}}`, "data.metadata.height", "must be a non-negative integer"},
		{"video-created/string width is rejected", "video-created", `{"video_id":"v1","status":"success","metadata":{"width":"1280"}}`, "data.metadata.width", "must be a non-negative integer"},
		{"video-created/negative duration is rejected", "video-created", `{"video_id":"v1","status":"success","metadata":{"duration":-0.5}}`, "data.metadata.duration", "must be a non-negative number"},
		{"video-created/several errors give the first field", "video-created", `{"video_id":"v1","status":"success","metadata":{"width":-1,"duration":-1}}`, "data.metadata.duration", "must be a non-negative number"},

		// video-encoded
		{"video-encoded/minimal is valid", "video-encoded", `{"video_id":"v1","encoding_ids":["e1"]}`, "", ""},
		{"video-encoded/custom fields are valid", "video-encoded", `{"video_id":"v1","encoding_ids":["e1","e2"],"note":"x"}`, "", ""},
		{"video-encoded/missing video_id is required", "video-encoded", `{"encoding_ids":["e1"]}`, "data.video_id", "is required"},
		{"video-encoded/missing encoding_ids is required", "video-encoded", `{"video_id":"v1"}`, "data.encoding_ids", "is required"},
		{"video-encoded/empty encoding_ids is rejected", "video-encoded", `{"video_id":"v1","encoding_ids":[]}`, "data.encoding_ids", "must be a non-empty array of strings"},
		{"video-encoded/encoding_ids not an array is rejected", "video-encoded", `{"video_id":"v1","encoding_ids":{"0":"e1"}}`, "data.encoding_ids", "must be a non-empty array of strings"},
		{"video-encoded/empty encoding id is rejected", "video-encoded", `{"video_id":"v1","encoding_ids":["e1","e2",""]}`, "data.encoding_ids[2]", idMsg},

		// encoding-progress
		{"encoding-progress/minimal is valid", "encoding-progress", `{"encoding_id":"e1","progress":0}`, "", ""},
		{"encoding-progress/full is valid", "encoding-progress", `{"encoding_id":"e1","progress":100,"video_id":"v1"}`, "", ""},
		{"encoding-progress/missing encoding_id is required", "encoding-progress", `{"progress":5}`, "data.encoding_id", "is required"},
		{"encoding-progress/missing progress is required", "encoding-progress", `{"encoding_id":"e1"}`, "data.progress", "is required"},
		{"encoding-progress/progress over 100 is rejected", "encoding-progress", `{"encoding_id":"e1","progress":101}`, "data.progress", "must be an integer between 0 and 100"},
		{"encoding-progress/negative progress is rejected", "encoding-progress", `{"encoding_id":"e1","progress":-1}`, "data.progress", "must be an integer between 0 and 100"},
		{"encoding-progress/fractional progress is rejected", "encoding-progress", `{"encoding_id":"e1","progress":50.5}`, "data.progress", "must be an integer between 0 and 100"},
		{"encoding-progress/string progress is rejected", "encoding-progress", `{"encoding_id":"e1","progress":"50"}`, "data.progress", "must be an integer between 0 and 100"},
		{"encoding-progress/empty video_id is rejected", "encoding-progress", `{"encoding_id":"e1","progress":5,"video_id":""}`, "data.video_id", idMsg},
		{"encoding-progress/number too big for a double is rejected", "encoding-progress", `{"encoding_id":"e1","progress":1e400}`, "data.progress", "is out of range: numbers must fit in a 64-bit float"},

		// encoding-complete
		{"encoding-complete/minimal is valid", "encoding-complete", `{"encoding_id":"e1"}`, "", ""},
		{"encoding-complete/full is valid", "encoding-complete", `{"encoding_id":"e1","video_id":"v1","status":"fail"}`, "", ""},
		{"encoding-complete/missing encoding_id is required", "encoding-complete", `{"video_id":"v1"}`, "data.encoding_id", "is required"},
		{"encoding-complete/unknown status is rejected", "encoding-complete", `{"encoding_id":"e1","status":"ok"}`, "data.status", statusMsg},
		{"encoding-complete/long encoding_id is rejected", "encoding-complete", `{"encoding_id":"` + tooLong + `"}`, "data.encoding_id", idMsg},

		// state_changed
		{"state_changed/minimal is valid", "state_changed", `{"job_id":"j1","state":"processing"}`, "", ""},
		{"state_changed/full is valid", "state_changed", `{"job_id":"j1","state":"finished","previous_state":"finishing","output":"hls-720p"}`, "", ""},
		{"state_changed/missing job_id is required", "state_changed", `{"state":"error"}`, "data.job_id", "is required"},
		{"state_changed/missing state is required", "state_changed", `{"job_id":"j1"}`, "data.state", "is required"},
		{"state_changed/unknown state is rejected", "state_changed", `{"job_id":"j1","state":"running"}`, "data.state", stateMsg},
		{"state_changed/unknown previous_state is rejected", "state_changed", `{"job_id":"j1","state":"error","previous_state":"Processing"}`, "data.previous_state", stateMsg},
		{"state_changed/non-string output is rejected", "state_changed", `{"job_id":"j1","state":"error","output":3}`, "data.output", "must be a string"},

		// whatever the type
		{"not an object/array is rejected", "video-created", `[]`, "data", "must be a JSON object"},
		{"not an object/null is rejected", "video-created", `null`, "data", "must be a JSON object"},
		{"not an object/string is rejected", "video-created", `"x"`, "data", "must be a JSON object"},
		{"not an object/empty is rejected", "video-created", ``, "data", "must be a JSON object"},
		{"not an object/whitespace is rejected", "video-created", " \n", "data", "must be a JSON object"},
		{"not JSON/truncated object is rejected", "video-created", `{"video_id":"v1"`, "data", "is not valid JSON: unexpected end of JSON input"},
		{"not JSON/trailing data is rejected", "video-created", `{"video_id":"v1","status":"success"} {}`, "data", "is not valid JSON: invalid character '{' after top-level value"},
		{"leading whitespace is valid", "video-created", " \t\r\n" + `{"video_id":"v1","status":"success"}`, "", ""},
		{"custom property with a number too big for a double is rejected", "video-created", `{"video_id":"v1","status":"success","x":{"a b":[1,-2e999]}}`, `data.x["a b"][1]`, "is out of range: numbers must fit in a 64-bit float"},
	}
	r := newRegistry(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValidation(t, r, tt.typ, tt.data, tt.field, tt.msg)
		})
	}
}

func TestValidateUnknownTypeListsKnownOnes(t *testing.T) {
	r := newRegistry(t, nil)
	for _, typ := range []string{"video-deleted", "", "Video-Created", "a.b"} {
		want := fmt.Sprintf("unknown event type %q (known: encoding-complete, encoding-progress, state_changed, video-created, video-encoded)", typ)
		checkValidation(t, r, typ, `{}`, "type", want)
	}
}

func TestValidateRefusesReservedEventKey(t *testing.T) {
	// The extra type's schema says nothing about "event": Validate refuses
	// it all the same.
	r := newRegistry(t, map[string]string{"thumbnail-ready.json": `{"type":"object"}`})
	const msg = `is reserved: the notification carries the event type under "event"`
	valid := map[string]string{
		"video-created":     `"video_id":"v1","status":"success"`,
		"video-encoded":     `"video_id":"v1","encoding_ids":["e1"]`,
		"encoding-progress": `"encoding_id":"e1","progress":1`,
		"encoding-complete": `"encoding_id":"e1"`,
		"state_changed":     `"job_id":"j1","state":"error"`,
		"thumbnail-ready":   `"x":1`,
	}
	for typ, fields := range valid {
		t.Run(typ+"/event key is reserved", func(t *testing.T) {
			checkValidation(t, r, typ, `{`+fields+`}`, "", "")
			checkValidation(t, r, typ, `{`+fields+`,"event":"`+typ+`"}`, "data.event", msg)
		})
	}
	t.Run("nested event key is allowed", func(t *testing.T) {
		checkValidation(t, r, "video-created", `{"video_id":"v1","status":"success","metadata":{"event":"x"}}`, "", "")
	})
}

// The schema files are published to producers, so each must stand on its
// own: titled, described, and forbidding "event" itself.
func TestBuiltinSchemaFiles(t *testing.T) {
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, f := range files {
		types = append(types, strings.TrimSuffix(f, ".json"))
	}
	if !slices.Equal(types, builtinTypes) {
		t.Fatalf("schema files define %v, want %v", types, builtinTypes)
	}
	if got := newRegistry(t, nil).Types(); !slices.Equal(got, builtinTypes) {
		t.Fatalf("Types() = %v, want %v", got, builtinTypes)
	}
	for _, f := range files {
		t.Run(f+" is titled, described and forbids event", func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Schema      string `json:"$schema"`
				Title       string `json:"title"`
				Description string `json:"description"`
			}
			if err := json.Unmarshal(src, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %q, want draft 2020-12", doc.Schema)
			}
			if doc.Title != strings.TrimSuffix(f, ".json") || doc.Description == "" {
				t.Errorf("title %q, description %q: want the type name and a description", doc.Title, doc.Description)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			c := jsonschema.NewCompiler()
			if err := c.AddResource(f, v); err != nil {
				t.Fatal(err)
			}
			sch, err := c.Compile(f)
			if err != nil {
				t.Fatal(err)
			}
			err = sch.Validate(map[string]any{"event": "x"})
			if err == nil {
				t.Fatal(`schema accepts a top-level "event" key`)
			}
			if !strings.Contains(err.Error(), "at '/event': false schema") {
				t.Fatalf(`schema rejects {"event": "x"}, but not for the event key: %v`, err)
			}
		})
	}
}

func TestNewWithDirectory(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"thumbnail-ready.json": `{
			"$schema": "https://json-schema.org/draft/2020-12/schema",
			"$id": "https://example.com/schemas/thumbnail-ready.json",
			"title": "thumbnail-ready",
			"description": "A thumbnail was made.",
			"type": "object",
			"required": ["video_id", "sizes"],
			"properties": {
				"video_id": {"type": "string", "minLength": 1},
				"sizes": {"type": "array", "maxItems": 3, "items": {"$ref": "#/$defs/size"}},
				"a.b": {"const": true},
				"label": {"type": ["string", "null"]},
				"size": {"anyOf": [{"type": "integer"}, {"enum": ["small", "large"]}]}
			},
			"$defs": {
				"size": {
					"type": "object",
					"required": ["url"],
					"properties": {"url": {"type": "string", "pattern": "^https://"}, "px": {"type": "integer", "exclusiveMinimum": 0}}
				}
			}
		}`,
		// No "$schema": read as draft 2020-12.
		"video-encoded.json": `{"type": "object", "required": ["video_id"]}`,
		"README.md":          "not a schema",
	})
	if err := os.Mkdir(filepath.Join(dir, "old.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := schemas.New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	wantTypes := []string{"encoding-complete", "encoding-progress", "state_changed", "thumbnail-ready", "video-created", "video-encoded"}
	if got := r.Types(); !slices.Equal(got, wantTypes) {
		t.Fatalf("Types() = %v, want %v", got, wantTypes)
	}
	if !r.Known("thumbnail-ready") || r.Known("old") || r.Known("README") {
		t.Fatalf("Known: thumbnail-ready %v, old %v, README %v; want true, false, false",
			r.Known("thumbnail-ready"), r.Known("old"), r.Known("README"))
	}

	tests := []struct {
		name, typ, data, field, msg string
	}{
		{"extra type/valid data is valid", "thumbnail-ready", `{"video_id":"v1","sizes":[{"url":"https://x/1.jpg","px":320}]}`, "", ""},
		{"extra type/missing nested property is named", "thumbnail-ready", `{"video_id":"v1","sizes":[{"url":"https://x"},{"px":1}]}`, "data.sizes[1].url", "is required"},
		{"extra type/pattern mismatch is rejected", "thumbnail-ready", `{"video_id":"v1","sizes":[{"url":"http://x"}]}`, "data.sizes[0].url", "must be a string matching ^https://"},
		{"extra type/exclusive minimum is rejected", "thumbnail-ready", `{"video_id":"v1","sizes":[{"url":"https://x","px":0}]}`, "data.sizes[0].px", "must be an integer greater than 0"},
		{"extra type/too many items is rejected", "thumbnail-ready", `{"video_id":"v1","sizes":[{"url":"https://a"},{"url":"https://b"},{"url":"https://c"},{"url":"https://d"}]}`, "data.sizes", "must be an array of at most 3 objects"},
		{"extra type/odd property name is quoted", "thumbnail-ready", `{"video_id":"v1","sizes":[],"a.b":false}`, `data["a.b"]`, "must be true"},
		{"extra type/one of several types is required", "thumbnail-ready", `{"video_id":"v1","sizes":[],"label":1}`, "data.label", "must be a string or null"},
		{"extra type/no anyOf alternative matching is rejected", "thumbnail-ready", `{"video_id":"v1","sizes":[],"size":"medium"}`, "data.size", "does not match any of the allowed forms"},
		{"replaced built-in/new schema applies", "video-encoded", `{"video_id":"v1"}`, "", ""},
		{"replaced built-in/new schema's rule is enforced", "video-encoded", `{"encoding_ids":["e1"]}`, "data.video_id", "is required"},
		{"other built-ins/still apply", "video-created", `{"video_id":"v1"}`, "data.status", "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValidation(t, r, tt.typ, tt.data, tt.field, tt.msg)
		})
	}
}

func TestNewRejectsBadFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		content string
		want    string // in the error, besides the file's path
	}{
		{"not JSON is an error", "broken.json", `{"type": "object",`, "not valid JSON"},
		{"trailing data is an error", "broken.json", `{} {}`, "not valid JSON"},
		{"invalid schema is an error", "broken.json", `{"type": "strng"}`, "metaschema"},
		{"invalid regexp is an error", "broken.json", `{"properties": {"x": {"pattern": "("}}}`, "metaschema"},
		{"external reference is an error", "broken.json", `{"$ref": "other.json"}`, "self-contained"},
		{"remote reference is an error", "broken.json", `{"$ref": "https://example.com/s.json"}`, "self-contained"},
		{"unknown metaschema is an error", "broken.json", `{"$schema": "https://example.com/meta"}`, "self-contained"},
		{"dangling local reference is an error", "broken.json", `{"$ref": "#/$defs/nope"}`, "nope"},
		{"bad type name is an error", "video created.json", `{}`, "not a valid event type name"},
		{"empty type name is an error", ".json", `{}`, "not a valid event type name"},
		{"overlong type name is an error", strings.Repeat("x", 65) + ".json", `{}`, "not a valid event type name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"fine.json": `{}`, tt.file: tt.content})
			r, err := schemas.New(dir)
			if err == nil {
				t.Fatalf("New accepted %s: types %v", tt.content, r.Types())
			}
			path := filepath.Join(dir, tt.file)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v\nwant an error naming %s and saying %q", err, path, tt.want)
			}
		})
	}
	t.Run("missing directory is an error", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		if _, err := schemas.New(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("New(%q) = %v, want an error naming the directory", dir, err)
		}
	})
}

func TestTypesReturnsACopy(t *testing.T) {
	r := newRegistry(t, nil)
	r.Types()[0] = "mangled"
	if got := r.Types(); !slices.Equal(got, builtinTypes) {
		t.Fatalf("Types() = %v after the caller changed its copy, want %v", got, builtinTypes)
	}
}

func TestValidateIsSafeForConcurrentUse(t *testing.T) {
	r := newRegistry(t, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				if err := r.Validate("video-created", json.RawMessage(typicalEvent)); err != nil {
					t.Errorf("goroutine %d: %v", i, err)
					return
				}
				if err := r.Validate("encoding-progress", json.RawMessage(`{"encoding_id":"e","progress":101}`)); err == nil {
					t.Errorf("goroutine %d: progress 101 accepted", i)
					return
				}
			}
		})
	}
	wg.Wait()
}

const typicalEvent = `{"video_id":"vid_2x7Kq9","status":"success","encoding_ids":["enc_a1b2c3","enc_d4e5f6"],"metadata":{"width":1920,"height":1080,"duration":734.2,"codec":"h264","fps":29.97}}`

func FuzzValidate(f *testing.F) {
	r := newRegistry(f, map[string]string{
		"nested.json": `{"type":"object","properties":{"list":{"type":"array","items":{"anyOf":[{"type":"string"},{"type":"object","required":["k"]}]}}},"additionalProperties":{"not":{"type":"null"}}}`,
	})
	seeds := []struct{ typ, data string }{
		{"video-created", typicalEvent},
		{"video-created", `{"status":"bogus","metadata":{"width":-1.5}}`},
		{"video-encoded", `{"video_id":"v","encoding_ids":["",1,null]}`},
		{"encoding-progress", `{"encoding_id":"e","progress":1e400}`},
		{"encoding-progress", `{"encoding_id":"e","progress":1e-400}`},
		{"encoding-complete", `{"encoding_id":"e","status":"fail","event":1}`},
		{"state_changed", `{"job_id":"j","state":"error","previous_state":"x"}`},
		{"nested", `{"list":["a",{"k":1},{}],"x":null,"a.b":{}}`},
		{"unknown", `{}`},
		{"video-created", `[1,2]`},
		{"video-created", `{"a":`},
		{"video-created", "{\"video_id\":\"\xff\",\"status\":\"success\"}"},
	}
	for _, s := range seeds {
		f.Add(s.typ, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		err := r.Validate(typ, data)
		if err == nil {
			if herr := herald.CheckData(data); herr != nil {
				t.Fatalf("Validate accepted data that herald.CheckData refuses: %v", herr)
			}
			return
		}
		verr, ok := err.(*herald.ValidationError)
		if !ok {
			t.Fatalf("Validate returned %T %v, want a *herald.ValidationError", err, err)
		}
		if verr.Field != "type" && verr.Field != "data" && !strings.HasPrefix(verr.Field, "data.") && !strings.HasPrefix(verr.Field, "data[") {
			t.Fatalf("Field %q names neither the type nor the data", verr.Field)
		}
		if verr.Message == "" {
			t.Fatal("empty message")
		}
		if again := r.Validate(typ, data); again.Error() != err.Error() {
			t.Fatalf("same input, different errors: %v, then %v", err, again)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	r := newRegistry(b, nil)
	data := json.RawMessage(typicalEvent)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := r.Validate("video-created", data); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleRegistry_Validate() {
	r, err := schemas.New("")
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Validate("encoding-progress", json.RawMessage(`{"encoding_id":"enc_1","progress":42}`)))
	fmt.Println(r.Validate("encoding-progress", json.RawMessage(`{"encoding_id":"enc_1","progress":142}`)))
	fmt.Println(r.Validate("video-created", json.RawMessage(`{"status":"success"}`)))
	// Output:
	// <nil>
	// data.progress: must be an integer between 0 and 100
	// data.video_id: is required
}

func TestEveryBuiltInTypeHasAValidExample(t *testing.T) {
	r, err := schemas.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range r.Types() {
		t.Run(typ, func(t *testing.T) {
			ex, ok := r.Example(typ)
			if !ok {
				t.Fatal("no example")
			}
			if err := r.Validate(typ, ex); err != nil {
				t.Errorf("example %s is invalid: %v", ex, err)
			}
		})
	}
	if _, ok := r.Example("no-such-type"); ok {
		t.Error("an unknown type has an example")
	}
}

func TestSchemaWithAnInvalidExampleIsRefused(t *testing.T) {
	dir := t.TempDir()
	src := `{"type":"object","required":["a"],"examples":[{"b":1}]}`
	if err := os.WriteFile(filepath.Join(dir, "thing.json"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := schemas.New(dir)
	if err == nil || !strings.Contains(err.Error(), "thing.json") || !strings.Contains(err.Error(), "example") {
		t.Errorf("error %v, want one naming thing.json and its example", err)
	}
}

// TestDigestNamesTheSchemaVersion: the digest is the same wherever the same
// schema is loaded, changes when a type's schema is replaced, and is empty
// for an unknown type.
func TestDigestNamesTheSchemaVersion(t *testing.T) {
	a, b := newRegistry(t, nil), newRegistry(t, nil)
	replaced := newRegistry(t, map[string]string{"video-created.json": `{"type":"object","required":["video_id"]}`})
	for _, typ := range a.Types() {
		if d := a.Digest(typ); d == "" || d != b.Digest(typ) {
			t.Errorf("%s: digests %q and %q of the same schema", typ, d, b.Digest(typ))
		}
	}
	if a.Digest("video-created") == replaced.Digest("video-created") {
		t.Error("a replaced schema keeps its digest")
	}
	if a.Digest("video-encoded") != replaced.Digest("video-encoded") {
		t.Error("replacing one type changed another's digest")
	}
	if d := a.Digest("video-exploded"); d != "" {
		t.Errorf("unknown type has digest %q", d)
	}
}
