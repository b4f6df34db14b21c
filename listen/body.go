package listen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// indent starts every line of a printed body.
const indent = "  "

// maxShown caps how much of a body that is neither JSON nor form data is
// printed (64 KiB).
const maxShown = 64 << 10

// writeBody prints body indented: JSON pretty-printed, form data decoded
// into nested values shown as JSON, anything else as text, cut at
// maxShown. A body that does not parse as its content type says prints as
// text after a note.
func writeBody(b *bytes.Buffer, contentType string, body []byte) {
	if len(body) == 0 {
		b.WriteString(indent + "(empty body)\n")
		return
	}
	mediaType, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", indent); err != nil {
			writeNote(b, "not valid JSON: "+err.Error())
			break
		}
		writeIndented(b, out.Bytes())
		return
	case mediaType == "application/x-www-form-urlencoded":
		root, err := decodeForm(string(body))
		if err != nil {
			writeNote(b, "form data that does not decode: "+err.Error())
			break
		}
		var out bytes.Buffer
		root.write(&out, "")
		writeIndented(b, out.Bytes())
		return
	}
	shown := body
	if len(shown) > maxShown {
		shown = shown[:maxShown]
	}
	writeIndented(b, shown)
	if len(shown) < len(body) {
		writeNote(b, fmt.Sprintf("cut: showing the first %d of %d bytes", len(shown), len(body)))
	}
}

func writeNote(b *bytes.Buffer, note string) {
	b.WriteString(indent + "(")
	writeText(b, note)
	b.WriteString(")\n")
}

// writeIndented writes text with indent before each line, ending with a
// newline, and with what could upset a terminal made visible: control
// characters other than tab and newline (a CR before a newline is
// dropped) and bytes that are not UTF-8.
func writeIndented(b *bytes.Buffer, text []byte) {
	text = bytes.TrimSuffix(text, []byte("\n"))
	b.WriteString(indent)
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRune(text[i:])
		switch {
		case r == '\n':
			b.WriteString("\n" + indent)
		case r == '\r' && i+1 < len(text) && text[i+1] == '\n':
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(b, `\x%02x`, text[i])
		case r == '\t' || !isControl(r):
			b.Write(text[i : i+n])
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
		i += n
	}
	b.WriteByte('\n')
}

// writeText writes one line of text, with control characters (newlines
// too) and bytes that are not UTF-8 made visible.
func writeText(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case isControl(r):
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}

// writeValue writes a header value or path as it is when it is plain
// (printable ASCII, no space or quote), else quoted.
func writeValue(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' {
			b.WriteString(strconv.Quote(s))
			return
		}
	}
	b.WriteString(s)
}

// isControl reports C0 and C1 control characters and DEL.
func isControl(r rune) bool { return r < 0x20 || 0x7f <= r && r < 0xa0 }

// A node is one value of decoded form data: a string, or an object or an
// array of nodes. Objects keep their keys in the order they first appeared.
type node struct {
	kind  nodeKind
	s     string           // leaf
	keys  []string         // object
	kids  map[string]*node // object
	items []*node          // array
}

type nodeKind int

const (
	leafNode nodeKind = iota
	objectNode
	arrayNode
)

func newObject() *node { return &node{kind: objectNode, kids: map[string]*node{}} }

// decodeForm decodes a form body written in bracket notation, much as Rack
// and PHP do: a[b]=1 nests an object, a[]=1 appends to an array, and a
// repeated key keeps its last value. An object whose keys are exactly 0,
// 1, …, n-1 (herald's arrays) is shown as an array. It fails on a bad
// percent escape and on a key used both as a value and as a container.
func decodeForm(body string) (*node, error) {
	root := newObject()
	for pair := range strings.SplitSeq(body, "&") {
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", rawName, err)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", name, err)
		}
		if name == "" {
			continue // as Rack and PHP do
		}
		if err := root.insert(splitName(name), value); err != nil {
			return nil, fmt.Errorf("key %q: %w", name, err)
		}
	}
	root.arrays()
	return root, nil
}

// splitName splits a[b][][c] into "a", "b", "", "c". A name that is not
// made of a head and bracketed segments is one plain key.
func splitName(name string) []string {
	open := strings.IndexByte(name[1:], '[') + 1
	if open == 0 {
		return []string{name}
	}
	segs := []string{name[:open]}
	for rest := name[open:]; rest != ""; {
		end := strings.IndexByte(rest, ']')
		if rest[0] != '[' || end < 0 {
			return []string{name}
		}
		segs = append(segs, rest[1:end])
		rest = rest[end+1:]
	}
	return segs
}

var errConflict = errors.New("used both as a value and for nesting")

// insert sets the value at path segs under n, an object or an array ("" as
// a segment appends to an array).
func (n *node) insert(segs []string, value string) error {
	seg, rest := segs[0], segs[1:]
	if n.kind == arrayNode {
		if seg != "" {
			return errConflict
		}
		if len(rest) == 0 {
			n.items = append(n.items, &node{s: value})
			return nil
		}
		// a[][x]=1&a[][y]=2 fills one object until a key repeats.
		last := (*node)(nil)
		if k := len(n.items); k > 0 && n.items[k-1].kind == objectNode && n.items[k-1].kids[rest[0]] == nil {
			last = n.items[k-1]
		} else {
			last = newObject()
			n.items = append(n.items, last)
		}
		return last.insert(rest, value)
	}
	if seg == "" {
		return errConflict
	}
	child := n.kids[seg]
	if len(rest) == 0 {
		if child == nil {
			n.keys = append(n.keys, seg)
			n.kids[seg] = &node{s: value}
			return nil
		}
		if child.kind != leafNode {
			return errConflict
		}
		child.s = value
		return nil
	}
	want := objectNode
	if rest[0] == "" {
		want = arrayNode
	}
	if child == nil {
		child = &node{kind: want}
		if want == objectNode {
			child = newObject()
		}
		n.keys = append(n.keys, seg)
		n.kids[seg] = child
	} else if child.kind != want {
		return errConflict
	}
	return child.insert(rest, value)
}

// arrays turns, below n, every object whose keys are exactly 0, 1, …, n-1
// into an array.
func (n *node) arrays() {
	for _, kid := range n.kids {
		kid.arrays()
	}
	for _, item := range n.items {
		item.arrays()
	}
	if n.kind != objectNode || len(n.keys) == 0 {
		return
	}
	items := make([]*node, len(n.keys))
	for _, k := range n.keys {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= len(items) || strconv.Itoa(i) != k {
			return
		}
		items[i] = n.kids[k] // keys are distinct, so each index is filled once
	}
	*n = node{kind: arrayNode, items: items}
}

// write prints n as indented JSON, each line after the first starting
// with prefix.
func (n *node) write(b *bytes.Buffer, prefix string) {
	switch n.kind {
	case leafNode:
		writeQuoted(b, n.s)
	case objectNode:
		if len(n.keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, k := range n.keys {
			b.WriteString(prefix + indent)
			writeQuoted(b, k)
			b.WriteString(": ")
			n.kids[k].write(b, prefix+indent)
			if i < len(n.keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(prefix + "}")
	case arrayNode:
		if len(n.items) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, item := range n.items {
			b.WriteString(prefix + indent)
			item.write(b, prefix+indent)
			if i < len(n.items)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(prefix + "]")
	}
}

// writeQuoted writes s as a JSON string; writeIndented later makes any
// remaining control character or non-UTF-8 byte visible.
func writeQuoted(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
