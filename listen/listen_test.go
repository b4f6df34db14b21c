package listen_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/listen"
	"github.com/herald-webhooks/herald/webhook"
)

var clock = time.Date(2024, 5, 1, 12, 34, 56, 789_000_000, time.UTC)

func fixedNow() time.Time { return clock }

// serve sends one request to a handler made from cfg and returns the
// status answered and what was printed.
func serve(t *testing.T, cfg listen.Config, req *http.Request) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cfg.Out = &out
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	rec := httptest.NewRecorder()
	listen.Handler(cfg).ServeHTTP(rec, req)
	return rec.Code, out.String()
}

// notification builds the request herald would send for data in format.
func notification(t *testing.T, format, typ, data string) *http.Request {
	t.Helper()
	var body []byte
	var err error
	ct := webhook.ContentTypeJSON
	if format == "form" {
		body, err = webhook.AppendForm(nil, typ, json.RawMessage(data))
		ct = webhook.ContentTypeForm
	} else {
		body, err = webhook.AppendJSON(nil, typ, json.RawMessage(data))
	}
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/hooks/panda?x=1", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set(webhook.HeaderEvent, typ)
	req.Header.Set(webhook.HeaderAttempt, "2")
	req.Header.Set(webhook.HeaderID, "dlv_01HZX3")
	req.Header.Set(webhook.HeaderSequence, "42")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(clock.Unix(), 10))
	return req
}

const videoCreated = `{"video_id":"123234","status":"success","encoding_ids":["firstid","secondid"],` +
	`"metadata":{"width":1280,"duration":12.5,"tags":{"a b":"x&y"}},"note":null}`

func TestFormNotification(t *testing.T) {
	status, out := serve(t, listen.Config{}, notification(t, "form", "video-created", videoCreated))
	if status != http.StatusOK {
		t.Errorf("status %d, want 200", status)
	}
	const want = `2024-05-01 12:34:56.789 POST /hooks/panda?x=1 200 event=video-created attempt=2 webhook-id=dlv_01HZX3 sequence=42
  {
    "event": "video-created",
    "video_id": "123234",
    "status": "success",
    "encoding_ids": [
      "firstid",
      "secondid"
    ],
    "metadata": {
      "width": "1280",
      "duration": "12.5",
      "tags": {
        "a b": "x&y"
      }
    },
    "note": ""
  }

`
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
}

func TestJSONNotification(t *testing.T) {
	_, out := serve(t, listen.Config{}, notification(t, "json", "state_changed", `{"job_id":"j1","state":"processing","output":{"label":"hls"}}`))
	const want = `2024-05-01 12:34:56.789 POST /hooks/panda?x=1 200 event=state_changed attempt=2 webhook-id=dlv_01HZX3 sequence=42
  {
    "event": "state_changed",
    "job_id": "j1",
    "state": "processing",
    "output": {
      "label": "hls"
    }
  }

`
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
}

