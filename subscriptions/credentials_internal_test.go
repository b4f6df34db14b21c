package subscriptions

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestSecretsNeverPrint: the types that hold secrets show none through
// fmt or encoding/json, so a log line that formats one by mistake leaks
// nothing; encode is the one way to their contents.
func TestSecretsNeverPrint(t *testing.T) {
	exp := time.Unix(1_700_000_000, 0)
	s := secrets{Username: "u-secret1", Password: "p-secret2", Token: "t-secret3", Value: "v-secret4",
		Signing: []signingSecret{{Secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg=", ExpiresAt: &exp}}}
	c := &Credentials{}
	a := c.applier(&storedCredential{ID: "crd_X", Cloud: "acme", Type: "bearer", Seal: sealNone, Plain: mustEncode(t, s)})
	if a.err != nil || a.value != "Bearer t-secret3" {
		t.Fatalf("applier: %v", a.err)
	}
	j1, _ := json.Marshal(s)
	j2, _ := json.Marshal(a)
	j3, _ := json.Marshal(s.Signing)
	var logs strings.Builder
	log := zerolog.New(&logs)
	log.Info().Interface("s", s).Interface("a", a).Msg("oops")
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%+v|%#v|%s|%q|%x", s, s, s, s, s), fmt.Sprint(a), fmt.Sprintf("%+v|%#v|%v", a, a, *a),
		fmt.Sprint(s.Signing), string(j1), string(j2), string(j3), logs.String(),
	}
	for _, out := range outs {
		for _, secret := range []string{"secret1", "secret2", "secret3", "secret4", "c2VjcmV0"} {
			if strings.Contains(out, secret) {
				t.Errorf("%q reveals %s", out, secret)
			}
		}
	}
	back, err := decodeSecrets(mustEncode(t, s))
	if err != nil || back.Password != "p-secret2" || len(back.Signing) != 1 || !back.Signing[0].ExpiresAt.Equal(exp) {
		t.Errorf("encode/decode round trip: %+v, %v", back.Signing, err)
	}
}

func mustEncode(t *testing.T, s secrets) []byte {
	t.Helper()
	b, err := s.encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
