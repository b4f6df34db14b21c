package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/api"
)

const creds = "/v1/clouds/acme/credentials"

// Secrets the credential tests send; no answer or log may carry them.
var credentialSecrets = []string{
	"basic-user-secret", "basic-password-secret", "bearer-token-secret", "header-value-secret",
	"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg=", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg",
}

var credentialBodies = map[string]string{
	"basic":  `{"name":"panda basic","type":"basic","username":"basic-user-secret","password":"basic-password-secret"}`,
	"bearer": `{"name":"live bearer","type":"bearer","token":"bearer-token-secret"}`,
	"header": `{"name":"api key","type":"header","header":"X-Api-Key","value":"header-value-secret"}`,
	"hmac":   `{"name":"signing","type":"hmac","secret":"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg="}`,
}

// wantOnlyFields fails t unless body is a JSON object with exactly fields.
func wantOnlyFields(t *testing.T, body []byte, fields ...string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(fields)
	if !slices.Equal(got, fields) {
		t.Fatalf("answer has fields %v, want %v: %s", got, fields, body)
	}
	return m
}

func noSecretIn(t *testing.T, where string, text []byte) {
	t.Helper()
	for _, s := range credentialSecrets {
		if bytes.Contains(text, []byte(s)) {
			t.Errorf("%s carries a secret (%.6s…): %s", where, s, text)
		}
	}
}

func TestCredentialsAreWriteOnly(t *testing.T) {
	for _, typ := range []string{"basic", "bearer", "header", "hmac"} {
		t.Run(typ+" answers id, name, type and created_at only", func(t *testing.T) {
			h := newHarness(t)
			r := h.do("POST", creds, acmeKey, credentialBodies[typ])
			r.wantStatus(t, http.StatusCreated)
			m := wantOnlyFields(t, r.body, "id", "name", "type", "created_at")
			if m["type"] != typ || !strings.HasPrefix(m["id"].(string), "crd_") {
				t.Errorf("answer %s", r.body)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if loc := r.header.Get("Location"); loc != creds+"/"+m["id"].(string) {
				t.Errorf("Location = %q", loc)
			}
			// What the store received is the secret, in full.
			if got := h.creds.secrets[m["id"].(string)]; got.Type != typ {
				t.Errorf("store got type %q", got.Type)
			}
			answers := [][]byte{r.body}
			one := h.do("GET", creds+"/"+m["id"].(string), acmeKey, "")
			one.wantStatus(t, http.StatusOK)
			wantOnlyFields(t, one.body, "id", "name", "type", "created_at")
			list := h.do("GET", creds, acmeKey, "")
			list.wantStatus(t, http.StatusOK)
			answers = append(answers, one.body, list.body)
			for _, a := range answers {
				noSecretIn(t, "answer", a)
			}
			noSecretIn(t, "log", []byte(h.logs.String()))
		})
	}
	t.Run("generated hmac secret is shown once", func(t *testing.T) {
		h := newHarness(t)
		r := h.do("POST", creds, acmeKey, `{"name":"gen","type":"hmac"}`)
		r.wantStatus(t, http.StatusCreated)
		m := wantOnlyFields(t, r.body, "id", "name", "type", "created_at", "secret")
		secret, _ := m["secret"].(string)
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("secret = %q", secret)
		}
		for _, path := range []string{creds, creds + "/" + m["id"].(string)} {
			if again := h.do("GET", path, acmeKey, ""); bytes.Contains(again.body, []byte(secret)) {
				t.Errorf("GET %s shows the secret again", path)
			}
		}
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("the generated secret is logged")
		}
	})
}

