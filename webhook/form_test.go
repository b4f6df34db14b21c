package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/webhook"
)

// videoCreated is a typical notification's data, about 300 bytes.
const videoCreated = `{"video_id":"123234","status":"success",` +
	`"encoding_ids":["firstid","secondid","thirdid"],` +
	`"metadata":{"width":1280,"height":720,"duration":12.5,"fps":29.97,"size":48213442,"container":"mp4","codec":"h264"},` +
	`"source_url":"https://cdn.example.com/uploads/2024/05/holiday video.mov?sig=a+b&x=1",` +
	`"created_at":"2024-05-01T12:34:56Z","tags":["holiday","family"],"public":true,"title":null}`

func TestAppendFormSpecExample(t *testing.T) {
	data := `{"video_id":"123234","status":"success","encoding_ids":["firstid","secondid"],"metadata":{"width":1280}}`
	const want = "event=video-created&video_id=123234&status=success&encoding_ids[0]=firstid&encoding_ids[1]=secondid&metadata[width]=1280"
	got, err := webhook.AppendForm(nil, "video-created", json.RawMessage(data))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	// What the SPEC promises Rails and PHP see.
	params, err := parseNestedQuery(string(got))
	if err != nil {
		t.Fatal(err)
	}
	if ids := params["encoding_ids"]; !reflect.DeepEqual(ids, map[string]any{"0": "firstid", "1": "secondid"}) {
		t.Errorf(`params["encoding_ids"] = %#v, want {"0"=>"firstid","1"=>"secondid"}`, ids)
	}
}

