package subscriptions_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/natsserver/natstest"
	"github.com/herald-webhooks/herald/subscriptions"
	"github.com/herald-webhooks/herald/webhook"
)

// The example of the Standard Webhooks specification.
const (
	exampleSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	exampleID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	exampleBody      = `{"test": 2432232314}`
	exampleSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var exampleTime = time.Unix(1614265330, 0)

// Specs of every type, with secrets no record, log or error may show.
var (
	basicSpec  = herald.CredentialSpec{Name: "panda", Type: "basic", Username: "user-Q7secret", Password: "pass-Z3secret"}
	bearerSpec = herald.CredentialSpec{Name: "live", Type: "bearer", Token: "token-K8secret"}
	headerSpec = herald.CredentialSpec{Name: "key", Type: "header", Header: "x-api-key", Value: "value-M2secret"}
	hmacSpec   = herald.CredentialSpec{Name: "sign", Type: "hmac", Secret: exampleSecret}
)

var plainSecrets = []string{"user-Q7secret", "pass-Z3secret", "token-K8secret", "value-M2secret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	base64.StdEncoding.EncodeToString([]byte("user-Q7secret:pass-Z3secret"))}

func mustKey(t testing.TB) (subscriptions.EncryptionKey, string) {
	t.Helper()
	k, text, err := subscriptions.NewEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	return k, text
}

func TestParseEncryptionKeys(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb}, 32)
	std := base64.StdEncoding.EncodeToString(raw)
	url := base64.URLEncoding.EncodeToString(raw)
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	tests := []struct {
		name  string
		in    string
		keys  int
		error string
	}{
		{"empty is no key", "", 0, ""},
		{"white space is no key", "  ", 0, ""},
		{"padded standard base64 is one key", std, 1, ""},
		{"unpadded is one key", strings.TrimRight(std, "="), 1, ""},
		{"URL alphabet is one key", url, 1, ""},
		{"two keys", std + ", " + other, 2, ""},
		{"16 bytes is refused", base64.StdEncoding.EncodeToString(raw[:16]), 0, "is 16 bytes, want 32"},
		{"64 bytes is refused", base64.StdEncoding.EncodeToString(append(raw, raw...)), 0, "is 64 bytes, want 32"},
		{"a passphrase is refused", "correct horse battery staple", 0, "is not base64"},
		{"hex is refused", strings.Repeat("ab", 32), 0, "is 48 bytes"},
		{"an empty second key is refused", std + ",", 0, "key 2 of 2: is empty"},
		{"the same key twice is refused", std + "," + strings.TrimRight(std, "="), 0, "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := subscriptions.ParseEncryptionKeys(tt.in)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("err = %v, want %q", err, tt.error)
				}
				for _, part := range strings.Split(tt.in, ",") {
					if len(part) > 8 && strings.Contains(err.Error(), strings.TrimSpace(part)) {
						t.Errorf("error %q repeats the key", err)
					}
				}
				return
			}
			if err != nil || len(keys) != tt.keys {
				t.Fatalf("got %d keys, %v; want %d", len(keys), err, tt.keys)
			}
		})
	}
	t.Run("a key never prints", func(t *testing.T) {
		keys, _ := subscriptions.ParseEncryptionKeys(std)
		k := keys[0]
		j, _ := json.Marshal(struct{ K subscriptions.EncryptionKey }{k})
		for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%+v %#v %x %s %q %d", k, k, k, k, k, k), string(j)} {
			if strings.Contains(out, "fb") || strings.Contains(out, "251") || strings.Contains(out, std[:10]) {
				t.Errorf("%q reveals the key", out)
			}
		}
		if len(k.ID()) != 8 {
			t.Errorf("ID %q, want 8 hex digits", k.ID())
		}
	})
}