func TestCredentialBodyErrors(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		want      int
		wantField string
	}{
		{name: "missing name answers 422", body: `{"type":"bearer","token":"t"}`, want: 422, wantField: "name"},
		{name: "missing type answers 422", body: `{"name":"n"}`, want: 422, wantField: "type"},
		{name: "unknown type answers 422", body: `{"name":"n","type":"oauth"}`, want: 422, wantField: "type"},
		{name: "basic without username answers 422", body: `{"name":"n","type":"basic","password":"p"}`, want: 422, wantField: "username"},
		{name: "basic username with a colon answers 422", body: `{"name":"n","type":"basic","username":"a:b"}`, want: 422, wantField: "username"},
		{name: "bearer without token answers 422", body: `{"name":"n","type":"bearer"}`, want: 422, wantField: "token"},
		{name: "bearer token with a space answers 422", body: `{"name":"n","type":"bearer","token":"a b"}`, want: 422, wantField: "token"},
		{name: "token on a basic credential answers 422", body: `{"name":"n","type":"basic","username":"u","token":"t"}`, want: 422, wantField: "token"},
		{name: "secret on a bearer credential answers 422", body: `{"name":"n","type":"bearer","token":"t","secret":"whsec_x"}`, want: 422, wantField: "secret"},
		{name: "header without a name answers 422", body: `{"name":"n","type":"header","value":"v"}`, want: 422, wantField: "header"},
		{name: "header name not a token answers 422", body: `{"name":"n","type":"header","header":"X Api","value":"v"}`, want: 422, wantField: "header"},
		{name: "header name with a colon answers 422", body: `{"name":"n","type":"header","header":"X-Api:","value":"v"}`, want: 422, wantField: "header"},
		{name: "webhook-signature header answers 422", body: `{"name":"n","type":"header","header":"Webhook-Signature","value":"v"}`, want: 422, wantField: "header"},
		{name: "herald header answers 422", body: `{"name":"n","type":"header","header":"herald-attempt","value":"v"}`, want: 422, wantField: "header"},
		{name: "content-type header answers 422", body: `{"name":"n","type":"header","header":"Content-Type","value":"v"}`, want: 422, wantField: "header"},
		{name: "host header answers 422", body: `{"name":"n","type":"header","header":"host","value":"v"}`, want: 422, wantField: "header"},
		{name: "user-agent header answers 422", body: `{"name":"n","type":"header","header":"User-Agent","value":"v"}`, want: 422, wantField: "header"},
		{name: "value with CR LF answers 422", body: `{"name":"n","type":"header","header":"X-Api-Key","value":"v\r\nX-Evil: 1"}`, want: 422, wantField: "value"},
		{name: "value with LF answers 422", body: `{"name":"n","type":"header","header":"X-Api-Key","value":"v\nx"}`, want: 422, wantField: "value"},
		{name: "value with NUL answers 422", body: `{"name":"n","type":"header","header":"X-Api-Key","value":"v\u0000"}`, want: 422, wantField: "value"},
		{name: "hmac secret without prefix answers 422", body: `{"name":"n","type":"hmac","secret":"c2VjcmV0"}`, want: 422, wantField: "secret"},
		{name: "unknown field answers 422", body: `{"name":"n","type":"bearer","token":"t","scope":"x"}`, want: 422, wantField: "scope"},
		{name: "wrong type answers 422", body: `{"name":"n","type":"bearer","token":123456}`, want: 422, wantField: "token"},
		{name: "name of wrong type answers 422", body: `{"name":["n"],"type":"bearer"}`, want: 422, wantField: "name"},
		{name: "malformed JSON answers 400", body: `{"name":"n","type":"bearer","token":"tok`, want: 400},
		{name: "array answers 400", body: `[]`, want: 400},
		{name: "empty body answers 400", body: ``, want: 400},
		{name: "over 1 MiB answers 413", body: `{"name":"n","type":"bearer","token":"` + strings.Repeat("a", 1<<20) + `"}`, want: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.do("POST", creds, adminToken, tt.body)
			r.wantStatus(t, tt.want)
			msg, field := r.errorOf(t)
			if field != tt.wantField {
				t.Errorf("field = %q, want %q (error %q)", field, tt.wantField, msg)
			}
			if len(h.creds.byID) != 0 {
				t.Errorf("a refused credential was stored")
			}
		})
	}
}

