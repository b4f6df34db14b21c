package herald_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/herald-webhooks/herald"
)

func TestValidateCredentialHeader(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"X-Api-Key", true},
		{"x-api-key", true},
		{"Authorization", true},
		{"X-Hub~Token!#$%&'*+.^_`|", true},
		{"", false},
		{"X Api", false},
		{"X-Api:", false},
		{"X-Api\r\nEvil", false},
		{"Ünïcode", false},
		{strings.Repeat("x", 65), false},
		{"Webhook-Signature", false},
		{"webhook-id", false},
		{"Herald-Attempt", false},
		{"Content-Type", false},
		{"content-length", false},
		{"Host", false},
		{"User-Agent", false},
		{"Transfer-Encoding", false},
		{"Connection", false},
		{"Proxy-Authorization", false},
		{"Accept-Encoding", false},
	}
	for _, tt := range tests {
		outcome := "is refused"
		if tt.ok {
			outcome = "is accepted"
		}
		t.Run(fmt.Sprintf("%q %s", tt.name, outcome), func(t *testing.T) {
			err := herald.ValidateCredentialHeader(tt.name)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			var ve *herald.ValidationError
			if err != nil && (!errors.As(err, &ve) || ve.Field != "header") {
				t.Fatalf("err = %v, want a ValidationError on header", err)
			}
		})
	}
}

func TestCredentialEffect(t *testing.T) {
	tests := []struct{ typ, header, want string }{
		{"basic", "", "authorization"},
		{"bearer", "", "authorization"},
		{"hmac", "", "webhook-signature"},
		{"header", "X-Api-Key", "x-api-key"},
		{"header", "Authorization", "authorization"},
	}
	for _, tt := range tests {
		if got := herald.CredentialEffect(tt.typ, tt.header); got != tt.want {
			t.Errorf("CredentialEffect(%s, %s) = %s, want %s", tt.typ, tt.header, got, tt.want)
		}
	}
}

func TestSecretStringNeverPrints(t *testing.T) {
	s := herald.SecretString("hunter2-secret")
	spec := herald.CredentialSpec{Name: "n", Type: "basic", Username: "u-secret", Password: s}
	j, _ := json.Marshal(spec)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x %d", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", spec, spec, spec), string(j),
	} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "u-secret") || strings.Contains(out, "68756e746572") {
			t.Errorf("%q reveals a secret", out)
		}
	}
	if s.Reveal() != "hunter2-secret" {
		t.Error("Reveal lost the secret")
	}
	var back herald.CredentialSpec
	if err := json.Unmarshal([]byte(`{"password":"p-1"}`), &back); err != nil || back.Password.Reveal() != "p-1" {
		t.Errorf("decoding: %v, %q", err, back.Password.Reveal())
	}
}
