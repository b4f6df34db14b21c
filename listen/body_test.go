package listen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzWriteBody: printing any body in any content type never panics,
// indents every line and lets no control character (but tab) or non-UTF-8
// byte through; decoded form data always prints as valid JSON.
func FuzzWriteBody(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	f.Add(form, []byte("event=video-created&encoding_ids[0]=a&encoding_ids[1]=b&metadata[width]=1280"))
	f.Add(form, []byte("a[]=1&a[][b]=2&a[][b]=3&c[0]=x&c[2]=y&d=%1B&e"))
	f.Add(form, []byte("a=1&a[b]=2&[x]=1&=2&a]=3&b[c=4"))
	f.Add("application/json", []byte(`{"a":[1,{"b":"\u001b"}]}`))
	f.Add("application/json", []byte("{\"a\":\"\x7f\xc2\x85\xff\"}"))
	f.Add("text/plain", []byte("a\r\nb\rc\x1b[2J\xff"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		var b bytes.Buffer
		writeBody(&b, contentType, body)
		out := b.String()
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("output does not end with a newline: %q", out)
		}
		for line := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
			if !strings.HasPrefix(line, indent) {
				t.Fatalf("line %q is not indented", line)
			}
		}
		if !utf8.ValidString(out) {
			t.Fatalf("output is not UTF-8: %q", out)
		}
		for _, r := range out {
			if r != '\n' && r != '\t' && isControl(r) {
				t.Fatalf("control character %U in %q", r, out)
			}
		}
		if root, err := decodeForm(string(body)); err == nil {
			var js bytes.Buffer
			root.write(&js, "")
			if !json.Valid(js.Bytes()) {
				t.Fatalf("form %q prints as invalid JSON %q", body, js.Bytes())
			}
		}
	})
}

func TestDecodeForm(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `{}`},
		{"a=1&b=2", `{"a":"1","b":"2"}`},
		{"b=1&a=2&b=3", `{"b":"3","a":"2"}`},
		{"a[0]=x&a[1]=y", `{"a":["x","y"]}`},
		{"a[1]=y&a[0]=x", `{"a":["x","y"]}`},
		{"a[0]=x&a[01]=y", `{"a":{"0":"x","01":"y"}}`},
		{"a[0][b][0]=1&a[1][b][0]=2", `{"a":[{"b":["1"]},{"b":["2"]}]}`},
		{"a[]=1&a[]=2", `{"a":["1","2"]}`},
		{"a[][x]=1&a[][y]=2&a[][x]=3", `{"a":[{"x":"1","y":"2"},{"x":"3"}]}`},
		{"[x]=1&a]=2&b[c=3&d[e]f=4", `{"[x]":"1","a]":"2","b[c":"3","d[e]f":"4"}`},
		{"=1&&e", `{"e":""}`},
		{"a+b=c+d%26", `{"a b":"c d&"}`},
	}
	for _, tt := range tests {
		root, err := decodeForm(tt.in)
		if err != nil {
			t.Errorf("decodeForm(%q): %v", tt.in, err)
			continue
		}
		var b, compact bytes.Buffer
		root.write(&b, "")
		if err := json.Compact(&compact, b.Bytes()); err != nil {
			t.Fatalf("decodeForm(%q) printed invalid JSON %s", tt.in, b.Bytes())
		}
		if compact.String() != tt.want {
			t.Errorf("decodeForm(%q) = %s, want %s", tt.in, compact.Bytes(), tt.want)
		}
	}
	for _, in := range []string{"a=1&a[b]=2", "a[b]=1&a=2", "a[]=1&a[b]=2", "a[b]=1&a[]=2", "a=%", "a%=1"} {
		if _, err := decodeForm(in); err == nil {
			t.Errorf("decodeForm(%q): no error", in)
		}
	}
}
