// Package schemas knows which event types herald accepts and checks the data
// of each published event against its type's JSON Schema, so that invalid
// events are refused at publish time with an error naming the field.
//
// Every built-in type has its schema in this folder as <type>.json (JSON
// Schema draft 2020-12), embedded in the binary: video-created,
// video-encoded, encoding-progress, encoding-complete and state_changed. An
// operator registers more types, or replaces a built-in one, by putting
// <type>.json files in a directory given to [New]; no code changes.
//
// Data may carry properties its schema does not name: producers add custom
// fields and herald forwards them to endpoints. The one exception is a
// top-level "event" key, which is reserved because the notification body puts
// the event type there. [Registry.Validate] refuses it for every type,
// whatever the schema says.
package schemas

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herald-webhooks/herald"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json
var builtin embed.FS

// reserved is the message for a top-level "event" key; herald.CheckData
// says the same.
const reserved = `is reserved: the notification carries the event type under "event"`

// Registry maps event types to their compiled schemas. It is immutable once
// New returns, so its methods are safe for concurrent use.
type Registry struct {
	schemas map[string]*schema
	types   []string // sorted keys of schemas
}

// schema is one type's compiled schema.
type schema struct {
	root *jsonschema.Schema
	// example is the schema's first "examples" entry, valid against it
	// (nil when the schema has none): the data of test notifications.
	example json.RawMessage
	// nodes holds every subschema by location, so that an error can be
	// described by the whole rule it broke ("an integer between 0 and 100")
	// rather than by the one keyword that failed.
	nodes map[string]*jsonschema.Schema
	// digest names this version of the schema (see Registry.Digest).
	digest string
}

// digestVersion changes whenever Validate starts to check something the
// schema file alone does not say, so that an event validated by an older
// publisher is checked again.
const digestVersion = "herald-schema-1\n"

// New loads the built-in schemas and, when dir is not empty, every *.json
// file in dir (subdirectories and other files are ignored). A file's name
// without ".json" is the type it defines and must be a valid event type
// (herald.ValidEventType); a file named like a built-in type replaces it.
// Schemas without "$schema" are read as draft 2020-12. Each file must be
// self-contained: references to other files or URLs are refused.
//
// A bad file (unreadable, not JSON, not a valid schema, badly named) is an
// error naming the file.
func New(dir string) (*Registry, error) {
	r := &Registry{schemas: map[string]*schema{}}
	names, err := fs.Glob(builtin, "*.json")
	if err != nil {
		return nil, fmt.Errorf("schemas: listing built-in schemas: %w", err)
	}
	for _, name := range names {
		src, err := builtin.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("schemas: reading built-in %s: %w", name, err)
		}
		typ := strings.TrimSuffix(name, ".json")
		s, err := compile(typ, src)
		if err != nil {
			return nil, fmt.Errorf("schemas: built-in %s: %w", name, err)
		}
		r.schemas[typ] = s
	}
	if dir != "" {
		if err := r.loadDir(dir); err != nil {
			return nil, err
		}
	}
	for typ := range r.schemas {
		r.types = append(r.types, typ)
	}
	slices.Sort(r.types)
	return r, nil
}

func (r *Registry) loadDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("schemas: reading schema directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		path := filepath.Join(dir, name)
		typ := strings.TrimSuffix(name, ".json")
		if !herald.ValidEventType(typ) {
			return fmt.Errorf("schemas: %s: %q is not a valid event type name (1-64 characters of A-Z a-z 0-9 _ -)", path, typ)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("schemas: %w", err)
		}
		s, err := compile(typ, src)
		if err != nil {
			return fmt.Errorf("schemas: %s: %w", path, err)
		}
		r.schemas[typ] = s
	}
	return nil
}

// compile compiles the schema of typ in a compiler of its own, so that
// schemas cannot collide (on "$id") or refer to one another.
func compile(typ string, src []byte) (*schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	// The location only names the schema in errors and resolves its
	// internal references; nothing is fetched from it.
	loc := "herald:///schemas/" + typ + ".json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, err
	}
	root, err := c.Compile(loc)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte(digestVersion), src...))
	s := &schema{root: root, nodes: map[string]*jsonschema.Schema{}, digest: hex.EncodeToString(sum[:12])}
	s.index(root)
	if len(root.Examples) > 0 {
		if err := root.Validate(root.Examples[0]); err != nil {
			return nil, fmt.Errorf("its first example does not satisfy it: %w", err)
		}
		if _, ok := root.Examples[0].(map[string]any); !ok {
			return nil, fmt.Errorf("its first example is not a JSON object")
		}
		if s.example, err = json.Marshal(root.Examples[0]); err != nil {
			return nil, fmt.Errorf("its first example: %w", err)
		}
	}
	return s, nil
}