func TestAppendForm(t *testing.T) {
	tests := []struct {
		name, typ, data, want string
	}{
		{"empty data", "t", `{}`, "event=t"},
		{"white space around everything", "t", " \t\r\n{ \"a\" : 1 , \"b\" :\n[ 1 , 2 ] } \n", "event=t&a=1&b[0]=1&b[1]=2"},
		{"keeps the producer's key order", "t", `{"z":1,"a":2,"m":3}`, "event=t&z=1&a=2&m=3"},
		{"numbers as written", "t", `{"a":1280,"b":12.5,"c":-0.0,"d":1e+3,"e":2E-7,"f":100000000000000000000001}`,
			"event=t&a=1280&b=12.5&c=-0.0&d=1e%2B3&e=2E-7&f=100000000000000000000001"},
		{"booleans and null", "t", `{"yes":true,"no":false,"none":null}`, "event=t&yes=true&no=false&none="},
		{"deep nesting", "t", `{"a":{"b":[{"c":1},[2,3]]}}`, "event=t&a[b][0][c]=1&a[b][1][0]=2&a[b][1][1]=3"},
		{"empty containers produce no pair", "t", `{"a":[],"b":{},"c":{"d":[],"e":{}},"f":[[],{}],"g":1}`, "event=t&g=1"},
		{"indexes count empty elements", "t", `{"a":[[],"x"]}`, "event=t&a[1]=x"},
		{"reserved event skipped", "t", `{"a":1,"event":"spoof","b":{"event":2}}`, "event=t&a=1&b[event]=2"},
		{"reserved event skipped when escaped", "t", `{"\u0065vent":{"x":[1]},"a":1}`, "event=t&a=1"},
		{"query escaping", "t", `{"q":"a b+c&d=e/f?g;h%i~j-k_l.m","é":"ü"}`,
			"event=t&q=a+b%2Bc%26d%3De%2Ff%3Fg%3Bh%25i~j-k_l.m&%C3%A9=%C3%BC"},
		{"brackets inside names escaped", "t", `{"a[b]":1,"m":{"x]":2,"[":3}}`, "event=t&a%5Bb%5D=1&m[x%5D]=2&m[%5B]=3"},
		{"string escapes decoded", "t", `{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, "event=t&s=%22%5C%2F%08%0C%0A%0D%09%C3%A9%F0%9F%98%80"},
		{"lone surrogate becomes U+FFFD", "t", `{"s":"\ud800x\udc00"}`, "event=t&s=%EF%BF%BDx%EF%BF%BD"},
		{"surrogate then non-surrogate escape", "t", `{"s":"\ud800\u0041"}`, "event=t&s=%EF%BF%BDA"},
		{"bytes that are not UTF-8 become U+FFFD", "t", "{\"s\":\"a\xffb\xc3\"}", "event=t&s=a%EF%BF%BDb%EF%BF%BD"},
		{"type escaped", "a b&c", `{}`, "event=a+b%26c"},
		{"duplicate keys written in order", "t", `{"a":1,"a":2}`, "event=t&a=1&a=2"},
		{"long keys", "t", `{"` + strings.Repeat("k", 200) + `":{"` + strings.Repeat("é", 50) + `":[1]},"b":2}`,
			"event=t&" + strings.Repeat("k", 200) + "[" + strings.Repeat("%C3%A9", 50) + "][0]=1&b=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := webhook.AppendForm(nil, tt.typ, json.RawMessage(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestAppendFormNested holds a body with every kind of value, byte for
// byte, and checks that a Rails decoder reads the data back.
func TestAppendFormNested(t *testing.T) {
	const want = "event=video-created&video_id=123234&status=success" +
		"&encoding_ids[0]=firstid&encoding_ids[1]=secondid&encoding_ids[2]=thirdid" +
		"&metadata[width]=1280&metadata[height]=720&metadata[duration]=12.5&metadata[fps]=29.97&metadata[size]=48213442" +
		"&metadata[container]=mp4&metadata[codec]=h264" +
		"&source_url=https%3A%2F%2Fcdn.example.com%2Fuploads%2F2024%2F05%2Fholiday+video.mov%3Fsig%3Da%2Bb%26x%3D1" +
		"&created_at=2024-05-01T12%3A34%3A56Z&tags[0]=holiday&tags[1]=family&public=true&title="
	got, err := webhook.AppendForm(nil, "video-created", json.RawMessage(videoCreated))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	checkRoundTrip(t, "video-created", []byte(videoCreated), got)
}

func TestAppendFormRoundTrip(t *testing.T) {
	for _, data := range []string{
		videoCreated,
		`{"job_id":"j1","state":"processing","output":"hls 1080p"}`,
		`{"a":{"b":[{"c":1},[2,3],{"d":{"e":[true,false,null]}}]},"x":"y z"}`,
		`{"a":[{"x":1,"y":2},{"x":3}],"b":[[],["p"]],"c":{"d":[]},"event":"dropped"}`,
		`{"unicode":"日本語 ✓","mixed":["a",1,{"b":"c"}]}`,
	} {
		got, err := webhook.AppendForm(nil, "t", json.RawMessage(data))
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		checkRoundTrip(t, "t", []byte(data), got)
	}
}

// checkRoundTrip decodes body with the Rails decoder and compares it with
// what data holds: numbers as their literal text, true/false as words, null
// as "", arrays as maps keyed "0", "1", …, empty containers gone.
func checkRoundTrip(t *testing.T, typ string, data, body []byte) {
	t.Helper()
	got, err := parseNestedQuery(string(body))
	if err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	want := formExpectation(t, typ, data)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded form differs from data\nbody %s\ngot  %#v\nwant %#v", body, got, want)
	}
}

func formExpectation(t *testing.T, typ string, data []byte) map[string]any {
	t.Helper()
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		t.Fatalf("decoding data %s: %v", data, err)
	}
	delete(top, "event")
	want, ok := formValue(top)
	if !ok {
		want = map[string]any{}
	}
	m := want.(map[string]any)
	m["event"] = typ
	return m
}

// formValue is what a form decoder reads for v, and false when v makes no
// pair at all.
func formValue(v any) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, x := range v {
			if e, ok := formValue(x); ok {
				m[k] = e
			}
		}
		return m, len(m) > 0
	case []any:
		m := map[string]any{}
		for i, x := range v {
			if e, ok := formValue(x); ok {
				m[strconv.Itoa(i)] = e
			}
		}
		return m, len(m) > 0
	case json.Number:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	case nil:
		return "", true
	case string:
		return v, true
	}
	panic("unexpected JSON value")
}

func TestAppendFormErrors(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n-1) + `{}` + strings.Repeat("}", n-1) }
	tests := []struct {
		name, data string
		msg        string // part of the error
	}{
		{"nil", ``, "must be a JSON object"},
		{"blank", "  \n", "must be a JSON object"},
		{"array", `[1,2]`, "must be a JSON object"},
		{"string", `"x"`, "must be a JSON object"},
		{"number", `1`, "must be a JSON object"},
		{"null", `null`, "must be a JSON object"},
		{"unterminated", `{"a":1`, "unexpected end"},
		{"trailing data", `{"a":1} {}`, `unexpected '{' at offset 8`},
		{"trailing comma", `{"a":1,}`, `unexpected '}'`},
		{"missing colon", `{"a" 1}`, `unexpected '1'`},
		{"single quotes", `{'a':1}`, `unexpected '\''`},
		{"bad literal", `{"a":tru}`, `unexpected 't'`},
		{"bad number", `{"a":01}`, `unexpected '1'`},
		{"bad number fraction", `{"a":1.}`, `unexpected '}'`},
		{"bad number exponent", `{"a":1e}`, `unexpected '}'`},
		{"plus sign", `{"a":+1}`, `unexpected '+'`},
		{"bad escape", `{"a":"\x"}`, "bad escape"},
		{"short unicode escape", `{"a":"\u12"}`, "bad escape"},
		{"control character in string", "{\"a\":\"\n\"}", `unexpected '\n'`},
		{"non-string key", `{1:2}`, `unexpected '1'`},
		{"too deep", deep(webhook.MaxDepth + 1), "nests more than 32 levels"},
		{"too deep in arrays", `{"a":` + strings.Repeat("[", webhook.MaxDepth) + strings.Repeat("]", webhook.MaxDepth) + `}`, "nests more than 32 levels"},
		{"too deep inside skipped event", `{"event":` + deep(webhook.MaxDepth) + `}`, "nests more than 32 levels"},
		{"invalid inside skipped event", `{"event":[1,]}`, `unexpected ']'`},
		{"empty top-level key", `{"":1}`, `empty key ""`},
		{"empty nested key", `{"a":{"b":{"":1}}}`, "empty key at a[b][]"},
		{"empty key even with empty value", `{"a":{"":[]}}`, "empty key at a[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := webhook.AppendForm(dst, "t", json.RawMessage(tt.data))
			var ve *herald.ValidationError
			if !errors.As(err, &ve) || ve.Field != "data" {
				t.Fatalf("err = %v, want a ValidationError of data", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to say %q", err, tt.msg)
			}
			if string(got) != "prefix" {
				t.Errorf("dst = %q after an error, want it unchanged", got)
			}
		})
	}

	t.Run("MaxDepth levels are fine", func(t *testing.T) {
		body, err := webhook.AppendForm(nil, "t", json.RawMessage(strings.Repeat(`{"a":`, webhook.MaxDepth)+"1"+strings.Repeat("}", webhook.MaxDepth)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseNestedQuery(string(body)); err != nil {
			t.Errorf("Rack refuses the deepest body AppendForm writes: %v", err)
		}
	})
	t.Run("empty key inside skipped event is fine", func(t *testing.T) {
		if _, err := webhook.AppendForm(nil, "t", json.RawMessage(`{"event":{"":1}}`)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAppendFormAppendsToDst(t *testing.T) {
	buf := make([]byte, 0, 512)
	buf = append(buf, "keep|"...)
	got, err := webhook.AppendForm(buf, "t", json.RawMessage(`{"a":{"b":"c"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "keep|event=t&a[b]=c" {
		t.Errorf("got %q", got)
	}
	if &got[0] != &buf[:1][0] {
		t.Error("AppendForm did not reuse dst's spare capacity")
	}
}

// TestEscapingMatchesQueryEscape checks every byte, and the brackets rule:
// the pairs, split at '&' and '=', unescape with net/url to the keys and
// values.
func TestEscapingMatchesQueryEscape(t *testing.T) {
	var all strings.Builder
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	typ := all.String()
	got, err := webhook.AppendForm(nil, typ, json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "event=" + url.QueryEscape(typ); string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	got, err = webhook.AppendForm(nil, "t", json.RawMessage(`{"k [&=]":{"v w":"x&y=z"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "event=t&" + url.QueryEscape("k [&=]") + "[" + url.QueryEscape("v w") + "]=" + url.QueryEscape("x&y=z")
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
