package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-webhooks/herald"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// This file turns the jsonschema library's error tree into one
// *herald.ValidationError: a field path in herald's notation and a short
// message saying what the value must be.

// failure is one broken rule.
type failure struct {
	depth int    // how deep in data the rule was checked
	field string // "data.metadata.width"
	msg   string // "must be a non-negative integer"
}

// before orders failures: nearest to the top of data first, then by field,
// then by message, so that the same data always gets the same error
// whatever order the validator visited it in.
func (f failure) before(g failure) bool {
	if f.depth != g.depth {
		return f.depth < g.depth
	}
	if f.field != g.field {
		return f.field < g.field
	}
	return f.msg < g.msg
}

// explain converts err, returned by s.root.Validate(v), into a
// *herald.ValidationError.
func (s *schema) explain(v any, err error) error {
	verr, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return herald.Invalid("data", "cannot be checked: "+err.Error())
	}
	var best *failure
	s.collect(v, verr, func(f failure) {
		if best == nil || f.before(*best) {
			best = &f
		}
	})
	if best == nil {
		return herald.Invalid("data", "is invalid")
	}
	return herald.Invalid(best.field, best.msg)
}

// collect reports through add every leaf of the error tree under e.
func (s *schema) collect(v any, e *jsonschema.ValidationError, add func(failure)) {
	loc := e.InstanceLocation
	at := func(extra string, msg string) {
		path := loc
		if extra != "" {
			path = append(slices.Clip(loc), extra)
		}
		add(failure{depth: len(loc), field: fieldPath(v, path), msg: msg})
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.Reference, *kind.AllOf:
		// Containers: every cause is a rule the value broke. (Not so for
		// anyOf and oneOf, whose causes are the alternatives that did not
		// match; those are reported as one failure below.)
		if len(e.Causes) == 0 {
			at("", "is invalid")
		}
		for _, c := range e.Causes {
			s.collect(v, c, add)
		}
	case *kind.Required:
		// The library lists missing properties in the schema's order.
		at(k.Missing[0], "is required")
	case *kind.DependentRequired:
		at(k.Missing[0], fmt.Sprintf("is required when %q is present", k.Prop))
	case *kind.Dependency:
		at(k.Missing[0], fmt.Sprintf("is required when %q is present", k.Prop))
	case *kind.AdditionalProperties:
		at(slices.Min(k.Properties), "is not allowed")
	case *kind.PropertyNames:
		at(k.Property, "is not an allowed property name")
	default:
		at("", s.message(e))
	}
}

// message says what the value at e.InstanceLocation must be.
func (s *schema) message(e *jsonschema.ValidationError) string {
	n := s.nodes[e.SchemaURL]
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		if n != nil && (n.Enum != nil || n.Const != nil) {
			return describeValues(n)
		}
		if len(k.Want) != 1 {
			var nouns []string
			for _, t := range k.Want {
				if t != "null" {
					nouns = append(nouns, article(t))
				}
			}
			if slices.Contains(k.Want, "null") { // "a string or null" reads better last
				nouns = append(nouns, "null")
			}
			return "must be " + strings.Join(nouns, " or ")
		}
		return describe(k.Want[0], n)
	case *kind.Enum:
		return describeValues(&jsonschema.Schema{Enum: &jsonschema.Enum{Values: k.Want}})
	case *kind.Const:
		return "must be " + display(k.Want)
	case *kind.Minimum:
		return describe(numeric(n), orNode(n, &jsonschema.Schema{Minimum: k.Want}))
	case *kind.Maximum:
		return describe(numeric(n), orNode(n, &jsonschema.Schema{Maximum: k.Want}))
	case *kind.ExclusiveMinimum:
		return describe(numeric(n), orNode(n, &jsonschema.Schema{ExclusiveMinimum: k.Want}))
	case *kind.ExclusiveMaximum:
		return describe(numeric(n), orNode(n, &jsonschema.Schema{ExclusiveMaximum: k.Want}))
	case *kind.MultipleOf:
		return describe(numeric(n), orNode(n, &jsonschema.Schema{MultipleOf: k.Want}))
	case *kind.MinLength:
		return describe("string", orNode(n, &jsonschema.Schema{MinLength: &k.Want}))
	case *kind.MaxLength:
		return describe("string", orNode(n, &jsonschema.Schema{MaxLength: &k.Want}))
	case *kind.Pattern:
		if n == nil {
			return "must match " + k.Want
		}
		return describe("string", n)
	case *kind.MinItems:
		return describe("array", orNode(n, &jsonschema.Schema{MinItems: &k.Want}))
	case *kind.MaxItems:
		return describe("array", orNode(n, &jsonschema.Schema{MaxItems: &k.Want}))
	case *kind.Format:
		return "must be a valid " + k.Want
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d %s", k.Want, plural(k.Want, "property", "properties"))
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d %s", k.Want, plural(k.Want, "property", "properties"))
	case *kind.AdditionalItems:
		return fmt.Sprintf("has %d %s too many", k.Count, plural(k.Count, "item", "items"))
	case *kind.UniqueItems:
		return fmt.Sprintf("must not contain duplicates (items %d and %d are equal)", k.Duplicates[0], k.Duplicates[1])
	case *kind.Contains:
		return "must contain a matching item"
	case *kind.MinContains:
		return fmt.Sprintf("must contain at least %d matching %s", k.Want, plural(k.Want, "item", "items"))
	case *kind.MaxContains:
		return fmt.Sprintf("must contain at most %d matching %s", k.Want, plural(k.Want, "item", "items"))
	case *kind.AnyOf:
		return "does not match any of the allowed forms"
	case *kind.OneOf:
		if len(k.Subschemas) == 0 {
			return "does not match any of the allowed forms"
		}
		return "must match exactly one of the allowed forms, not several"
	case *kind.Not, *kind.FalseSchema:
		return "is not allowed"
	case *kind.ContentEncoding:
		return "must be " + k.Want + "-encoded"
	case *kind.ContentMediaType:
		return "must be valid " + k.Want
	case *kind.RefCycle:
		return "cannot be checked: the schema's references form a cycle"
	}
	return "is invalid"
}

