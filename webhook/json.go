package webhook

import (
	"encoding/json"
	"unicode/utf8"
)

// AppendJSON appends the application/json body of a notification of type
// typ to dst: one flat, compact object whose first field is "event" (typ)
// followed by data's fields in the order they appear in data:
//
//	{"event":"state_changed","job_id":"j1","state":"processing"}
//
// Values are copied as written, white space dropped: numbers keep their
// literal text, strings their escapes. A byte of a string that is not
// UTF-8 becomes \ufffd (what encoding/json would read there anyway), so the
// body is always valid UTF-8. A top-level key "event" in data is skipped:
// the key is reserved for the type. Duplicate keys are copied as they are.
//
// It returns an error, and dst unchanged, when data is not a JSON object,
// is not valid JSON or nests deeper than MaxDepth: the same data that
// AppendForm refuses, except that an empty key is fine here.
func AppendJSON(dst []byte, typ string, data json.RawMessage) ([]byte, error) {
	w := walker{data: data, dst: dst}
	w.dst = append(w.dst, `{"event":`...)
	w.dst = appendQuoted(w.dst, typ)
	if err := w.jsonTop(); err != nil {
		return dst, err
	}
	w.dst = append(w.dst, '}')
	return w.dst, nil
}

// jsonTop copies the members of the top-level object but "event".
func (w *walker) jsonTop() error {
	if err := w.start(); err != nil {
		return err
	}
	for more := w.first('}'); more; {
		lit, flags, err := w.key()
		if err != nil {
			return err
		}
		emit := !isEvent(lit, flags)
		if emit {
			w.dst = append(w.dst, ',')
			w.dst = appendLiteral(w.dst, lit, flags)
			w.dst = append(w.dst, ':')
		}
		if err := w.copyValue(2, emit); err != nil {
			return err
		}
		if more, err = w.next('}'); err != nil {
			return err
		}
	}
	return w.end()
}

// appendQuoted appends s as a JSON string literal. It escapes '"', '\' and
// control characters, and writes each byte that is not UTF-8 as \ufffd,
// as json.Marshal does.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', upperhex[c>>4], upperhex[c&15])
		default:
			dst = append(dst, c)
		}
		i++
	}
	return append(dst, '"')
}
