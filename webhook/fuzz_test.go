package webhook_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/herald-webhooks/herald/webhook"
)

// fuzzSeeds are data the fuzz targets start from.
var fuzzSeeds = []string{
	`{}`,
	videoCreated,
	`{"video_id":"123234","status":"success","encoding_ids":["firstid","secondid"],"metadata":{"width":1280}}`,
	`{"a":{"b":[{"c":1},[2,3],{"d":{"e":[true,false,null]}}]},"x":"y z"}`,
	`{"event":"x","\u0065vent":[1],"a":[[],{}]}`,
	`{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800"}`,
	"{\"s\xff\":\"a\xffb\"}",
	`{"a[b]":1,"m":{"x]":2}}`,
	`{"":1}`,
	`{"a":1,"a":{"b":2}}`,
	`{"n":-0.5e+10,"m":1E2,"z":0}`,
	`[1]`, `{"a":1`, `{"a":01}`, `{} {}`, ` { "a" : [ ] } `,
	strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33),
}

// shape is what encoding/json says about data, for the fuzz oracles.
type shape struct {
	valid, object bool
	depth         int  // deepest container level, data being 1
	emptyKey      bool // an empty key outside the top-level "event" values
	ambiguous     bool // a duplicate key, or a key with a bracket: no round trip
}

func inspect(data []byte) shape {
	s := shape{valid: json.Valid(data)}
	if !s.valid {
		return s
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, _ := dec.Token()
	if tok != json.Delim('{') {
		return s
	}
	s.object = true
	inspectObject(dec, 1, true, false, &s)
	return s
}

func inspectObject(dec *json.Decoder, depth int, top, skipped bool, s *shape) {
	s.depth = max(s.depth, depth)
	seen := map[string]bool{}
	for dec.More() {
		tok, _ := dec.Token()
		k := tok.(string)
		if seen[k] || strings.ContainsAny(k, "[]") {
			s.ambiguous = true
		}
		seen[k] = true
		if k == "" && !skipped {
			s.emptyKey = true
		}
		inspectValue(dec, depth+1, skipped || top && k == "event", s)
	}
	dec.Token() // '}'
}

func inspectValue(dec *json.Decoder, depth int, skipped bool, s *shape) {
	tok, _ := dec.Token()
	switch tok {
	case json.Delim('{'):
		inspectObject(dec, depth, false, skipped, s)
	case json.Delim('['):
		s.depth = max(s.depth, depth)
		for dec.More() {
			inspectValue(dec, depth+1, skipped, s)
		}
		dec.Token() // ']'
	}
}

// FuzzAppendForm: AppendForm never panics; it refuses exactly what it
// documents (not JSON, not an object, too deep, an empty key); and what it
// writes, decoded the way Rack does, gives back data's values.
func FuzzAppendForm(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add("video-created", []byte(s))
	}
	f.Add("a b&c[d]", []byte(`{"x":1}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		body, err := webhook.AppendForm([]byte("prefix"), typ, data)
		s := inspect(data)
		wantOK := s.valid && s.object && s.depth <= webhook.MaxDepth && !s.emptyKey
		if wantOK != (err == nil) {
			t.Fatalf("AppendForm(%q): err = %v; valid %v, object %v, depth %d, empty key %v", data, err, s.valid, s.object, s.depth, s.emptyKey)
		}
		if err != nil {
			if string(body) != "prefix" {
				t.Fatalf("dst changed on error: %q", body)
			}
			return
		}
		body, ok := bytes.CutPrefix(body, []byte("prefix"))
		if !ok || !bytes.HasPrefix(body, []byte("event=")) {
			t.Fatalf("body %q does not start with prefix then event=", body)
		}
		if s.ambiguous {
			return
		}
		checkRoundTrip(t, typ, data, body)
	})
}

// FuzzAppendJSON: AppendJSON never panics; it refuses what AppendForm
// refuses but empty keys; what it writes is valid JSON that decodes to
// {"event":typ} and data's fields but a top-level "event".
func FuzzAppendJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add("video-created", []byte(s))
	}
	f.Add("a\"b\\c\n\x01\xff", []byte(`{"x":1}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		body, err := webhook.AppendJSON([]byte("prefix"), typ, data)
		s := inspect(data)
		wantOK := s.valid && s.object && s.depth <= webhook.MaxDepth
		if wantOK != (err == nil) {
			t.Fatalf("AppendJSON(%q): err = %v; valid %v, object %v, depth %d", data, err, s.valid, s.object, s.depth)
		}
		if err != nil {
			if string(body) != "prefix" {
				t.Fatalf("dst changed on error: %q", body)
			}
			return
		}
		body, ok := bytes.CutPrefix(body, []byte("prefix"))
		if !ok {
			t.Fatalf("body %q lost the prefix", body)
		}
		checkJSON(t, typ, data, body)
		if !bytes.Equal(bytes.ToValidUTF8(body, nil), body) {
			t.Fatalf("body is not UTF-8: %q", body)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil || !bytes.Equal(compact.Bytes(), body) {
			t.Fatalf("body is not compact: %q", body)
		}
	})
}

// FuzzVerify: Verify never panics, passes only a request that carries the
// signature crypto/hmac computes for it, and fails with a documented error.
func FuzzVerify(f *testing.F) {
	f.Add(exampleID, exampleTimestamp, exampleSignature, []byte(exampleBody))
	f.Add(exampleID, "+1614265330", exampleSignature, []byte(exampleBody))
	f.Add("", "", "", []byte(nil))
	f.Add("m", "-1", "v1,x v1, v1,,", []byte("b"))
	secret, err := webhook.ParseSecret(exampleSecret)
	if err != nil {
		f.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(exampleSecret, "whsec_"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		err := webhook.Verify([]webhook.Secret{secret}, id, ts, sig, body, exampleTime, 0)
		if err != nil {
			if !errors.Is(err, webhook.ErrMissingHeader) && !errors.Is(err, webhook.ErrTimestamp) && !errors.Is(err, webhook.ErrNoMatch) {
				t.Fatalf("error %v wraps none of the documented errors", err)
			}
			return
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(body)
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		for _, entry := range strings.Split(sig, " ") {
			if entry == want {
				return
			}
		}
		t.Fatalf("Verify passed %q, which lacks %q", sig, want)
	})
}