// orNode returns n, or stand-in when n is unknown (which indexing every
// subschema should make impossible).
func orNode(n, standIn *jsonschema.Schema) *jsonschema.Schema {
	if n != nil {
		return n
	}
	return standIn
}

// describe says what a value must be to satisfy n, taking it to be of JSON
// type typ: "must be an integer between 0 and 100", "must be a non-empty
// string of at most 256 characters", "must be a non-empty array of
// strings". n may be nil.
func describe(typ string, n *jsonschema.Schema) string {
	if n == nil {
		return "must be " + article(typ)
	}
	switch typ {
	case "integer", "number":
		return "must be " + describeNumber(typ, n)
	case "string":
		return "must be " + describeString(n)
	case "array":
		return "must be " + describeArray(n)
	}
	return "must be " + article(typ)
}

func describeNumber(typ string, n *jsonschema.Schema) string {
	noun := typ
	var clauses []string
	switch {
	case n.Minimum != nil && n.Maximum != nil:
		clauses = append(clauses, "between "+ratString(n.Minimum)+" and "+ratString(n.Maximum))
	case n.Minimum != nil && n.Minimum.Sign() == 0 && n.ExclusiveMaximum == nil:
		noun = "non-negative " + typ
	case n.Minimum != nil:
		clauses = append(clauses, "greater than or equal to "+ratString(n.Minimum))
	case n.Maximum != nil:
		clauses = append(clauses, "less than or equal to "+ratString(n.Maximum))
	}
	if n.ExclusiveMinimum != nil {
		clauses = append(clauses, "greater than "+ratString(n.ExclusiveMinimum))
	}
	if n.ExclusiveMaximum != nil {
		clauses = append(clauses, "less than "+ratString(n.ExclusiveMaximum))
	}
	s := article(noun)
	if len(clauses) > 0 {
		s += " " + strings.Join(clauses, " and ")
	}
	if n.MultipleOf != nil {
		s += " that is a multiple of " + ratString(n.MultipleOf)
	}
	return s
}

func describeString(n *jsonschema.Schema) string {
	s := "a string"
	min, max := 0, -1
	if n.MinLength != nil {
		min = *n.MinLength
	}
	if n.MaxLength != nil {
		max = *n.MaxLength
	}
	if min == 1 {
		s, min = "a non-empty string", 0
	}
	switch {
	case min > 0 && max >= 0:
		s += fmt.Sprintf(" of %d to %d characters", min, max)
	case min > 0:
		s += fmt.Sprintf(" of at least %d %s", min, plural(min, "character", "characters"))
	case max >= 0:
		s += fmt.Sprintf(" of at most %d %s", max, plural(max, "character", "characters"))
	}
	if n.Pattern != nil {
		s += " matching " + n.Pattern.String()
	}
	return s
}

