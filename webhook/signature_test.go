package webhook_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/webhook"
)

// The example of the Standard Webhooks specification.
const (
	exampleSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	exampleID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	exampleTimestamp = "1614265330"
	exampleBody      = `{"test": 2432232314}`
	exampleSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var exampleTime = time.Unix(1614265330, 0)

func mustSecret(t testing.TB, s string) webhook.Secret {
	t.Helper()
	secret, err := webhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestSignExample(t *testing.T) {
	secret := mustSecret(t, exampleSecret)
	if got := secret.Sign(exampleID, exampleTime, []byte(exampleBody)); got != exampleSignature {
		t.Errorf("Sign = %s, want %s", got, exampleSignature)
	}
	// The text of the time is its Unix seconds, whatever its zone.
	if got := secret.Sign(exampleID, exampleTime.In(time.FixedZone("x", 3600)).Add(999*time.Millisecond), []byte(exampleBody)); got != exampleSignature {
		t.Errorf("Sign in another zone, sub-second = %s, want %s", got, exampleSignature)
	}
}

func TestVerify(t *testing.T) {
	secret := mustSecret(t, exampleSecret)
	other, _, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(exampleBody)
	tests := []struct {
		name      string
		secrets   []webhook.Secret
		id, ts    string
		sig       string
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      error // nil, or the sentinel the error wraps
		msg       string
	}{
		{name: "example passes", sig: exampleSignature},
		{name: "one of several entries", sig: "v1,bm9wZQ== " + exampleSignature + " v1a,ignored"},
		{name: "several spaces between entries", sig: "v1,bm9wZQ==  " + exampleSignature},
		{name: "any of several secrets", secrets: []webhook.Secret{other, secret}, sig: exampleSignature},
		{name: "at the edge of the tolerance", sig: exampleSignature, now: exampleTime.Add(5 * time.Minute)},
		{name: "at the other edge", sig: exampleSignature, now: exampleTime.Add(-5 * time.Minute)},
		{name: "custom tolerance", sig: exampleSignature, now: exampleTime.Add(time.Hour), tolerance: time.Hour},

		{name: "tampered body", sig: exampleSignature, body: []byte(`{"test": 2432232315}`), want: webhook.ErrNoMatch, msg: "checked 1 v1 signature(s) against 1 secret(s)"},
		{name: "other id", id: "msg_other", sig: exampleSignature, want: webhook.ErrNoMatch},
		{name: "wrong secret", secrets: []webhook.Secret{other}, sig: exampleSignature, want: webhook.ErrNoMatch},
		{name: "signature of another timestamp", ts: "1614265331", sig: exampleSignature, want: webhook.ErrNoMatch},
		{name: "truncated signature", sig: exampleSignature[:len(exampleSignature)-2], want: webhook.ErrNoMatch},
		{name: "no v1 entry", sig: "v2," + exampleSignature[3:], want: webhook.ErrNoMatch, msg: "no v1 entry"},
		{name: "too old", sig: exampleSignature, now: exampleTime.Add(5*time.Minute + time.Second), want: webhook.ErrTimestamp, msg: "5m1s old"},
		{name: "in the future", sig: exampleSignature, now: exampleTime.Add(-6 * time.Minute), want: webhook.ErrTimestamp, msg: "6m0s in the future"},
		{name: "timestamp not a number", ts: "2021-02-26T15:02:10Z", sig: exampleSignature, want: webhook.ErrTimestamp, msg: "not Unix seconds"},
		{name: "missing id", id: "-", sig: exampleSignature, want: webhook.ErrMissingHeader, msg: "webhook-id"},
		{name: "missing timestamp", ts: "-", sig: exampleSignature, want: webhook.ErrMissingHeader, msg: "webhook-timestamp"},
		{name: "missing signature", sig: " ", want: webhook.ErrMissingHeader, msg: "webhook-signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.secrets == nil {
				tt.secrets = []webhook.Secret{secret}
			}
			switch tt.id {
			case "":
				tt.id = exampleID
			case "-":
				tt.id = ""
			}
			switch tt.ts {
			case "":
				tt.ts = exampleTimestamp
			case "-":
				tt.ts = ""
			}
			if tt.body == nil {
				tt.body = body
			}
			if tt.now.IsZero() {
				tt.now = exampleTime.Add(30 * time.Second)
			}
			err := webhook.Verify(tt.secrets, tt.id, tt.ts, tt.sig, tt.body, tt.now, tt.tolerance)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Verify: %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("Verify: err = %v, want %v", err, tt.want)
			case tt.want != nil && !strings.Contains(err.Error(), tt.msg):
				t.Errorf("Verify: err = %q, want it to say %q", err, tt.msg)
			}
		})
	}

	if err := webhook.Verify(nil, exampleID, exampleTimestamp, exampleSignature, body, exampleTime, 0); err == nil {
		t.Error("Verify with no secrets passed")
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	secret, text, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	parsed := mustSecret(t, text)
	now := time.Unix(1_700_000_000, 0)
	body, _ := webhook.AppendJSON(nil, "state_changed", json.RawMessage(`{"job_id":"j1","state":"processing"}`))
	sig := secret.Sign("dlv_1", now, body)
	if sig != parsed.Sign("dlv_1", now, body) {
		t.Fatal("the secret and its text sign differently")
	}
	if err := webhook.Verify([]webhook.Secret{parsed}, "dlv_1", strconv.FormatInt(now.Unix(), 10), sig, body, now, 0); err != nil {
		t.Fatal(err)
	}
}

