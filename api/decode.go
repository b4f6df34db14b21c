package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/herald-webhooks/herald"
)

// readBody reads r's whole body, at most a.maxBody bytes (else 413).
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > a.maxBody {
		return nil, a.tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, a.tooLarge()
		}
		return nil, badRequest("could not read the request body")
	}
	return body, nil
}

func (a *API) tooLarge() error {
	return tooLarge(fmt.Sprintf("request body is over the %d byte limit", a.maxBody))
}

// decode reads r's body as one JSON object into v (a pointer to a struct).
// Its errors are the documented answers: 413 over the size limit; 400 for
// an empty body, malformed JSON, a body that is not an object (null
// included), or data after the object; 422 naming the field for an unknown field or a value of the
// wrong type.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON is decode on a body already read.
func decodeJSON(body []byte, v any) error {
	switch trimmed := trimJSONSpace(body); {
	case len(trimmed) == 0:
		return badRequest("request body is empty: send a JSON object")
	case trimmed[0] != '{':
		return badRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if len(trimJSONSpace(body[dec.InputOffset():])) != 0 {
			return badRequest("request body has data after the JSON object")
		}
		return nil
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest(fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", se, se.Offset))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badRequest("request body is not valid JSON: it ends early")
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return badRequest("request body must be a JSON object")
		}
		return herald.Invalid(te.Field, fmt.Sprintf("has the wrong type: %s where %s belongs", te.Value, describeType(te.Type)))
	}
	// The rest carry no field: an unknown field (encoding/json names the
	// key, not its path) or a value a type's UnmarshalJSON refused (such as
	// a bad duration). Walk the body to find where.
	if field, msg, ok := locate(body, reflect.TypeOf(v), ""); ok {
		return herald.Invalid(field, msg)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unq, uerr := strconv.Unquote(name); uerr == nil {
			name = unq
		}
		return herald.Invalid(name, msgUnknownField)
	}
	return herald.Invalid("", err.Error())
}

const msgUnknownField = "is not a known field"

// describeType names a Go type the way a JSON client thinks of it.
func describeType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}

// trimJSONSpace drops JSON white space (space, tab, CR, LF) from both ends.
func trimJSONSpace(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// locate walks raw, a JSON value decoded into type t at path, in document
// order, and finds the first member encoding/json could not place: a key
// that names no field of its struct, or a value whose UnmarshalJSON fails.
// It returns the member's path ("retry.initial_delay", "events[2]") and what
// is wrong. It follows structs, pointers, slices and arrays; embedded
// structs are searched for promoted fields.
func locate(raw []byte, t reflect.Type, path string) (field, msg string, found bool) {
	if t.Kind() == reflect.Pointer {
		if string(trimJSONSpace(raw)) == "null" {
			return "", "", false // encoding/json sets the pointer to nil
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		u := reflect.New(t).Interface().(json.Unmarshaler)
		if err := u.UnmarshalJSON(raw); err != nil {
			return path, err.Error(), true
		}
		return "", "", false
	}
	switch t.Kind() {
	case reflect.Struct:
		members, err := objectMembers(raw)
		if err != nil {
			return "", "", false // not an object: a type error, reported as such
		}
		for _, m := range members {
			f, ok := fieldFor(t, m.key)
			if !ok {
				return joinPath(path, m.key), msgUnknownField, true
			}
			if field, msg, found = locate(m.value, f.typ, joinPath(path, f.name)); found {
				return field, msg, true
			}
		}
	case reflect.Slice, reflect.Array:
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return "", "", false
		}
		for i, e := range elems {
			if field, msg, found = locate(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); found {
				return field, msg, true
			}
		}
	}
	return "", "", false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// member is one key and value of a JSON object.
type member struct {
	key   string
	value json.RawMessage
}

// objectMembers splits a JSON object into its members, in document order.
func objectMembers(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		members = append(members, member{key: key, value: value})
	}
	return members, nil
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	name string
	typ  reflect.Type
}

// fieldFor finds the field of struct type t that encoding/json fills from
// key: the exact name first, then a case-insensitive match.
func fieldFor(t reflect.Type, key string) (jsonField, bool) {
	fields := jsonFields(t)
	for _, f := range fields {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return jsonField{}, false
}

// jsonFields lists the JSON members of struct type t, promoting the fields
// of untagged embedded structs.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type})
	}
	return out
}