// TestCredentialErrorsQuoteNoSecret sends secrets in bodies that fail in
// every way and checks that no answer repeats any part of them.
func TestCredentialErrorsQuoteNoSecret(t *testing.T) {
	const secret = "Zq9SECRETv7x"
	bodies := []string{
		`{"name":"n","type":"bearer","token":"` + secret + "\x01" + `"}`, // control character in a string
		`{"name":"n","type":"bearer","token":"` + secret + `" "x"}`,      // syntax error right after it
		`{"name":"n","type":"bearer","token":"` + secret + ` x"}`,        // a space in a token
		`{"name":"n","type":"hmac","secret":"whsec_` + secret + `!"}`,    // bad base64
		`{"name":"n","type":"hmac","secret":"` + secret + `"}`,           // no prefix
		`{"name":"n","type":"basic","username":"` + secret + `:x"}`,      // colon in a username
		`{"name":"n","type":"header","header":"X-K","value":" ` + secret + `"}`,
		`{"name":"n","type":"header","header":"X-K","value":"` + secret + `\r\n"}`,
	}
	for i, body := range bodies {
		t.Run(fmt.Sprintf("body %d is refused without quoting it", i), func(t *testing.T) {
			h := newHarness(t)
			r := h.do("POST", creds, acmeKey, body)
			if r.status < 400 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			for _, part := range []string{secret, secret[:6], secret[6:]} {
				if bytes.Contains(r.body, []byte(part)) {
					t.Errorf("answer %s quotes %q", r.body, part)
				}
				if strings.Contains(h.logs.String(), part) {
					t.Errorf("log quotes %q", part)
				}
			}
		})
	}
}

func TestCredentialDelete(t *testing.T) {
	h := newHarness(t)
	id := h.creds.seed("acme", herald.CredentialBearer)
	used := h.creds.seed("acme", herald.CredentialHMAC)
	h.creds.inUse[used] = true

	h.do("DELETE", creds+"/"+used, acmeKey, "").wantStatus(t, http.StatusConflict)
	h.do("GET", creds+"/"+used, acmeKey, "").wantStatus(t, http.StatusOK)
	h.do("DELETE", creds+"/"+id, acmeKey, "").wantStatus(t, http.StatusNoContent)
	h.do("GET", creds+"/"+id, acmeKey, "").wantStatus(t, http.StatusNotFound)
	h.do("DELETE", creds+"/"+id, acmeKey, "").wantStatus(t, http.StatusNotFound)
	h.do("DELETE", creds+"/not-an-id", acmeKey, "").wantStatus(t, http.StatusNotFound)
}

func TestRotate(t *testing.T) {
	tests := []struct {
		name       string
		typ        string
		body       string
		want       int
		wantField  string
		wantSecret bool
		overlap    time.Duration
	}{
		{name: "empty body generates a secret and keeps the old one 24h", typ: "hmac", want: 200, wantSecret: true, overlap: 24 * time.Hour},
		{name: "{} generates a secret", typ: "hmac", body: `{}`, want: 200, wantSecret: true, overlap: 24 * time.Hour},
		{name: "given secret is not shown", typ: "hmac", body: `{"secret":"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg=","expire_after":"1h"}`, want: 200, overlap: time.Hour},
		{name: "expire_after 0s answers 200", typ: "hmac", body: `{"expire_after":"0s"}`, want: 200, wantSecret: true},
		{name: "bad expire_after answers 422", typ: "hmac", body: `{"expire_after":"soon"}`, want: 422, wantField: "expire_after"},
		{name: "negative expire_after answers 422", typ: "hmac", body: `{"expire_after":"-1h"}`, want: 422, wantField: "expire_after"},
		{name: "expire_after over 7 days answers 422", typ: "hmac", body: `{"expire_after":"169h"}`, want: 422, wantField: "expire_after"},
		{name: "unknown field answers 422", typ: "hmac", body: `{"secrett":"x"}`, want: 422, wantField: "secrett"},
		{name: "malformed body answers 400", typ: "hmac", body: `{"secret":`, want: 400},
		{name: "bearer credential answers 422", typ: "bearer", body: `{}`, want: 422, wantField: "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.creds.seed("acme", tt.typ)
			before := time.Now()
			r := h.do("POST", creds+"/"+id+"/rotate", acmeKey, tt.body)
			r.wantStatus(t, tt.want)
			if tt.want != 200 {
				if _, field := r.errorOf(t); field != tt.wantField {
					t.Errorf("field = %q, want %q", field, tt.wantField)
				}
				return
			}
			fields := []string{"id", "name", "type", "created_at", "previous_secret_expires_at"}
			if tt.wantSecret {
				fields = append(fields, "secret")
			}
			m := wantOnlyFields(t, r.body, fields...)
			exp, err := time.Parse(time.RFC3339Nano, m["previous_secret_expires_at"].(string))
			if err != nil || exp.Before(before.Add(tt.overlap-time.Second)) || exp.After(time.Now().Add(tt.overlap+time.Second)) {
				t.Errorf("previous_secret_expires_at = %v, want about now + %s", m["previous_secret_expires_at"], tt.overlap)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			noSecretIn(t, "answer", r.body)
		})
	}
}