func TestParseSecret(t *testing.T) {
	key := []byte("0123456789abcdef01234567") // 24 bytes
	padded := base64.StdEncoding.EncodeToString(append(key, 'x'))
	for _, ok := range []string{
		exampleSecret,
		"whsec_" + base64.StdEncoding.EncodeToString(key),
		"whsec_" + padded,
		"whsec_" + strings.TrimRight(padded, "="),
	} {
		if _, err := webhook.ParseSecret(ok); err != nil {
			t.Errorf("ParseSecret(%q): %v", ok, err)
		}
	}
	// Padded and unpadded text is the same key.
	a, b := mustSecret(t, "whsec_"+padded), mustSecret(t, "whsec_"+strings.TrimRight(padded, "="))
	if a.Sign("m", exampleTime, nil) != b.Sign("m", exampleTime, nil) {
		t.Error("padded and unpadded secrets differ")
	}

	tests := []struct{ name, in, msg string }{
		{"empty", "", `must be "whsec_"`},
		{"bare base64", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `must be "whsec_"`},
		{"other prefix", "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `must be "whsec_"`},
		{"bad base64", "whsec_MfKQ9r8GKYqr!wjUPD8ILPZIo2LaLaSw", "not valid base64"},
		{"url alphabet", "whsec_" + base64.URLEncoding.EncodeToString([]byte("\xfb\xff0123456789abcdef0123456789")), "not valid base64"},
		{"too short", "whsec_" + base64.StdEncoding.EncodeToString(key[:23]), "23 bytes"},
		{"prefix only", "whsec_", "0 bytes"},
		{"too long", "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 65))), "65 bytes, more than the 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.ParseSecret(tt.in)
			var ve *herald.ValidationError
			if !errors.As(err, &ve) || ve.Field != "secret" {
				t.Fatalf("err = %v, want a ValidationError of secret", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to say %q", err, tt.msg)
			}
			if b64, _ := strings.CutPrefix(tt.in, "whsec_"); len(b64) > 8 && strings.Contains(err.Error(), b64) {
				t.Errorf("err = %q quotes the secret", err)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	s1, text1, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	_, text2, _ := webhook.NewSecret()
	if text1 == text2 {
		t.Error("two new secrets are equal")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(text1, "whsec_"))
	if !strings.HasPrefix(text1, "whsec_") || err != nil || len(key) != 32 {
		t.Errorf("text %q is not whsec_ and 32 bytes in base64", text1)
	}
	if s1.Sign("m", exampleTime, nil) != mustSecret(t, text1).Sign("m", exampleTime, nil) {
		t.Error("the secret and its text sign differently")
	}
}

func TestSecretNeverPrintsKey(t *testing.T) {
	s := mustSecret(t, exampleSecret)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(exampleSecret, "whsec_"))
	leaks := []string{
		strings.TrimPrefix(exampleSecret, "whsec_"),
		string(key),
		fmt.Sprintf("%x", key),
		fmt.Sprintf("%d", key[:4]),
		fmt.Sprint(key[0]), // a %d rendering would start with the first byte
	}
	out := []string{
		s.String(), s.GoString(),
		fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%X|%d|%T", s, s, s, s, s, s, s, s, s),
		fmt.Sprintf("%v", []webhook.Secret{s}),
		fmt.Sprintf("%+v", struct{ S webhook.Secret }{s}),
	}
	j, _ := json.Marshal(struct{ S webhook.Secret }{s})
	out = append(out, string(j))
	for _, o := range out {
		for _, leak := range leaks[:4] {
			if strings.Contains(o, leak) {
				t.Errorf("%q reveals the key", o)
			}
		}
	}
	if got := fmt.Sprintf("%v", s); got != "whsec_…redacted" {
		t.Errorf("%%v = %q", got)
	}
	if got := fmt.Sprintf("%d", s); strings.Contains(got, leaks[4]) {
		t.Errorf("%%d = %q", got)
	}
}

// TestSignatureHeaderRotation: during a rotation herald signs with the new
// secret and the old one, space-separated; a receiver that knows either
// one verifies, one that knows neither does not.
func TestSignatureHeaderRotation(t *testing.T) {
	old := mustSecret(t, exampleSecret)
	fresh, _, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, _ := webhook.NewSecret()
	body := []byte(exampleBody)
	header := webhook.SignatureHeader([]webhook.Secret{fresh, old}, exampleID, exampleTime, body)
	want := fresh.Sign(exampleID, exampleTime, body) + " " + exampleSignature
	if header != want {
		t.Fatalf("header %q, want %q", header, want)
	}
	tests := []struct {
		name    string
		secrets []webhook.Secret
		ok      bool
	}{
		{"the new secret alone verifies", []webhook.Secret{fresh}, true},
		{"the old secret alone verifies", []webhook.Secret{old}, true},
		{"both verify", []webhook.Secret{stranger, old, fresh}, true},
		{"another secret does not", []webhook.Secret{stranger}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.secrets, exampleID, exampleTimestamp, header, body, exampleTime, 0)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify = %v, want ok %v", err, tt.ok)
			}
		})
	}
	t.Run("one secret is Sign", func(t *testing.T) {
		if got := webhook.SignatureHeader([]webhook.Secret{old}, exampleID, exampleTime, body); got != exampleSignature {
			t.Errorf("got %q", got)
		}
	})
	t.Run("no secret is empty", func(t *testing.T) {
		if got := webhook.SignatureHeader(nil, exampleID, exampleTime, body); got != "" {
			t.Errorf("got %q", got)
		}
	})
}

func TestSecretEqual(t *testing.T) {
	a := mustSecret(t, exampleSecret)
	b := mustSecret(t, exampleSecret+"==")
	c, _, _ := webhook.NewSecret()
	if !a.Equal(b) || a.Equal(c) {
		t.Errorf("Equal: same key %v, other key %v", a.Equal(b), a.Equal(c))
	}
}