func TestCreateCredential(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, spec := range []herald.CredentialSpec{basicSpec, bearerSpec, headerSpec, hmacSpec} {
		t.Run(spec.Type+" is stored and answered without its secret", func(t *testing.T) {
			c, gen, err := e.creds.Create(ctx, "acme", spec)
			if err != nil {
				t.Fatal(err)
			}
			if gen != "" || c.Name != spec.Name || c.Type != spec.Type || c.Cloud != "acme" || !strings.HasPrefix(c.ID, "crd_") || c.CreatedAt.IsZero() {
				t.Errorf("created %+v, generated %q", c, gen)
			}
			got, err := e.creds.Get(ctx, "acme", c.ID)
			if err != nil || got != c {
				t.Errorf("Get = %+v, %v; want %+v", got, err, c)
			}
			if _, err := e.creds.Get(ctx, "globex", c.ID); !errors.Is(err, herald.ErrNotFound) {
				t.Errorf("Get from another cloud = %v, want ErrNotFound", err)
			}
		})
	}
	t.Run("hmac without a secret gets one generated", func(t *testing.T) {
		_, gen, err := e.creds.Create(ctx, "acme", herald.CredentialSpec{Name: "gen", Type: "hmac"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := webhook.ParseSecret(gen); err != nil {
			t.Fatalf("generated %q: %v", gen, err)
		}
	})
	t.Run("list is the cloud's, oldest first", func(t *testing.T) {
		list, err := e.creds.List(ctx, "acme")
		if err != nil || len(list) != 5 {
			t.Fatalf("List = %d, %v", len(list), err)
		}
		for i := 1; i < len(list); i++ {
			if list[i].CreatedAt.Before(list[i-1].CreatedAt) {
				t.Errorf("not oldest first")
			}
		}
		if other, err := e.creds.List(ctx, "globex"); err != nil || len(other) != 0 {
			t.Errorf("globex List = %v, %v", other, err)
		}
	})
	t.Run("refusals name the field and quote no secret", func(t *testing.T) {
		for _, tt := range []struct {
			spec  herald.CredentialSpec
			field string
		}{
			{herald.CredentialSpec{Name: "n", Type: "hmac", Secret: "whsec_c2hvcnQtU2VjcmV0"}, "secret"},
			{herald.CredentialSpec{Name: "n", Type: "hmac", Secret: "c2hvcnQtU2VjcmV0c2hvcnQtU2VjcmV0"}, "secret"},
			{herald.CredentialSpec{Name: "n", Type: "hmac", Secret: herald.SecretString("whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 65)))}, "secret"},
			{herald.CredentialSpec{Name: "n", Type: "header", Header: "Webhook-Id", Value: "v"}, "header"},
			{herald.CredentialSpec{Name: "n", Type: "bearer", Token: "bad token-K8secret"}, "token"},
		} {
			_, _, err := e.creds.Create(ctx, "acme", tt.spec)
			var ve *herald.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Errorf("Create %s = %v, want a ValidationError on %s", tt.spec.Type, err, tt.field)
				continue
			}
			for _, s := range []string{"c2hvcnQtU2VjcmV0", "K8secret", "eHh4eHh4"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes the secret", err)
				}
			}
		}
	})
	t.Run("an invalid cloud is refused", func(t *testing.T) {
		var ve *herald.ValidationError
		if _, _, err := e.creds.Create(ctx, "bad.cloud", bearerSpec); !errors.As(err, &ve) || ve.Field != "cloud" {
			t.Errorf("err = %v", err)
		}
	})
}

// rawRecord reads a credential's record as the bucket holds it.
func rawRecord(t *testing.T, e *env, cloud, id string) map[string]any {
	t.Helper()
	kv, err := e.js.KeyValue(context.Background(), subscriptions.CredentialsBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), cloud+"."+id)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(entry.Value(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// storeFiles returns every file JetStream wrote under dir, concatenated.
func storeFiles(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		all = append(all, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestCredentialsAreEncryptedAtRest(t *testing.T) {
	key, keyText := mustKey(t)
	e := newEnv(t, withKeys(key))
	ids := map[string]string{}
	for _, spec := range []herald.CredentialSpec{basicSpec, bearerSpec, headerSpec, hmacSpec} {
		ids[spec.Type], _ = e.credential(t, "acme", spec)
	}
	for typ, id := range ids {
		rec := rawRecord(t, e, "acme", id)
		if rec["seal"] != "aes-256-gcm" || rec["key_id"] != key.ID() || rec["plain"] != nil {
			t.Errorf("%s record is not sealed under the key: %v", typ, rec)
		}
	}
	// The disk holds no secret, nor the key (a stolen disk reveals nothing).
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		files := storeFiles(t, e.dir)
		if !bytes.Contains(files, []byte(ids["basic"])) {
			return errors.New("the records are not on disk yet")
		}
		for _, s := range append(plainSecrets, keyText) {
			if bytes.Contains(files, []byte(s)) {
				t.Fatalf("the JetStream store holds the secret %.6s… in the clear", s)
			}
		}
		return nil
	})
	if logs := e.logs.String(); strings.Contains(logs, "stored in the clear") || !strings.Contains(logs, "encrypted at rest") {
		t.Errorf("start log: %s", logs)
	}
	if strings.Contains(e.logs.String(), keyText) {
		t.Error("the key is logged")
	}
	// Every secret is usable all the same.
	h := http.Header{}
	if err := e.cache(t).Apply(context.Background(), "acme", []string{ids["basic"], ids["hmac"]}, h, exampleID, exampleTime, []byte(exampleBody)); err != nil {
		t.Fatal(err)
	}
	if h.Get("Webhook-Signature") != exampleSignature || h.Get("Authorization") != "Basic "+plainSecrets[5] {
		t.Errorf("headers %v", h)
	}
}

func TestCredentialsWithoutKey(t *testing.T) {
	js, dir := natstest.JetStream(t)
	e := openEnv(t, js, dir)
	if n := strings.Count(e.logs.String(), "HERALD_ENCRYPTION_KEY is not set"); n != 1 {
		t.Errorf("warned %d times, want once: %s", n, e.logs)
	}
	id, _ := e.credential(t, "acme", bearerSpec)
	if rec := rawRecord(t, e, "acme", id); rec["seal"] != "none" || rec["plain"] == nil {
		t.Fatalf("record %v, want marked as in the clear", rec)
	}
	// The control for TestCredentialsAreEncryptedAtRest: in the clear, the
	// secret is on disk for anyone to read.
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !bytes.Contains(storeFiles(t, dir), []byte("token-K8secret")) {
			return errors.New("the clear secret is not on disk yet")
		}
		return nil
	})

	t.Run("a key added later still reads old records and seals new ones", func(t *testing.T) {
		key, _ := mustKey(t)
		later := openEnv(t, js, dir, withKeys(key))
		h := http.Header{}
		if err := later.cache(t).Apply(context.Background(), "acme", []string{id}, h, "m", time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if h.Get("Authorization") != "Bearer token-K8secret" {
			t.Errorf("Authorization = %q", h.Get("Authorization"))
		}
		newID, _ := later.credential(t, "acme", hmacSpec)
		if rec := rawRecord(t, later, "acme", newID); rec["seal"] != "aes-256-gcm" {
			t.Errorf("new record %v, want sealed", rec)
		}
		// A rotation rewrites the record: sealed from then on.
		_, _, _, err := later.creds.Rotate(context.Background(), "acme", newID, herald.Rotation{})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestWrongEncryptionKey(t *testing.T) {
	js, dir := natstest.JetStream(t)
	a, _ := mustKey(t)
	b, _ := mustKey(t)
	sealed := openEnv(t, js, dir, withKeys(a))
	id, _ := sealed.credential(t, "acme", hmacSpec)

	t.Run("another key cannot read it, and says so without a secret", func(t *testing.T) {
		wrong := openEnv(t, js, dir, withKeys(b))
		err := wrong.cache(t).Apply(context.Background(), "acme", []string{id}, http.Header{}, "m", time.Now(), nil)
		if err == nil || !strings.Contains(err.Error(), a.ID()) || !strings.Contains(err.Error(), "HERALD_ENCRYPTION_KEY") {
			t.Fatalf("Apply = %v, want an error naming key %s", err, a.ID())
		}
		if !strings.Contains(wrong.logs.String(), "credential cannot be used") {
			t.Errorf("the cache did not log the unusable credential: %s", wrong.logs)
		}
		if _, _, _, err := wrong.creds.Rotate(context.Background(), "acme", id, herald.Rotation{}); err == nil {
			t.Error("Rotate with the wrong key passed")
		}
		// Listing needs no key: names and types are in the clear.
		if list, err := wrong.creds.List(context.Background(), "acme"); err != nil || len(list) != 1 {
			t.Errorf("List = %v, %v", list, err)
		}
	})
	t.Run("no key cannot read it", func(t *testing.T) {
		none := openEnv(t, js, dir)
		if err := none.cache(t).Apply(context.Background(), "acme", []string{id}, http.Header{}, "m", time.Now(), nil); err == nil {
			t.Fatal("Apply without a key passed")
		}
	})
	t.Run("a new key first and the old one second reads it", func(t *testing.T) {
		both := openEnv(t, js, dir, withKeys(b, a))
		h := http.Header{}
		if err := both.cache(t).Apply(context.Background(), "acme", []string{id}, h, exampleID, exampleTime, []byte(exampleBody)); err != nil {
			t.Fatal(err)
		}
		if h.Get("Webhook-Signature") != exampleSignature {
			t.Errorf("signature %q", h.Get("Webhook-Signature"))
		}
		if _, _, _, err := both.creds.Rotate(context.Background(), "acme", id, herald.Rotation{}); err != nil {
			t.Fatal(err)
		}
		if rec := rawRecord(t, both, "acme", id); rec["key_id"] != b.ID() {
			t.Errorf("rotated record sealed under %v, want the new key %s", rec["key_id"], b.ID())
		}
	})
}

// TestSealedSecretIsBoundToItsRecord copies a sealed secret into another
// cloud's record: it must not open there.
func TestSealedSecretIsBoundToItsRecord(t *testing.T) {
	key, _ := mustKey(t)
	e := newEnv(t, withKeys(key))
	victim, _ := e.credential(t, "victim", bearerSpec)
	thief, _ := e.credential(t, "thief", herald.CredentialSpec{Name: "x", Type: "bearer", Token: "mine"})
	kv, _ := e.js.KeyValue(context.Background(), subscriptions.CredentialsBucket)
	v := rawRecord(t, e, "victim", victim)
	th := rawRecord(t, e, "thief", thief)
	th["sealed"] = v["sealed"]
	b, _ := json.Marshal(th)
	if _, err := kv.Put(context.Background(), "thief."+thief, b); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	err := e.cache(t).Apply(context.Background(), "thief", []string{thief}, h, "m", time.Now(), nil)
	if err == nil || h.Get("Authorization") != "" {
		t.Fatalf("the copied secret opened: %v, %v", err, h)
	}
}

func TestApply(t *testing.T) {
	e := newEnv(t)
	ids := map[string]string{}
	for _, spec := range []herald.CredentialSpec{basicSpec, bearerSpec, headerSpec, hmacSpec} {
		ids[spec.Type], _ = e.credential(t, "acme", spec)
	}
	authHeader, _ := e.credential(t, "acme", herald.CredentialSpec{Name: "custom", Type: "header", Header: "Authorization", Value: "Token abc"})
	c := e.cache(t)
	tests := []struct {
		name string
		ids  []string
		want map[string]string
	}{
		{"hmac signs as the Standard Webhooks example", []string{ids["hmac"]}, map[string]string{"Webhook-Signature": exampleSignature}},
		{"basic sets Authorization", []string{ids["basic"]}, map[string]string{"Authorization": "Basic " + plainSecrets[5]}},
		{"bearer sets Authorization", []string{ids["bearer"]}, map[string]string{"Authorization": "Bearer token-K8secret"}},
		{"header sets its header", []string{ids["header"]}, map[string]string{"X-Api-Key": "value-M2secret"}},
		{"a header credential may set Authorization", []string{authHeader}, map[string]string{"Authorization": "Token abc"}},
		{"several apply together", []string{ids["bearer"], ids["hmac"], ids["header"]}, map[string]string{
			"Authorization": "Bearer token-K8secret", "Webhook-Signature": exampleSignature, "X-Api-Key": "value-M2secret"}},
		{"none sets nothing", nil, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Webhook-Id": {exampleID}}
			if err := c.Apply(context.Background(), "acme", tt.ids, h, exampleID, exampleTime, []byte(exampleBody)); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got := h.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if len(h) != len(tt.want)+1 {
				t.Errorf("headers %v, want only %v and Webhook-Id", h, tt.want)
			}
		})
	}
	t.Run("a signature verifies", func(t *testing.T) {
		h := http.Header{}
		ts := time.Now()
		body := []byte(`{"event":"state_changed"}`)
		if err := c.Apply(context.Background(), "acme", []string{ids["hmac"]}, h, "dlv_1", ts, body); err != nil {
			t.Fatal(err)
		}
		secret, _ := webhook.ParseSecret(exampleSecret)
		if err := webhook.Verify([]webhook.Secret{secret}, "dlv_1", strconv.FormatInt(ts.Unix(), 10), h.Get("Webhook-Signature"), body, ts, 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("another cloud's credential is not found", func(t *testing.T) {
		err := c.Apply(context.Background(), "globex", []string{ids["bearer"]}, http.Header{}, "m", time.Now(), nil)
		if !errors.Is(err, herald.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("a missing credential is not found", func(t *testing.T) {
		err := c.Apply(context.Background(), "acme", []string{"crd_NOPE"}, http.Header{}, "m", time.Now(), nil)
		if !errors.Is(err, herald.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("a credential the cache has not seen is read from the bucket", func(t *testing.T) {
		cold := e.creds.NewCache(zerologNop(), 0) // never run: empty
		h := http.Header{}
		if err := cold.Apply(context.Background(), "acme", []string{ids["bearer"]}, h, "m", time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if h.Get("Authorization") != "Bearer token-K8secret" {
			t.Errorf("Authorization = %q", h.Get("Authorization"))
		}
	})
}

// TestChangesApplyWithinASecond: a rotation or a delete made through
// another process's store reaches a running cache within a second.
func TestChangesApplyWithinASecond(t *testing.T) {
	e := newEnv(t)
	c := e.cache(t)
	other := openEnv(t, e.js, e.dir)
	id, _ := other.credential(t, "acme", herald.CredentialSpec{Name: "s", Type: "hmac"})
	sigCount := func() int {
		h := http.Header{}
		if err := c.Apply(context.Background(), "acme", []string{id}, h, "m", time.Now(), nil); err != nil {
			return -1
		}
		return len(strings.Fields(h.Get("Webhook-Signature")))
	}
	checkFor(t, time.Second, 5*time.Millisecond, func() error {
		if n := sigCount(); n != 1 {
			return fmt.Errorf("%d signatures", n)
		}
		return nil
	})
	if _, _, _, err := other.creds.Rotate(context.Background(), "acme", id, herald.Rotation{}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Second, 5*time.Millisecond, func() error {
		if n := sigCount(); n != 2 {
			return fmt.Errorf("%d signatures after the rotation, want 2", n)
		}
		return nil
	})
	if err := other.creds.Delete(context.Background(), "acme", id); err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Second, 5*time.Millisecond, func() error {
		err := c.Apply(context.Background(), "acme", []string{id}, http.Header{}, "m", time.Now(), nil)
		if !errors.Is(err, herald.ErrNotFound) {
			return fmt.Errorf("Apply after delete = %v", err)
		}
		return nil
	})
}

func TestRotate(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	e := newEnv(t, withClock(clock))
	ctx := context.Background()
	c := e.cache(t)
	old, _ := webhook.ParseSecret(exampleSecret)
	id, _ := e.credential(t, "acme", hmacSpec)

	signatures := func(ts time.Time) []string {
		t.Helper()
		var got []string
		checkFor(t, time.Second, 5*time.Millisecond, func() error {
			h := http.Header{}
			if err := c.Apply(ctx, "acme", []string{id}, h, "msg_1", ts, []byte("body")); err != nil {
				return err
			}
			got = strings.Split(h.Get("Webhook-Signature"), " ")
			return nil
		})
		return got
	}

	cred, gen, expires, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := webhook.ParseSecret(gen)
	if err != nil || cred.ID != id {
		t.Fatalf("rotate: %+v, %q, %v", cred, gen, err)
	}
	if !expires.Equal(now.Add(24 * time.Hour)) {
		t.Errorf("previous expires %s, want 24h from now", expires)
	}
	t.Run("both secrets sign until the old one expires, the new one first", func(t *testing.T) {
		checkFor(t, time.Second, 5*time.Millisecond, func() error {
			if got := signatures(now); len(got) != 2 {
				return fmt.Errorf("%d signatures", len(got))
			}
			return nil
		})
		got := signatures(now.Add(24*time.Hour - time.Second))
		want := []string{fresh.Sign("msg_1", now.Add(24*time.Hour-time.Second), []byte("body")), old.Sign("msg_1", now.Add(24*time.Hour-time.Second), []byte("body"))}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("signatures %v, want %v", got, want)
		}
		ts := now.Add(time.Hour)
		header := strings.Join(signatures(ts), " ")
		for name, s := range map[string]webhook.Secret{"old": old, "new": fresh} {
			if err := webhook.Verify([]webhook.Secret{s}, "msg_1", strconv.FormatInt(ts.Unix(), 10), header, []byte("body"), ts, 0); err != nil {
				t.Errorf("a receiver with only the %s secret: %v", name, err)
			}
		}
	})
	t.Run("then only the new one", func(t *testing.T) {
		ts := now.Add(24 * time.Hour)
		got := signatures(ts)
		if len(got) != 1 || got[0] != fresh.Sign("msg_1", ts, []byte("body")) {
			t.Errorf("signatures %v, want the new secret's alone", got)
		}
	})
	t.Run("a given secret and overlap", func(t *testing.T) {
		_, text, _ := webhook.NewSecret()
		_, gen, exp, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{Secret: herald.SecretString(text), ExpireAfter: ptr(herald.Duration(time.Hour))})
		if err != nil || gen != "" || !exp.Equal(now.Add(time.Hour)) {
			t.Fatalf("rotate = %q, %s, %v", gen, exp, err)
		}
		checkFor(t, time.Second, 5*time.Millisecond, func() error {
			if got := signatures(now); len(got) != 3 {
				return fmt.Errorf("%d signatures, want 3 (given, fresh, old)", len(got))
			}
			return nil
		})
		if got := signatures(now.Add(time.Hour)); len(got) != 1 {
			t.Errorf("after an hour %d signatures, want 1", len(got))
		}
	})
	t.Run("at most three secrets sign", func(t *testing.T) {
		for range 3 {
			if _, _, _, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{}); err != nil {
				t.Fatal(err)
			}
		}
		checkFor(t, time.Second, 5*time.Millisecond, func() error {
			if got := signatures(now); len(got) != subscriptions.MaxSigningSecrets {
				return fmt.Errorf("%d signatures, want %d", len(got), subscriptions.MaxSigningSecrets)
			}
			return nil
		})
	})
	t.Run("expire_after 0s drops the others at once", func(t *testing.T) {
		_, gen, _, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{ExpireAfter: ptr(herald.Duration(0))})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := webhook.ParseSecret(gen)
		checkFor(t, time.Second, 5*time.Millisecond, func() error {
			if got := signatures(now); len(got) != 1 || got[0] != s.Sign("msg_1", now, []byte("body")) {
				return fmt.Errorf("signatures %v, want the new one alone", got)
			}
			return nil
		})
	})
	t.Run("refusals", func(t *testing.T) {
		bearer, _ := e.credential(t, "acme", bearerSpec)
		var ve *herald.ValidationError
		if _, _, _, err := e.creds.Rotate(ctx, "acme", bearer, herald.Rotation{}); !errors.As(err, &ve) || ve.Field != "type" {
			t.Errorf("rotating a bearer credential = %v, want a ValidationError on type", err)
		}
		_, _, _, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{Secret: "whsec_bad!"})
		if !errors.As(err, &ve) || ve.Field != "secret" {
			t.Errorf("a bad secret = %v", err)
		}
		_, text, _ := webhook.NewSecret()
		if _, _, _, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{Secret: herald.SecretString(text)}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{Secret: herald.SecretString(text)}); !errors.As(err, &ve) || ve.Field != "secret" {
			t.Errorf("rotating to the current secret = %v", err)
		}
		if _, _, _, err := e.creds.Rotate(ctx, "globex", id, herald.Rotation{}); !errors.Is(err, herald.ErrNotFound) {
			t.Errorf("rotating from another cloud = %v", err)
		}
		if _, _, _, err := e.creds.Rotate(ctx, "acme", id, herald.Rotation{ExpireAfter: ptr(herald.Duration(-time.Second))}); !errors.As(err, &ve) || ve.Field != "expire_after" {
			t.Errorf("a negative overlap = %v", err)
		}
	})
}

func TestSubscriptionCredentialReferences(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	basic, _ := e.credential(t, "acme", basicSpec)
	bearer, _ := e.credential(t, "acme", bearerSpec)
	header, _ := e.credential(t, "acme", headerSpec)
	header2, _ := e.credential(t, "acme", herald.CredentialSpec{Name: "k2", Type: "header", Header: "X-API-KEY", Value: "v2"})
	hmac, _ := e.credential(t, "acme", hmacSpec)
	hmac2, _ := e.credential(t, "acme", herald.CredentialSpec{Name: "s2", Type: "hmac"})
	foreign, _ := e.credential(t, "globex", bearerSpec)
	url := "https://example.com/hook"

	tests := []struct {
		name  string
		patch herald.SubscriptionPatch
		field string // "" for success
	}{
		{"one credential_id is taken", herald.SubscriptionPatch{CredentialID: &hmac}, ""},
		{"a signing secret and an auth header together are taken", herald.SubscriptionPatch{CredentialIDs: []string{hmac, bearer, header}}, ""},
		{"credential_id and credential_ids together are taken", herald.SubscriptionPatch{CredentialID: &hmac, CredentialIDs: []string{basic}}, ""},
		{"a missing credential_id names credential_id", herald.SubscriptionPatch{CredentialID: ptr("crd_MISSING")}, "credential_id"},
		{"a missing one in credential_ids names its index", herald.SubscriptionPatch{CredentialIDs: []string{hmac, "crd_MISSING"}}, "credential_ids[1]"},
		{"after credential_id, credential_ids count from 0", herald.SubscriptionPatch{CredentialID: &hmac, CredentialIDs: []string{"crd_MISSING"}}, "credential_ids[0]"},
		{"another cloud's credential is missing", herald.SubscriptionPatch{CredentialID: &foreign}, "credential_id"},
		{"a malformed id names credential_id", herald.SubscriptionPatch{CredentialID: ptr("not an id")}, "credential_id"},
		{"two Authorization credentials are refused", herald.SubscriptionPatch{CredentialIDs: []string{basic, bearer}}, "credential_ids[1]"},
		{"two hmac credentials are refused", herald.SubscriptionPatch{CredentialIDs: []string{hmac, hmac2}}, "credential_ids[1]"},
		{"two credentials of one header are refused", herald.SubscriptionPatch{CredentialIDs: []string{header, header2}}, "credential_ids[1]"},
		{"the same credential twice is refused", herald.SubscriptionPatch{CredentialIDs: []string{hmac, hmac}}, "credential_ids[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.patch
			p.URL, p.Events = &url, []string{"*"}
			sub, err := e.subs.Create(ctx, "acme", p)
			check := func(op string, err error) {
				t.Helper()
				var ve *herald.ValidationError
				switch {
				case tt.field == "" && err != nil:
					t.Fatalf("%s: %v", op, err)
				case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
					t.Fatalf("%s = %v, want a ValidationError on %s", op, err, tt.field)
				}
			}
			check("create", err)
			// The same patch on an existing subscription answers alike.
			plain, err := e.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.subs.Update(ctx, "acme", plain.ID, herald.SubscriptionPatch{CredentialID: tt.patch.CredentialID, CredentialIDs: tt.patch.CredentialIDs})
			check("update", err)
			if tt.field == "" && len(sub.CredentialIDs) == 0 {
				t.Errorf("created without credentials")
			}
		})
	}
	t.Run("an update that leaves credentials alone does not check them", func(t *testing.T) {
		sub, err := e.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}, CredentialID: &hmac})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.subs.Update(ctx, "acme", sub.ID, herald.SubscriptionPatch{Enabled: ptr(false)}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeleteCredentialInUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := e.credential(t, "acme", hmacSpec)
	url := "https://example.com/hook"
	sub, err := e.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}, CredentialID: &id})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.creds.Delete(ctx, "acme", id); !errors.Is(err, herald.ErrConflict) {
		t.Fatalf("delete in use = %v, want ErrConflict", err)
	}
	if err := e.creds.Delete(ctx, "globex", id); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("delete from another cloud = %v, want ErrNotFound", err)
	}
	// Still usable: a failed delete leaves no mark behind.
	if _, err := e.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}, CredentialID: &id}); err != nil {
		t.Fatalf("a credential whose delete failed cannot be used: %v", err)
	}
	subs, _ := e.subs.List(ctx, "acme")
	for _, s := range subs {
		if _, err := e.subs.Update(ctx, "acme", s.ID, herald.SubscriptionPatch{CredentialIDs: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.creds.Delete(ctx, "acme", id); err != nil {
		t.Fatalf("delete once unused = %v", err)
	}
	if _, err := e.creds.Get(ctx, "acme", id); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("Get after delete = %v", err)
	}
	if err := e.creds.Delete(ctx, "acme", id); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("second delete = %v", err)
	}
	_ = sub
}

// TestDeleteRacesSubscriptionCreate deletes credentials while
// subscriptions that name them are created, through two stores (two API
// processes): no subscription may end up naming a deleted credential.
func TestDeleteRacesSubscriptionCreate(t *testing.T) {
	a := newEnv(t)
	b := openEnv(t, a.js, a.dir)
	ctx := context.Background()
	url := "https://example.com/hook"
	for i := range 20 {
		id, _ := a.credential(t, "acme", herald.CredentialSpec{Name: "r", Type: "bearer", Token: "t"})
		var wg sync.WaitGroup
		var subErr, delErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, subErr = a.subs.Create(ctx, "acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"}, CredentialID: &id})
		}()
		go func() { defer wg.Done(); delErr = b.creds.Delete(ctx, "acme", id) }()
		wg.Wait()
		if subErr == nil && delErr == nil {
			t.Fatalf("round %d: both the subscription and the delete succeeded", i)
		}
		_, getErr := a.creds.Get(ctx, "acme", id)
		subs, _ := a.subs.List(ctx, "acme")
		for _, s := range subs {
			for _, cid := range s.CredentialIDs {
				if cid == id && getErr != nil {
					t.Fatalf("round %d: subscription %s names deleted credential %s", i, s.ID, id)
				}
			}
		}
	}
}
