package webhook

import (
	"encoding/json"
	"strconv"

	"github.com/herald-webhooks/herald"
)

// AppendForm appends the application/x-www-form-urlencoded body of a
// notification of type typ to dst: "event=<typ>" followed by one pair for
// each value in data, in the order the fields appear in data (data is a raw
// JSON object). Nested values use the bracket notation that Rack/Rails
// (parse_nested_query) and PHP ($_POST, parse_str) decode natively:
//
//	event=video-created&video_id=123234&status=success&encoding_ids[0]=firstid&encoding_ids[1]=secondid&metadata[width]=1280
//
// The rules:
//
//   - Keys and values are percent-encoded as url.QueryEscape does (a space
//     becomes '+'), except the brackets AppendForm adds, which are written
//     as they are; a '[' or ']' inside a key's own name is escaped (%5B,
//     %5D).
//   - A string is its text, a number its JSON literal exactly as written
//     (1280, 12.5, 1e+3 stays 1e%2B3: never reformatted), true and false
//     are "true" and "false", null is an empty value ("key=").
//   - An object's fields nest as key[field], an array's elements as
//     key[0], key[1], …: PHP decodes $_POST["encoding_ids"][0], Rails
//     params["encoding_ids"] == {"0"=>"firstid","1"=>"secondid"}. Nesting
//     goes to any depth up to MaxDepth (a[b][0][c]=…).
//   - An empty array or object produces no pair.
//   - A top-level key "event" in data is skipped: the key is reserved for
//     the type.
//   - String values are decoded as encoding/json decodes them: a lone
//     surrogate escape or a byte that is not UTF-8 becomes U+FFFD.
//
// Duplicate keys are written as often as they appear, in order. Two limits
// of the notation itself: Rack and PHP unescape a key before they look for
// brackets, so a key whose name contains '[' or ']' reaches them as
// nesting all the same; and PHP turns '.' and ' ' in a top-level key into
// '_'.
//
// It returns an error, and dst unchanged, when data is not a JSON object,
// is not valid JSON, nests deeper than MaxDepth, or has an empty key
// outside the skipped "event" value (bracket notation cannot carry one:
// Rack and PHP drop "=v" and read "a[]" as an array append).
func AppendForm(dst []byte, typ string, data json.RawMessage) ([]byte, error) {
	w := walker{data: data, dst: dst}
	w.dst = append(w.dst, "event="...)
	w.dst = appendEscaped(w.dst, typ)
	if err := w.formTop(); err != nil {
		return dst, err
	}
	return w.dst, nil
}

// formTop writes the pairs of the top-level object.
func (w *walker) formTop() error {
	if err := w.start(); err != nil {
		return err
	}
	// The key of the pair being written lives here while it is short, so
	// that a typical body costs no allocation.
	var buf [128]byte
	for more := w.first('}'); more; {
		lit, flags, err := w.key()
		if err != nil {
			return err
		}
		switch {
		case isEvent(lit, flags):
			err = w.copyValue(2, false)
		case len(lit) == 2:
			err = herald.Invalid("data", `has an empty key "", which bracket notation cannot carry`)
		default:
			err = w.formValue(appendUnquoted(buf[:0], lit, flags, true), 2)
		}
		if err != nil {
			return err
		}
		if more, err = w.next('}'); err != nil {
			return err
		}
	}
	return w.end()
}

// formValue writes the pairs of the value at pos under key (already
// escaped, brackets included), the value being at level depth if it is a
// container.
func (w *walker) formValue(key []byte, depth int) error {
	c := w.peek()
	if c != '{' && c != '[' {
		lit, flags, err := w.scalar(c)
		if err != nil {
			return err
		}
		w.dst = append(w.dst, '&')
		w.dst = append(w.dst, key...)
		w.dst = append(w.dst, '=')
		switch lit[0] {
		case '"':
			w.dst = appendUnquoted(w.dst, lit, flags, true)
		case 'n': // null: empty value
		default: // number, true, false: their text, escaped ('+' in 1e+3)
			w.dst = appendEscaped(w.dst, lit)
		}
		return nil
	}
	if depth > MaxDepth {
		return errTooDeep
	}
	w.pos++
	if c == '{' {
		for more := w.first('}'); more; {
			lit, flags, err := w.key()
			if err != nil {
				return err
			}
			if len(lit) == 2 {
				return herald.Invalid("data", "has an empty key at "+string(key)+"[], which bracket notation cannot carry")
			}
			k := append(key, '[')
			k = appendUnquoted(k, lit, flags, true)
			k = append(k, ']')
			if err := w.formValue(k, depth+1); err != nil {
				return err
			}
			if more, err = w.next('}'); err != nil {
				return err
			}
		}
		return nil
	}
	for i, more := 0, w.first(']'); more; i++ {
		k := append(key, '[')
		k = strconv.AppendInt(k, int64(i), 10)
		k = append(k, ']')
		if err := w.formValue(k, depth+1); err != nil {
			return err
		}
		var err error
		if more, err = w.next(']'); err != nil {
			return err
		}
	}
	return nil
}

const upperhex = "0123456789ABCDEF"

// unreserved marks the bytes url.QueryEscape leaves as they are.
var unreserved = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~'
	}
	return t
}()

// appendEscaped appends s percent-encoded exactly as url.QueryEscape does:
// A-Z a-z 0-9 - _ . ~ as they are, ' ' as '+', every other byte as %XX.
func appendEscaped[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); {
		// Copy a run of unreserved bytes at once.
		j := i
		for j < len(s) && unreserved[s[j]] {
			j++
		}
		dst = append(dst, s[i:j]...)
		if j == len(s) {
			break
		}
		if c := s[j]; c == ' ' {
			dst = append(dst, '+')
		} else {
			dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		}
		i = j + 1
	}
	return dst
}
