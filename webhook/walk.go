package webhook

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/herald-webhooks/herald"
)

// walker reads one JSON text (RFC 8259) front to back, checking its syntax
// as it goes, and appends what the encoders make of it to dst. It accepts
// exactly what json.Valid accepts (the fuzz tests hold it to that), in a
// single pass and without allocating.
//
// Its methods leave pos just past what they consumed. A method that fails
// returns a *herald.ValidationError for the field "data"; the walker is then
// of no further use.
type walker struct {
	data []byte
	pos  int
	dst  []byte
}

// String literal flags, as reported by str.
const (
	hasEscape   = 1 << iota // a backslash escape
	hasNonASCII             // a byte ≥ 0x80 (valid UTF-8 or not)
)

var (
	errNotObject = herald.Invalid("data", "must be a JSON object")
	errTooDeep   = herald.Invalid("data", fmt.Sprintf("nests more than %d levels deep", MaxDepth))
)

// syntaxError describes the byte at pos.
func (w *walker) syntaxError() error {
	if w.pos >= len(w.data) {
		return herald.Invalid("data", "is not valid JSON: unexpected end")
	}
	return herald.Invalid("data", fmt.Sprintf("is not valid JSON: unexpected %q at offset %d", w.data[w.pos], w.pos))
}

func (w *walker) skipSpace() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (w *walker) peek() byte {
	w.skipSpace()
	if w.pos >= len(w.data) {
		return 0
	}
	return w.data[w.pos]
}

// start begins a JSON text that must be an object: it consumes the '{'.
func (w *walker) start() error {
	if w.peek() != '{' {
		return errNotObject
	}
	w.pos++
	return nil
}

// end checks that only white space follows the top-level object.
func (w *walker) end() error {
	if w.peek() != 0 || w.pos < len(w.data) {
		return w.syntaxError()
	}
	return nil
}

// first is called just past the '{' or '[' of a container that closes with
// end; it reports whether an element follows, consuming end if none does.
func (w *walker) first(end byte) bool {
	if w.peek() == end {
		w.pos++
		return false
	}
	return true
}

// next is called after an element; it consumes the ',' before another
// element and reports true, or consumes end and reports false.
func (w *walker) next(end byte) (bool, error) {
	switch w.peek() {
	case ',':
		w.pos++
		return true, nil
	case end:
		w.pos++
		return false, nil
	}
	return false, w.syntaxError()
}

// key reads an object member's name and the ':' after it, and returns the
// name's string literal, quotes included.
func (w *walker) key() (lit []byte, flags int, err error) {
	if w.peek() != '"' {
		return nil, 0, w.syntaxError()
	}
	if lit, flags, err = w.str(); err != nil {
		return nil, 0, err
	}
	if w.peek() != ':' {
		return nil, 0, w.syntaxError()
	}
	w.pos++
	return lit, flags, nil
}

// str reads the string literal at pos, which starts with '"', and returns
// it, quotes included, with its flags.
func (w *walker) str() (lit []byte, flags int, err error) {
	d := w.data
	start := w.pos
	for i := start + 1; i < len(d); {
		c := d[i]
		switch {
		case c == '"':
			w.pos = i + 1
			return d[start:w.pos], flags, nil
		case c == '\\':
			flags |= hasEscape
			if i+1 < len(d) {
				switch d[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
					continue
				case 'u':
					if i+6 <= len(d) && isHex(d[i+2]) && isHex(d[i+3]) && isHex(d[i+4]) && isHex(d[i+5]) {
						i += 6
						continue
					}
				}
			}
			w.pos = i
			return nil, 0, herald.Invalid("data", fmt.Sprintf("is not valid JSON: bad escape in string at offset %d", i))
		case c < 0x20:
			w.pos = i
			return nil, 0, w.syntaxError()
		case c >= utf8.RuneSelf:
			flags |= hasNonASCII
		}
		i++
	}
	w.pos = len(d)
	return nil, 0, w.syntaxError()
}

// number reads the number literal at pos:
// -? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?
func (w *walker) number() ([]byte, error) {
	d := w.data
	start := w.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i)
	default:
		w.pos = i
		return nil, w.syntaxError()
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			w.pos = i
			return nil, w.syntaxError()
		}
		i = digits(d, i)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			w.pos = i
			return nil, w.syntaxError()
		}
		i = digits(d, i)
	}
	w.pos = i
	return d[start:i], nil
}

// literal reads true, false or null at pos, whichever word is.
func (w *walker) literal(word string) ([]byte, error) {
	end := w.pos + len(word)
	if end > len(w.data) || string(w.data[w.pos:end]) != word {
		return nil, w.syntaxError()
	}
	lit := w.data[w.pos:end]
	w.pos = end
	return lit, nil
}