func TestKeysListAndRevoke(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/clouds/acme/keys", adminToken, "")
	r.wantStatus(t, http.StatusCreated)
	var created struct{ ID, Key string }
	r.into(t, &created)

	list := h.do("GET", "/v1/clouds/acme/keys", adminToken, "")
	list.wantStatus(t, http.StatusOK)
	var l struct{ Data []map[string]any }
	list.into(t, &l)
	if len(l.Data) != 2 {
		t.Fatalf("list = %s, want acme's two keys", list.body)
	}
	for _, k := range l.Data {
		if len(k) != 3 || k["id"] == nil || k["cloud"] != "acme" || k["created_at"] == nil {
			t.Errorf("listed key %v, want id, cloud and created_at only", k)
		}
	}
	if bytes.Contains(list.body, []byte(created.Key)) || bytes.Contains(list.body, []byte(acmeKey)) {
		t.Errorf("list shows a token: %s", list.body)
	}

	h.do("GET", "/v1/clouds/acme/subscriptions", created.Key, "").wantStatus(t, http.StatusOK)
	h.do("DELETE", "/v1/clouds/globex/keys/"+created.ID, adminToken, "").wantStatus(t, http.StatusNotFound)
	h.do("DELETE", "/v1/clouds/acme/keys/"+created.ID, adminToken, "").wantStatus(t, http.StatusNoContent)
	h.do("GET", "/v1/clouds/acme/subscriptions", created.Key, "").wantStatus(t, http.StatusUnauthorized)
	h.do("DELETE", "/v1/clouds/acme/keys/"+created.ID, adminToken, "").wantStatus(t, http.StatusNotFound)
	h.do("GET", "/v1/clouds/globex/keys", adminToken, "").into(t, &l)
	if len(l.Data) != 1 || l.Data[0]["cloud"] != "globex" {
		t.Errorf("globex keys = %v", l.Data)
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestFailedAuthIsRateLimited(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := newHarness(t, func(c *api.Config) { c.Now = clock.now })
	from := func(addr, token string) response {
		t.Helper()
		req := newRequest(t, "GET", "/v1/clouds/acme/subscriptions", token, "")
		req.RemoteAddr = addr
		return h.send(req)
	}
	const attacker, neighbour = "198.51.100.7:40000", "203.0.113.9:40000"
	for i := range api.DefaultAuthFailureBurst {
		from(attacker, fmt.Sprintf("wrong-%d", i)).wantStatus(t, http.StatusUnauthorized)
	}
	t.Run("the next failure answers 429 with Retry-After", func(t *testing.T) {
		r := from(attacker, "wrong-again")
		r.wantStatus(t, http.StatusTooManyRequests)
		if got := r.header.Get("Retry-After"); got != "6" {
			t.Errorf("Retry-After = %q, want 6", got)
		}
		r.errorOf(t)
		from(attacker, "").wantStatus(t, http.StatusTooManyRequests)
	})
	t.Run("another port of the same address is the same client", func(t *testing.T) {
		from("198.51.100.7:50000", "wrong").wantStatus(t, http.StatusTooManyRequests)
	})
	t.Run("a valid token from the same address is not throttled", func(t *testing.T) {
		from(attacker, acmeKey).wantStatus(t, http.StatusOK)
		from(attacker, adminToken).wantStatus(t, http.StatusOK)
	})
	t.Run("another address is not throttled", func(t *testing.T) {
		from(neighbour, "wrong").wantStatus(t, http.StatusUnauthorized)
	})
	t.Run("one more failure is allowed after the interval", func(t *testing.T) {
		clock.t = clock.t.Add(api.DefaultAuthFailureInterval)
		from(attacker, "wrong").wantStatus(t, http.StatusUnauthorized)
		from(attacker, "wrong").wantStatus(t, http.StatusTooManyRequests)
	})
	t.Run("an IPv6 client is limited by its /64", func(t *testing.T) {
		for i := range api.DefaultAuthFailureBurst {
			from(fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1), "wrong").wantStatus(t, http.StatusUnauthorized)
		}
		from("[2001:db8:1:2:ffff::1]:1", "wrong").wantStatus(t, http.StatusTooManyRequests)
		from("[2001:db8:1:3::1]:1", "wrong").wantStatus(t, http.StatusUnauthorized)
	})
	t.Run("a negative burst turns the limit off", func(t *testing.T) {
		h := newHarness(t, func(c *api.Config) { c.AuthLimit.Burst = -1 })
		for range api.DefaultAuthFailureBurst + 5 {
			h.do("GET", "/v1/clouds/acme/subscriptions", "wrong", "").wantStatus(t, http.StatusUnauthorized)
		}
	})
}

func FuzzDecodeCredential(f *testing.F) {
	for _, b := range credentialBodies {
		f.Add(b)
	}
	for _, seed := range []string{
		`{"name":"gen","type":"hmac"}`, `{"name":"n","type":"header","header":"X-K","value":"v\r\n"}`,
		`{"name":"n","type":"basic","username":"u:","password":"p"}`, `{"name":1}`, `{"type":["basic"]}`,
		`{"name":"n","type":"bearer","token":"t","bogus":1}`, `{"name":"n","type":"header","header":"Host","value":"v"}`,
		`{} {}`, `[]`, `null`, ``, `{"token":`, `{"name":"\u0000","type":"bearer","token":"t"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h := newFuzzHarness(t)
		r := h.do("POST", creds, adminToken, body)
		checkFuzzAnswer(t, r, 201, 400, 413, 422)
		if r.status == 201 {
			var m map[string]any
			r.into(t, &m)
			for k := range m {
				if !slices.Contains([]string{"id", "name", "type", "created_at", "secret"}, k) {
					t.Fatalf("answer has field %q: %s", k, r.body)
				}
			}
			// Only a generated hmac secret is shown, never one the
			// client sent.
			if secret, ok := m["secret"].(string); ok && (m["type"] != "hmac" || strings.Contains(body, strings.TrimPrefix(secret, "whsec_"))) {
				t.Fatalf("answer shows a secret it did not generate: %s", r.body)
			}
		}
	})
}

func FuzzDecodeRotation(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"secret":"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg="}`, `{"expire_after":"1h"}`,
		`{"expire_after":"-1s"}`, `{"expire_after":3}`, `{"secret":1}`, `{"x":1}`, `[]`, `null`, `{"secret":`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h := newFuzzHarness(t)
		id := h.creds.seed("acme", herald.CredentialHMAC)
		r := h.do("POST", creds+"/"+id+"/rotate", adminToken, body)
		checkFuzzAnswer(t, r, 200, 400, 413, 422)
	})
}
