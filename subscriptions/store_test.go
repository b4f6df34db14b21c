package subscriptions_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/natsserver/natstest"
	"github.com/herald-webhooks/herald/subscriptions"
)

func TestStoreRefusesPrivateURLs(t *testing.T) {
	strict := newEnv(t)
	lax := openEnv(t, strict.js, strict.dir, withPrivateTargets())
	ctx := context.Background()
	tests := []struct {
		url        string
		strictOK   bool
		laxOK      bool
		wantInText string
	}{
		{"https://example.com/hook", true, true, ""},
		{"http://93.184.216.34:8080/x", true, true, ""},
		{"http://127.0.0.1:3000/", false, true, "internal address"},
		{"http://localhost:3000/", false, true, "internal address"},
		{"http://169.254.169.254/latest/meta-data/", false, true, "internal address"},
		{"http://[::ffff:127.0.0.1]/", false, true, "internal address"},
		{"http://[fd00::1]/", false, true, "internal address"},
		{"http://10.0.0.8/", false, true, "internal address"},
		{"http://0x7f.1/", false, false, "dotted-quad"},
		{"http://2130706433/", false, false, "dotted-quad"},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name string
			e    *env
			ok   bool
		}{{"refused by default", strict, tt.strictOK}, {"with private targets allowed", lax, tt.laxOK}} {
			outcome := "is refused"
			if mode.ok {
				outcome = "is taken"
			}
			t.Run(tt.url+" "+outcome+" "+mode.name, func(t *testing.T) {
				url := tt.url
				_, err := mode.e.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}})
				if mode.ok {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				var ve *herald.ValidationError
				if !errors.As(err, &ve) || ve.Field != "url" || !strings.Contains(ve.Message, tt.wantInText) {
					t.Fatalf("err = %v, want a ValidationError on url saying %q", err, tt.wantInText)
				}
			})
		}
	}
	t.Run("a patch to a private URL is refused", func(t *testing.T) {
		url := "https://example.com/hook"
		sub, err := strict.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		var ve *herald.ValidationError
		if _, err := strict.subs.Update(ctx, "acme", sub.ID, herald.SubscriptionPatch{URL: ptr("http://127.0.0.1/")}); !errors.As(err, &ve) || ve.Field != "url" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a subscription stored while private targets were allowed can still change other fields", func(t *testing.T) {
		url := "http://127.0.0.1:3000/"
		sub, err := lax.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := strict.subs.Update(ctx, "acme", sub.ID, herald.SubscriptionPatch{Enabled: ptr(false)}); err != nil {
			t.Fatalf("disabling it: %v", err)
		}
	})
}

func TestKeys(t *testing.T) {
	js, _ := natstest.JetStream(t)
	ctx := context.Background()
	keys, err := subscriptions.OpenKeys(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	k1, tok1, err := keys.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	k2, tok2, _ := keys.Create(ctx, "acme")
	kg, _, _ := keys.Create(ctx, "globex")

	t.Run("list shows the cloud's keys, oldest first, without tokens or hashes", func(t *testing.T) {
		list, err := keys.List(ctx, "acme")
		if err != nil || len(list) != 2 || list[0].ID != k1.ID || list[1].ID != k2.ID {
			t.Fatalf("List = %+v, %v", list, err)
		}
		b, _ := json.Marshal(list)
		if strings.Contains(string(b), tok1) || strings.Contains(string(b), "hash") {
			t.Errorf("list %s shows a token or a hash", b)
		}
		if empty, err := keys.List(ctx, "initech"); err != nil || len(empty) != 0 {
			t.Errorf("List of a cloud without keys = %v, %v", empty, err)
		}
	})
	t.Run("a key of another cloud cannot be revoked through this one", func(t *testing.T) {
		if err := keys.Delete(ctx, "acme", kg.ID); !errors.Is(err, herald.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("revocation takes effect at once", func(t *testing.T) {
		if cloud, err := keys.Authenticate(ctx, tok1); err != nil || cloud != "acme" {
			t.Fatalf("Authenticate = %q, %v", cloud, err)
		}
		if err := keys.Delete(ctx, "acme", k1.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Authenticate(ctx, tok1); !errors.Is(err, herald.ErrUnauthorized) {
			t.Fatalf("Authenticate after revoke = %v, want ErrUnauthorized", err)
		}
		if _, err := keys.Authenticate(ctx, tok2); err != nil {
			t.Fatalf("the other key stopped working: %v", err)
		}
		if err := keys.Delete(ctx, "acme", k1.ID); !errors.Is(err, herald.ErrNotFound) {
			t.Fatalf("second revoke = %v", err)
		}
	})
	t.Run("a token with a changed secret is refused", func(t *testing.T) {
		last := "A"
		if strings.HasSuffix(tok2, "A") {
			last = "B"
		}
		bad := tok2[:len(tok2)-1] + last
		if _, err := keys.Authenticate(ctx, bad); !errors.Is(err, herald.ErrUnauthorized) {
			t.Fatalf("err = %v", err)
		}
	})
}

// BenchmarkApply is the per-attempt cost of credentials: an hmac secret
// and a bearer token on a 1 KiB body, from a loaded cache.
func BenchmarkApply(b *testing.B) {
	e := newEnv(b)
	hmac, _ := e.credential(b, "acme", hmacSpec)
	bearer, _ := e.credential(b, "acme", bearerSpec)
	c := e.cache(b)
	ids := []string{hmac, bearer}
	body := []byte(strings.Repeat("x", 1024))
	ts := time.Unix(1_700_000_000, 0)
	ctx := context.Background()
	b.Run("hmac+bearer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := make(http.Header, 8)
			if err := c.Apply(ctx, "acme", ids, h, "dlv_01HZX3J6Q9V5T2", ts, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	if _, _, _, err := e.creds.Rotate(ctx, "acme", hmac, herald.Rotation{}); err != nil {
		b.Fatal(err)
	}
	checkFor(b, time.Second, 5*time.Millisecond, func() error {
		h := http.Header{}
		_ = c.Apply(ctx, "acme", []string{hmac}, h, "m", ts, nil)
		if len(strings.Fields(h.Get("Webhook-Signature"))) != 2 {
			return errors.New("rotation not seen")
		}
		return nil
	})
	b.Run("rotated hmac (two signatures)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := make(http.Header, 8)
			if err := c.Apply(ctx, "acme", []string{hmac}, h, "dlv_01HZX3J6Q9V5T2", ts, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
