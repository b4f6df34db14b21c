package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/webhook"
)

func TestAppendJSONSpecExample(t *testing.T) {
	got, err := webhook.AppendJSON(nil, "state_changed", json.RawMessage(`{"job_id":"j1","state":"processing"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"event":"state_changed","job_id":"j1","state":"processing"}`; string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name, typ, data, want string
	}{
		{"empty data", "t", `{}`, `{"event":"t"}`},
		{"nested, compacted", "video-created", "{\n  \"video_id\" : \"123234\",\n  \"encoding_ids\" : [ \"a\" , \"b\" ],\n  \"metadata\" : { \"width\" : 1280 , \"ratio\" : 1.7778e0 , \"tags\" : [ ] , \"x\" : { } },\n  \"ok\" : true , \"no\" : false , \"none\" : null\n}\n",
			`{"event":"video-created","video_id":"123234","encoding_ids":["a","b"],"metadata":{"width":1280,"ratio":1.7778e0,"tags":[],"x":{}},"ok":true,"no":false,"none":null}`},
		{"keeps the producer's key order", "t", `{"z":1,"a":2,"m":3}`, `{"event":"t","z":1,"a":2,"m":3}`},
		{"string escapes kept as written", "t", `{"s":"a\"b\\c\/d\u00e9\n"}`, `{"event":"t","s":"a\"b\\c\/d\u00e9\n"}`},
		{"white space inside strings kept", "t", `{"s":" a  b "}`, `{"event":"t","s":" a  b "}`},
		{"reserved event skipped", "t", `{"a":1,"event":{"x":[1,2]},"b":{"event":2},"\u0065vent":3}`, `{"event":"t","a":1,"b":{"event":2}}`},
		{"bytes that are not UTF-8 become \\ufffd", "t", "{\"s\xff\":\"a\xffb\xe2\x82\",\"ok\":\"é\"}", `{"event":"t","s\ufffd":"a\ufffdb\ufffd\ufffd","ok":"é"}`},
		{"type quoted", "a\"b\\c\n\x01\xff", `{}`, `{"event":"a\"b\\c\n\u0001\ufffd"}`},
		{"empty key is fine", "t", `{"":1}`, `{"event":"t","":1}`},
		{"duplicate keys copied", "t", `{"a":1,"a":2}`, `{"event":"t","a":1,"a":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := webhook.AppendJSON(nil, tt.typ, json.RawMessage(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendJSONVideoCreated(t *testing.T) {
	got, err := webhook.AppendJSON(nil, "video-created", json.RawMessage(videoCreated))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"event":"video-created",` + videoCreated[1:]; string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	checkJSON(t, "video-created", []byte(videoCreated), got)
}

// checkJSON decodes body and compares it with {"event":typ} and data's
// fields but "event".
func checkJSON(t *testing.T, typ string, data, body []byte) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("not valid JSON: %q", body)
	}
	got := decodeNumbers(t, body)
	want := decodeNumbers(t, data)
	delete(want, "event")
	quoted, _ := json.Marshal(typ)
	want["event"] = decodeNumbers(t, []byte(`{"e":`+string(quoted)+`}`))["e"]
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body differs from data\nbody %s\ngot  %#v\nwant %#v", body, got, want)
	}
}

func decodeNumbers(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
	return m
}

func TestAppendJSONErrors(t *testing.T) {
	for _, data := range []string{
		``, `[]`, `"x"`, `null`, `{"a":1`, `{"a":1}x`, `{"a":[1,]}`, `{"a":"\q"}`,
		strings.Repeat(`{"a":`, webhook.MaxDepth) + `{}` + strings.Repeat("}", webhook.MaxDepth),
	} {
		dst := []byte("prefix")
		got, err := webhook.AppendJSON(dst, "t", json.RawMessage(data))
		var ve *herald.ValidationError
		if !errors.As(err, &ve) || ve.Field != "data" {
			t.Errorf("%q: err = %v, want a ValidationError of data", data, err)
		}
		if string(got) != "prefix" {
			t.Errorf("%q: dst = %q after an error, want it unchanged", data, got)
		}
	}
}