// noLoader refuses every external reference. The metaschemas of the
// supported drafts are built into the jsonschema library and never reach it.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("cannot load %s: a schema file must be self-contained", url)
}

// index records s and every subschema reachable from it in s.nodes.
func (s *schema) index(n *jsonschema.Schema) {
	if n == nil {
		return
	}
	if _, seen := s.nodes[n.Location]; seen {
		return
	}
	s.nodes[n.Location] = n
	one := func(v any) {
		switch v := v.(type) {
		case *jsonschema.Schema:
			s.index(v)
		case []*jsonschema.Schema:
			for _, c := range v {
				s.index(c)
			}
		}
	}
	one(n.Ref)
	one(n.RecursiveRef)
	if n.DynamicRef != nil {
		one(n.DynamicRef.Ref)
	}
	one(n.Not)
	one(n.AllOf)
	one(n.AnyOf)
	one(n.OneOf)
	one(n.If)
	one(n.Then)
	one(n.Else)
	one(n.PropertyNames)
	for _, c := range n.Properties {
		one(c)
	}
	for _, c := range n.PatternProperties {
		one(c)
	}
	one(n.AdditionalProperties)
	for _, c := range n.Dependencies {
		one(c)
	}
	for _, c := range n.DependentSchemas {
		one(c)
	}
	one(n.UnevaluatedProperties)
	one(n.Contains)
	one(n.Items)
	one(n.AdditionalItems)
	one(n.PrefixItems)
	one(n.Items2020)
	one(n.UnevaluatedItems)
	one(n.ContentSchema)
}

// Digest names the version of typ's schema that Validate applies: a hash
// of the schema file (and of what Validate checks beyond it), "" for an
// unknown type. A publisher sends it with each event it validated
// (herald.HeaderSchema), and the dispatcher skips validating an event whose
// digest is its own.
func (r *Registry) Digest(typ string) string {
	if s, ok := r.schemas[typ]; ok {
		return s.digest
	}
	return ""
}

// Known reports whether typ is a registered event type.
func (r *Registry) Known(typ string) bool {
	_, ok := r.schemas[typ]
	return ok
}

// Types returns the registered event types, sorted. The slice is the
// caller's.
func (r *Registry) Types() []string {
	return slices.Clone(r.types)
}

// Example returns sample data of typ, valid against its schema: the first
// entry of the schema's "examples". ok is false for an unknown type or a
// schema without examples.
func (r *Registry) Example(typ string) (data json.RawMessage, ok bool) {
	s, found := r.schemas[typ]
	if !found || s.example == nil {
		return nil, false
	}
	return s.example, true
}

// Validate checks data, the event's data object as raw JSON, against the
// schema of typ. It returns nil or a *herald.ValidationError:
//
//   - an unknown type: Field "type";
//   - data that is not a JSON object: Field "data";
//   - data that breaks the schema: Field names the offending value as
//     "data.<path>", with dots between property names and brackets for
//     array items ("data.metadata.width", "data.encoding_ids[1]"); a
//     missing required property is named itself ("data.video_id"). When
//     data breaks several rules, the error reported is the one nearest to
//     the top of the object, then the first by Field, so the same data
//     always gets the same error.
//
// Numbers must fit in a 64-bit float.
func (r *Registry) Validate(typ string, data json.RawMessage) error {
	s, ok := r.schemas[typ]
	if !ok {
		return herald.Invalid("type", fmt.Sprintf("unknown event type %q (known: %s)", typ, strings.Join(r.types, ", ")))
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return herald.Invalid("data", "must be a JSON object")
	}
	// Numbers decode as float64: big.Rat arithmetic on arbitrary JSON
	// number literals (which the validator does for bounds and integer
	// checks) can be made to cost seconds, and a double is what most
	// endpoints will read anyway.
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return numberOutOfRange(data)
		}
		return herald.Invalid("data", "is not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	obj, ok := v.(map[string]any)
	if !ok { // cannot happen after the '{' check; kept for safety
		return herald.Invalid("data", "must be a JSON object")
	}
	if _, ok := obj["event"]; ok {
		return herald.Invalid("data.event", reserved)
	}
	if err := s.root.Validate(v); err != nil {
		return s.explain(v, err)
	}
	return nil
}