func describeArray(n *jsonschema.Schema) string {
	items := "items"
	if t := itemType(n); t != "" {
		items = t + "s"
		if t == "boolean" || t == "null" {
			items = t + " values"
		}
	}
	min, max := 0, -1
	if n.MinItems != nil {
		min = *n.MinItems
	}
	if n.MaxItems != nil {
		max = *n.MaxItems
	}
	switch {
	case min == 1 && max < 0:
		return "a non-empty array of " + items
	case min > 0 && max >= 0:
		return fmt.Sprintf("an array of %d to %d %s", min, max, items)
	case min > 0:
		return fmt.Sprintf("an array of at least %d %s", min, items)
	case max >= 0:
		return fmt.Sprintf("an array of at most %d %s", max, items)
	case items != "items":
		return "an array of " + items
	}
	return "an array"
}

// itemType returns the one JSON type every item of the array schema n must
// have, or "".
func itemType(n *jsonschema.Schema) string {
	it := n.Items2020
	if it == nil {
		it, _ = n.Items.(*jsonschema.Schema)
	}
	// Follow a few plain $refs ({"$ref": "#/$defs/id"}).
	for range 4 {
		if it == nil {
			return ""
		}
		if it.Types != nil && !it.Types.IsEmpty() {
			if t := it.Types.ToStrings(); len(t) == 1 {
				return t[0]
			}
			return ""
		}
		it = it.Ref
	}
	return ""
}

// describeValues describes an enum or const.
func describeValues(n *jsonschema.Schema) string {
	if n.Const != nil {
		return "must be " + display(*n.Const)
	}
	vals := n.Enum.Values
	if len(vals) == 1 {
		return "must be " + display(vals[0])
	}
	shown := make([]string, len(vals))
	for i, v := range vals {
		shown[i] = display(v)
	}
	return "must be one of " + strings.Join(shown, ", ")
}

// numeric is the number type a numeric keyword of n applies to.
func numeric(n *jsonschema.Schema) string {
	if n != nil && n.Types != nil {
		t := n.Types.ToStrings()
		if slices.Contains(t, "integer") && !slices.Contains(t, "number") {
			return "integer"
		}
	}
	return "number"
}

// article puts "a" or "an" before a JSON type or a phrase starting with one.
func article(typ string) string {
	switch {
	case typ == "null":
		return "null"
	case strings.HasPrefix(typ, "integer"), strings.HasPrefix(typ, "object"), strings.HasPrefix(typ, "array"):
		return "an " + typ
	}
	return "a " + typ
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// display writes a schema value as JSON: "success", 42, null.
func display(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func ratString(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// fieldPath writes the location path (tokens as the validator gives them)
// of a value inside data v in herald's notation: "data", then ".name" for
// an object property and "[i]" for an array item. A property whose name is
// not made of letters, digits, '_' and '-' is written as a quoted index,
// data["a.b"], so that the path stays unambiguous.
func fieldPath(v any, path []string) string {
	var b strings.Builder
	b.WriteString("data")
	for _, tok := range path {
		switch c := v.(type) {
		case []any:
			b.WriteString("[" + tok + "]")
			v = nil
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(c) {
				v = c[i]
			}
		case map[string]any:
			writeKey(&b, tok)
			v = c[tok]
		default:
			writeKey(&b, tok)
			v = nil
		}
	}
	return b.String()
}

func writeKey(b *strings.Builder, key string) {
	if plainKey(key) {
		b.WriteString("." + key)
		return
	}
	b.WriteString("[" + strconv.Quote(key) + "]")
}

func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, c := range []byte(key) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// numberOutOfRange finds the number in data that does not fit in a float64
// (json.Unmarshal said there is one) and names it.
func numberOutOfRange(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return herald.Invalid("data", "is not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	if path, ok := findOutOfRange(v, nil); ok {
		return herald.Invalid(fieldPath(v, path), "is out of range: numbers must fit in a 64-bit float")
	}
	return herald.Invalid("data", "has a number out of range: numbers must fit in a 64-bit float")
}

// findOutOfRange returns the path of the first number in v, visiting
// object keys in sorted order, that strconv.ParseFloat cannot hold.
func findOutOfRange(v any, path []string) ([]string, bool) {
	switch v := v.(type) {
	case json.Number:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return path, true
		}
	case []any:
		for i, item := range v {
			if p, ok := findOutOfRange(item, append(path, strconv.Itoa(i))); ok {
				return p, true
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if p, ok := findOutOfRange(v[k], append(path, k)); ok {
				return p, true
			}
		}
	}
	return nil, false
}