func TestBodies(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 5000) // 80 000 bytes
	tests := []struct {
		name, contentType, body string
		want                    []string // lines or parts of lines printed
		dontWant                []string
	}{
		{"empty", "application/json", "", []string{"\n  (empty body)\n"}, nil},
		{"json with parameters", "application/json; charset=utf-8", `{"a":[1,2]}`, []string{"\n  {\n    \"a\": [\n      1,\n      2\n    ]\n  }\n"}, nil},
		{"json suffix", "application/cloudevents+json", `{"a":1}`, []string{"\n    \"a\": 1\n"}, nil},
		{"invalid json", "application/json", `{"a":`, []string{"(not valid JSON: unexpected end of JSON input)", "\n  {\"a\":\n"}, nil},
		{"plain text", "text/plain", "line one\r\nline two\n", []string{"\n  line one\n  line two\n\n"}, []string{"\r"}},
		{"no content type", "", "a=1", []string{"\n  a=1\n"}, nil},
		{"control characters made visible", "text/plain", "a\x1b[31mred\x00\xffz\u0085", []string{`a\u001b[31mred\u0000\xffz\u0085`}, []string{"\x1b"}},
		{"long text cut", "text/plain", big, []string{"(cut: showing the first 65536 of 80000 bytes)"}, []string{big[:65537]}},
		{"form with [] arrays", "application/x-www-form-urlencoded", "a[]=1&a[]=2&b[][x]=1&b[][y]=2&b[][x]=3",
			[]string{`"a": [` + "\n" + `      "1",` + "\n" + `      "2"`, `"b": [` + "\n      {\n" + `        "x": "1",` + "\n" + `        "y": "2"` + "\n      },\n      {\n" + `        "x": "3"`}, nil},
		{"form keeps the last of a repeated key", "application/x-www-form-urlencoded", "a=1&a=2", []string{`"a": "2"`}, []string{`"1"`}},
		{"form object with gaps stays an object", "application/x-www-form-urlencoded", "a[0]=x&a[2]=y", []string{`"0": "x"`, `"2": "y"`}, nil},
		{"form conflict", "application/x-www-form-urlencoded", "a=1&a[b]=2", []string{`(form data that does not decode: key "a[b]": used both as a value and for nesting)`, "\n  a=1&a[b]=2\n"}, nil},
		{"form bad escape", "application/x-www-form-urlencoded", "a=%zz", []string{`(form data that does not decode: value of "a": invalid URL escape "%zz")`}, nil},
		{"form strings escaped as JSON", "application/x-www-form-urlencoded", "q=%22%5C%0A%1B", []string{`"q": "\"\\\n\u001b"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			_, out := serve(t, listen.Config{}, req)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("printed\n%s\nwant it to contain\n%s", out, w)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(out, w) {
					t.Errorf("printed\n%q\nwant it not to contain %q", out, w)
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name   string
		cfg    listen.Config
		status int
		line   string
	}{
		{"default", listen.Config{}, 200, " 200 event="},
		{"chosen status", listen.Config{Status: 503}, 503, " 503 event="},
		{"fail rate 0", listen.Config{Status: 202, FailRate: 0}, 202, " 202 event="},
		{"fail rate 1", listen.Config{Status: 202, FailRate: 1}, 500, " 500 (fail-rate) event="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 20 {
				status, out := serve(t, tt.cfg, notification(t, "json", "t", `{}`))
				if status != tt.status {
					t.Fatalf("status %d, want %d", status, tt.status)
				}
				if !strings.Contains(out, tt.line) {
					t.Fatalf("printed %q, want it to contain %q", out, tt.line)
				}
			}
		})
	}
}

func TestBodySizeLimit(t *testing.T) {
	body := bytes.Repeat([]byte("a"), listen.MaxBodySize)
	status, out := serve(t, listen.Config{}, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
	if status != http.StatusOK || !strings.Contains(out, "(cut: showing the first 65536 of 1048576 bytes)") {
		t.Errorf("1 MiB body: status %d, printed %.200q", status, out)
	}

	body = append(body, 'a')
	status, out = serve(t, listen.Config{FailRate: 1}, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB + 1 byte: status %d, want 413", status)
	}
	if want := "2024-05-01 12:34:56.789 POST / 413 (body over 1 MiB)\n\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestSignatureVerdict(t *testing.T) {
	secret, _, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := webhook.NewSecret()
	signed := func(mutate func(*http.Request)) *http.Request {
		req := notification(t, "json", "state_changed", `{"job_id":"j1","state":"finished"}`)
		body, _ := json.Marshal(map[string]string{"event": "state_changed", "job_id": "j1", "state": "finished"})
		req.Header.Set(webhook.HeaderSignature, secret.Sign(req.Header.Get(webhook.HeaderID), clock, body))
		if mutate != nil {
			mutate(req)
		}
		return req
	}
	tests := []struct {
		name    string
		secrets []webhook.Secret
		req     *http.Request
		verdict string // "" for no verdict at all
	}{
		{"no secret, no verdict", nil, signed(nil), ""},
		{"signed", []webhook.Secret{secret}, signed(nil), " signature ok\n"},
		{"any of the secrets", []webhook.Secret{other, secret}, signed(nil), " signature ok\n"},
		{"wrong secret", []webhook.Secret{other}, signed(nil), " signature INVALID: no signature matches: checked 1 v1 signature(s) against 1 secret(s)\n"},
		{"unsigned", []webhook.Secret{secret}, signed(func(r *http.Request) { r.Header.Del(webhook.HeaderSignature) }), " signature INVALID: missing header webhook-signature\n"},
		{"other id", []webhook.Secret{secret}, signed(func(r *http.Request) { r.Header.Set(webhook.HeaderID, "dlv_2") }), " signature INVALID: no signature matches"},
		{"stale", []webhook.Secret{secret}, signed(func(r *http.Request) {
			r.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(clock.Add(-time.Hour).Unix(), 10))
		}), " signature INVALID: timestamp rejected: 1h0m0.789s old, over the 5m0s tolerance\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := serve(t, listen.Config{Secrets: tt.secrets}, tt.req)
			line, _, _ := strings.Cut(out, "\n")
			line += "\n"
			if tt.verdict == "" {
				if strings.Contains(line, "signature") {
					t.Errorf("line %q has a verdict without a secret", line)
				}
			} else if !strings.Contains(line, tt.verdict) {
				t.Errorf("line %q, want it to contain %q", line, tt.verdict)
			}
			if status != http.StatusOK {
				t.Errorf("status %d: the verdict must not change the answer", status)
			}
		})
	}
}

func TestHeaderValuesQuoted(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set(webhook.HeaderEvent, "a b\x1b[2J")
	_, out := serve(t, listen.Config{}, req)
	if want := ` event="a b\x1b[2J"` + "\n"; !strings.Contains(out, want) {
		t.Errorf("printed %q, want it to contain %q", out, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg   listen.Config
		field string // "" when valid
	}{
		{listen.Config{}, ""},
		{listen.Config{Status: 200, FailRate: 0.5}, ""},
		{listen.Config{Status: 599, FailRate: 1}, ""},
		{listen.Config{Status: 199}, "status"},
		{listen.Config{Status: 600}, "status"},
		{listen.Config{Status: -1}, "status"},
		{listen.Config{FailRate: -0.1}, "fail-rate"},
		{listen.Config{FailRate: 1.01}, "fail-rate"},
		{listen.Config{FailRate: math.NaN()}, "fail-rate"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		var ve *herald.ValidationError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
			t.Errorf("%+v: err = %v, want a ValidationError of %s", tt.cfg, err, tt.field)
		}
	}

	defer func() {
		if recover() == nil {
			t.Error("Handler accepted an invalid Config")
		}
	}()
	listen.Handler(listen.Config{Status: 42})
}

// entryWriter records each Write, checking that each is whole entries.
type entryWriter struct {
	mu      sync.Mutex
	writes  int
	entries int
	bad     []string
}

func (w *entryWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	s := string(p)
	if !strings.HasPrefix(s, "2024-05-01 ") || !strings.HasSuffix(s, "\n\n") || strings.Count(s, " POST /") != 1 {
		w.bad = append(w.bad, s)
	}
	w.entries += strings.Count(s, " POST /")
	return len(p), nil
}

func TestConcurrentRequests(t *testing.T) {
	out := &entryWriter{}
	srv := httptest.NewServer(listen.Handler(listen.Config{Out: out, Now: fixedNow, FailRate: 0.5}))
	t.Cleanup(srv.Close)

	const clients, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf(`{"client":%d,"i":%d,"pad":%q}`, c, i, strings.Repeat("x", 2000))
				resp, err := http.Post(srv.URL+"/c", "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 500 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.writes != clients*each || out.entries != clients*each || len(out.bad) > 0 {
		t.Errorf("%d writes, %d entries, want %d each; %d not whole entries", out.writes, out.entries, clients*each, len(out.bad))
	}
}

// TestRotatedSignatureVerdict: while herald rotates a secret it sends
// "v1,<new> v1,<old>"; a listener given either secret, or both (several
// --secret flags), says the signature is ok.
func TestRotatedSignatureVerdict(t *testing.T) {
	oldSecret, _, _ := webhook.NewSecret()
	newSecret, _, _ := webhook.NewSecret()
	stranger, _, _ := webhook.NewSecret()
	req := func() *http.Request {
		r := notification(t, "json", "state_changed", `{"job_id":"j1","state":"finished"}`)
		body, _ := json.Marshal(map[string]string{"event": "state_changed", "job_id": "j1", "state": "finished"})
		r.Header.Set(webhook.HeaderSignature, webhook.SignatureHeader([]webhook.Secret{newSecret, oldSecret}, r.Header.Get(webhook.HeaderID), clock, body))
		return r
	}
	tests := []struct {
		name    string
		secrets []webhook.Secret
		verdict string
	}{
		{"the old secret verifies", []webhook.Secret{oldSecret}, " signature ok\n"},
		{"the new secret verifies", []webhook.Secret{newSecret}, " signature ok\n"},
		{"both secrets verify", []webhook.Secret{oldSecret, newSecret}, " signature ok\n"},
		{"another secret does not", []webhook.Secret{stranger}, " signature INVALID: no signature matches: checked 2 v1 signature(s) against 1 secret(s)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, out := serve(t, listen.Config{Secrets: tt.secrets}, req())
			line, _, _ := strings.Cut(out, "\n")
			if !strings.HasSuffix(line+"\n", tt.verdict) {
				t.Errorf("line %q, want it to end with %q", line, tt.verdict)
			}
		})
	}
}