// scalar reads the string, number, true, false or null at pos.
func (w *walker) scalar(c byte) (lit []byte, flags int, err error) {
	switch c {
	case '"':
		return w.str()
	case 't':
		lit, err = w.literal("true")
	case 'f':
		lit, err = w.literal("false")
	case 'n':
		lit, err = w.literal("null")
	default:
		lit, err = w.number()
	}
	return lit, 0, err
}

// copyValue reads the value at pos, which would be at level depth if it is
// a container, and when emit is set appends it to dst as compact JSON:
// white space dropped, string literals kept as written except that bytes
// that are not UTF-8 become \ufffd.
func (w *walker) copyValue(depth int, emit bool) error {
	c := w.peek()
	if c != '{' && c != '[' {
		lit, flags, err := w.scalar(c)
		if err != nil {
			return err
		}
		if emit {
			w.dst = appendLiteral(w.dst, lit, flags)
		}
		return nil
	}
	if depth > MaxDepth {
		return errTooDeep
	}
	end := byte('}')
	if c == '[' {
		end = ']'
	}
	w.pos++
	if emit {
		w.dst = append(w.dst, c)
	}
	for more := w.first(end); more; {
		if c == '{' {
			lit, flags, err := w.key()
			if err != nil {
				return err
			}
			if emit {
				w.dst = appendLiteral(w.dst, lit, flags)
				w.dst = append(w.dst, ':')
			}
		}
		if err := w.copyValue(depth+1, emit); err != nil {
			return err
		}
		var err error
		if more, err = w.next(end); err != nil {
			return err
		}
		if more && emit {
			w.dst = append(w.dst, ',')
		}
	}
	if emit {
		w.dst = append(w.dst, end)
	}
	return nil
}

// appendLiteral appends a scanned literal, replacing each byte of a string
// literal that is not part of valid UTF-8 by \ufffd, as encoding/json does
// when it decodes one.
func appendLiteral(dst, lit []byte, flags int) []byte {
	if flags&hasNonASCII == 0 {
		return append(dst, lit...)
	}
	for i := 0; i < len(lit); {
		if lit[i] < utf8.RuneSelf {
			dst = append(dst, lit[i])
			i++
			continue
		}
		r, n := utf8.DecodeRune(lit[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, lit[i:i+n]...)
		}
		i += n
	}
	return dst
}

// appendUnquoted appends the value of a scanned string literal (quotes
// included) to dst, percent-encoded when escape is set. It decodes as
// encoding/json does: \u escapes of a surrogate pair make one rune, a lone
// surrogate and each byte that is not part of valid UTF-8 become U+FFFD.
func appendUnquoted(dst, lit []byte, flags int, escape bool) []byte {
	s := lit[1 : len(lit)-1]
	if flags == 0 {
		if escape {
			return appendEscaped(dst, s)
		}
		return append(dst, s...)
	}
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(s); {
		var r rune
		switch c := s[i]; {
		case c == '\\':
			r, i = unescape(s, i)
		case c < utf8.RuneSelf:
			r = rune(c)
			i++
		default:
			var n int
			r, n = utf8.DecodeRune(s[i:])
			i += n
		}
		n := utf8.EncodeRune(buf[:], r)
		if escape {
			dst = appendEscaped(dst, buf[:n])
		} else {
			dst = append(dst, buf[:n]...)
		}
	}
	return dst
}

// unescape decodes the escape sequence at s[i] (checked by str) and returns
// its rune and the index after it.
func unescape(s []byte, i int) (rune, int) {
	if s[i+1] != 'u' {
		switch s[i+1] {
		case 'b':
			return '\b', i + 2
		case 'f':
			return '\f', i + 2
		case 'n':
			return '\n', i + 2
		case 'r':
			return '\r', i + 2
		case 't':
			return '\t', i + 2
		}
		return rune(s[i+1]), i + 2 // '"', '\\', '/'
	}
	r := hex4(s[i+2:])
	i += 6
	if !utf16.IsSurrogate(r) {
		return r, i
	}
	// A surrogate pair is two escapes; a lone half is U+FFFD, and what
	// follows it is read on its own.
	if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
		if pair := utf16.DecodeRune(r, hex4(s[i+2:])); pair != utf8.RuneError {
			return pair, i + 6
		}
	}
	return utf8.RuneError, i
}

func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the index of the first byte at or after i that is not a
// digit.
func digits(d []byte, i int) int {
	for i < len(d) && isDigit(d[i]) {
		i++
	}
	return i
}

// isEvent reports whether a key literal names the reserved key "event",
// however it is escaped.
func isEvent(lit []byte, flags int) bool {
	if flags == 0 {
		return string(lit) == `"event"`
	}
	if flags&hasEscape == 0 || len(lit) > len(`"\u0065\u0076\u0065\u006e\u0074"`) {
		return false // "event" is ASCII; only escapes could spell it otherwise
	}
	var buf [32]byte
	return string(appendUnquoted(buf[:0], lit, flags, false)) == "event"
}
