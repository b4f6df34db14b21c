package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/subscriptions"
	"github.com/herald-webhooks/herald/webhook"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// apiClient makes API requests and keeps every answer's body.
type apiClient struct {
	t       *testing.T
	a       *app.App
	mu      sync.Mutex
	answers []string
}

// do sends body (a JSON string, or none when empty) and returns the status
// and the answer.
func (c *apiClient) do(method, path, token, body string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+c.a.HTTPAddr()+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.mu.Lock()
	c.answers = append(c.answers, fmt.Sprintf("%s %s → %d %s", method, path, resp.StatusCode, b))
	c.mu.Unlock()
	return resp.StatusCode, b
}

// must is do that fails the test unless the status is want, and decodes
// the answer.
func (c *apiClient) must(method, path, token, body string, want int) map[string]any {
	c.t.Helper()
	status, b := c.do(method, path, token, body)
	if status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, b)
	}
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Fatalf("%s %s: answer is not a JSON object: %s", method, path, b)
		}
	}
	return m
}

// forget drops the answers kept so far: those that show a secret once,
// by design.
func (c *apiClient) forget() {
	c.mu.Lock()
	c.answers = nil
	c.mu.Unlock()
}

// storeFiles is every file under dir, concatenated.
func storeFiles(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temporary file the server renamed meanwhile
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		all = append(all, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestSecurityScenario runs the whole trust story on the real wiring, with
// every log line at debug level captured: a cloud key, credentials of
// every type, subscriptions that use them, signed and authorized
// notifications, a rotation, deletes. No secret may appear in the logs,
// in any API answer after the one that created it, in /metrics, or on
// disk.
func TestSecurityScenario(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	key, keyText, err := subscriptions.NewEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, dir, func(c *app.Config) {
		c.Logger = zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
		c.EncryptionKeys = []subscriptions.EncryptionKey{key}
	})
	c := &apiClient{t: t, a: a}
	recvA, recvB := newReceiver(t), newReceiver(t)

	const (
		username    = "panda-user-7Hq2"
		password    = "panda-pass-Xk93Lq"
		bearerToken = "live-token-Pz81Vw"
		headerValue = "api-key-Mn45Rt"
	)
	givenSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("given-signing-secret-0123456789ab"))
	secrets := map[string]string{
		"password": password, "username": username, "bearer token": bearerToken, "header value": headerValue,
		"given hmac secret": givenSecret, "given hmac key": strings.TrimPrefix(givenSecret, "whsec_"),
		"basic credentials": base64.StdEncoding.EncodeToString([]byte(username + ":" + password)),
		"admin token":       adminToken, "encryption key": keyText,
	}

	// A cloud key, minted by the admin and shown once.
	k := c.must("POST", "/v1/clouds/acme/keys", adminToken, "", http.StatusCreated)
	cloudKey, keyID := k["key"].(string), k["id"].(string)
	secrets["cloud key"] = cloudKey

	// Credentials of every type, through the cloud key.
	cred := func(body string) map[string]any {
		t.Helper()
		return c.must("POST", "/v1/clouds/acme/credentials", cloudKey, body, http.StatusCreated)
	}
	basic := cred(`{"name":"panda","type":"basic","username":"` + username + `","password":"` + password + `"}`)["id"].(string)
	bearer := cred(`{"name":"live","type":"bearer","token":"` + bearerToken + `"}`)["id"].(string)
	header := cred(`{"name":"key","type":"header","header":"X-Api-Key","value":"` + headerValue + `"}`)["id"].(string)
	given := cred(`{"name":"signing","type":"hmac","secret":"` + givenSecret + `"}`)["id"].(string)
	genAnswer := cred(`{"name":"generated","type":"hmac"}`)
	generated, genSecret := genAnswer["id"].(string), genAnswer["secret"].(string)
	secrets["generated hmac secret"] = genSecret
	secrets["generated hmac key"] = strings.TrimPrefix(genSecret, "whsec_")
	c.forget() // the answers above show the key and the generated secret once, by design

	// Subscriptions that use them; another cloud cannot name acme's.
	subA := c.must("POST", "/v1/clouds/acme/subscriptions", cloudKey,
		`{"url":"`+recvA.URL+`/a","events":["*"],"credential_ids":["`+basic+`","`+given+`"]}`, http.StatusCreated)["id"].(string)
	c.must("POST", "/v1/clouds/acme/subscriptions", cloudKey,
		`{"url":"`+recvB.URL+`/b","events":["*"],"credential_id":"`+generated+`","credential_ids":["`+bearer+`","`+header+`"]}`, http.StatusCreated)
	if out := c.must("POST", "/v1/clouds/globex/subscriptions", adminToken,
		`{"url":"https://example.com/","events":["*"],"credential_id":"`+basic+`"}`, http.StatusUnprocessableEntity); out["field"] != "credential_id" {
		t.Errorf("another cloud's credential: %v", out)
	}
	if out := c.must("POST", "/v1/clouds/acme/subscriptions", cloudKey,
		`{"url":"https://example.com/","events":["*"],"credential_ids":["`+basic+`","`+bearer+`"]}`, http.StatusUnprocessableEntity); out["field"] != "credential_ids[1]" {
		t.Errorf("two Authorization credentials: %v", out)
	}

	// A notification arrives signed and authorized at each endpoint.
	c.must("POST", "/v1/clouds/acme/events", cloudKey, `{"id":"evt-1","type":"state_changed","data":{"job_id":"j1","state":"processing"}}`, http.StatusAccepted)
	ra := recvA.waitN(t, 1, 10*time.Second)[0]
	rb := recvB.waitN(t, 1, 10*time.Second)[0]
	verify := func(r received, s string) error {
		t.Helper()
		sec, err := webhook.ParseSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		return webhook.Verify([]webhook.Secret{sec}, r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Timestamp"), r.Header.Get("Webhook-Signature"), r.Body, time.Now(), 0)
	}
	if got, want := ra.Header.Get("Authorization"), "Basic "+secrets["basic credentials"]; got != want {
		t.Errorf("A: Authorization %q, want %q", got, want)
	}
	if err := verify(ra, givenSecret); err != nil {
		t.Errorf("A: signature: %v", err)
	}
	if got := rb.Header.Get("Authorization"); got != "Bearer "+bearerToken {
		t.Errorf("B: Authorization %q", got)
	}
	if got := rb.Header.Get("X-Api-Key"); got != headerValue {
		t.Errorf("B: X-Api-Key %q", got)
	}
	if err := verify(rb, genSecret); err != nil {
		t.Errorf("B: signature: %v", err)
	}

	// Rotation: both signatures until the old secret expires.
	rot := c.must("POST", "/v1/clouds/acme/credentials/"+given+"/rotate", cloudKey, `{"expire_after":"1h"}`, http.StatusOK)
	rotated := rot["secret"].(string)
	secrets["rotated hmac secret"] = rotated
	secrets["rotated hmac key"] = strings.TrimPrefix(rotated, "whsec_")
	c.forget()
	var both received
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		c.must("POST", "/v1/clouds/acme/events", cloudKey, `{"type":"state_changed","data":{"job_id":"j1","state":"finished"}}`, http.StatusAccepted)
		rs := recvA.requests()
		both = rs[len(rs)-1]
		if n := len(strings.Fields(both.Header.Get("Webhook-Signature"))); n != 2 {
			return fmt.Errorf("the last notification has %d signatures, want 2", n)
		}
		return nil
	})
	for name, s := range map[string]string{"old": givenSecret, "new": rotated} {
		if err := verify(both, s); err != nil {
			t.Errorf("a receiver with only the %s secret: %v", name, err)
		}
	}

	// Every answer after creation shows id, name, type and created_at only.
	list := c.must("GET", "/v1/clouds/acme/credentials", cloudKey, "", http.StatusOK)
	if data := list["data"].([]any); len(data) != 5 {
		t.Errorf("listed %d credentials, want 5", len(data))
	}
	for _, item := range list["data"].([]any) {
		if m := item.(map[string]any); len(m) != 4 || m["id"] == nil || m["name"] == nil || m["type"] == nil || m["created_at"] == nil {
			t.Errorf("listed credential %v", m)
		}
	}
	for _, id := range []string{basic, bearer, header, given, generated} {
		if m := c.must("GET", "/v1/clouds/acme/credentials/"+id, cloudKey, "", http.StatusOK); len(m) != 4 {
			t.Errorf("credential %s answered %v", id, m)
		}
	}
	c.must("GET", "/v1/clouds/acme/keys", adminToken, "", http.StatusOK)
	c.must("GET", "/v1/clouds/acme/subscriptions", cloudKey, "", http.StatusOK)

	// Deletes: a credential in use stays; once unused it goes; a revoked
	// key stops working at once.
	c.must("DELETE", "/v1/clouds/acme/credentials/"+given, cloudKey, "", http.StatusConflict)
	c.must("DELETE", "/v1/clouds/acme/subscriptions/"+subA, cloudKey, "", http.StatusNoContent)
	c.must("DELETE", "/v1/clouds/acme/credentials/"+given, cloudKey, "", http.StatusNoContent)
	c.must("DELETE", "/v1/clouds/acme/credentials/"+basic, cloudKey, "", http.StatusNoContent)
	c.must("GET", "/v1/clouds/acme/credentials/"+given, cloudKey, "", http.StatusNotFound)
	c.must("DELETE", "/v1/clouds/acme/keys/"+keyID, adminToken, "", http.StatusNoContent)
	c.must("GET", "/v1/clouds/acme/credentials", cloudKey, "", http.StatusUnauthorized)
	c.must("GET", "/healthz", "", "", http.StatusOK)
	_, metrics := c.do("GET", "/metrics", "", "")

	// Nothing leaked.
	logText := logs.String()
	if !strings.Contains(logText, `"level":"debug"`) || !strings.Contains(logText, "credentials are encrypted at rest") {
		t.Fatalf("the debug log was not captured: %.500s", logText)
	}
	if strings.Contains(logText, "stored in the clear") {
		t.Error("warned about a missing key although one is set")
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !bytes.Contains(storeFiles(t, dir), []byte(generated)) {
			return fmt.Errorf("the credential records are not on disk yet")
		}
		return nil
	})
	disk := storeFiles(t, dir)
	c.mu.Lock()
	answers := strings.Join(c.answers, "\n")
	c.mu.Unlock()
	for name, s := range secrets {
		if strings.Contains(logText, s) {
			t.Errorf("the log holds the %s", name)
		}
		if strings.Contains(answers, s) {
			t.Errorf("an API answer after creation holds the %s", name)
		}
		if bytes.Contains(metrics, []byte(s)) {
			t.Errorf("/metrics holds the %s", name)
		}
		if bytes.Contains(disk, []byte(s)) {
			t.Errorf("the data directory holds the %s in the clear", name)
		}
	}
}

// TestCredentialsInTheClearWarnOnce: without HERALD_ENCRYPTION_KEY herald
// says so, once, at start.
func TestCredentialsInTheClearWarnOnce(t *testing.T) {
	logs := &syncBuffer{}
	startApp(t, t.TempDir(), func(c *app.Config) {
		c.Logger = zerolog.New(logs).Level(zerolog.DebugLevel)
	})
	if n := strings.Count(logs.String(), "HERALD_ENCRYPTION_KEY is not set"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs)
	}
}

// crossTenantRoute is one /v1 route of the matrix; the path's %s are the
// cloud, then an object of acme.
type crossTenantRoute struct {
	name, method, path, obj, body string
	ok                            int
	adminOnly                     bool
}

var crossTenantRoutes = []crossTenantRoute{
	{name: "create key", method: "POST", path: "/v1/clouds/%s/keys", ok: 201, adminOnly: true},
	{name: "list keys", method: "GET", path: "/v1/clouds/%s/keys", ok: 200, adminOnly: true},
	{name: "revoke key", method: "DELETE", path: "/v1/clouds/%s/keys/%s", obj: "key", ok: 204, adminOnly: true},
	{name: "create subscription", method: "POST", path: "/v1/clouds/%s/subscriptions", body: `{"url":"https://example.com/h","events":["*"]}`, ok: 201},
	{name: "list subscriptions", method: "GET", path: "/v1/clouds/%s/subscriptions", ok: 200},
	{name: "read subscription", method: "GET", path: "/v1/clouds/%s/subscriptions/%s", obj: "sub", ok: 200},
	{name: "change subscription", method: "PATCH", path: "/v1/clouds/%s/subscriptions/%s", obj: "sub", body: `{"enabled":false}`, ok: 200},
	{name: "remove subscription", method: "DELETE", path: "/v1/clouds/%s/subscriptions/%s", obj: "sub", ok: 204},
	{name: "create credential", method: "POST", path: "/v1/clouds/%s/credentials", body: `{"name":"n","type":"bearer","token":"t"}`, ok: 201},
	{name: "list credentials", method: "GET", path: "/v1/clouds/%s/credentials", ok: 200},
	{name: "read credential", method: "GET", path: "/v1/clouds/%s/credentials/%s", obj: "crd", ok: 200},
	{name: "remove credential", method: "DELETE", path: "/v1/clouds/%s/credentials/%s", obj: "crd", ok: 204},
	{name: "rotate credential", method: "POST", path: "/v1/clouds/%s/credentials/%s/rotate", obj: "hmac", ok: 200},
	{name: "publish event", method: "POST", path: "/v1/clouds/%s/events", body: `{"type":"encoding-complete","data":{"encoding_id":"e1"}}`, ok: 202},
	{name: "test subscription", method: "POST", path: "/v1/clouds/%s/subscriptions/%s/test", obj: "sub", ok: 200},
	{name: "list deliveries", method: "GET", path: "/v1/clouds/%s/deliveries", ok: 200},
	{name: "read delivery", method: "GET", path: "/v1/clouds/%s/deliveries/%s", obj: "dlv", ok: 200},
	{name: "redeliver", method: "POST", path: "/v1/clouds/%s/deliveries/%s/redeliver", obj: "dlv", ok: 202},
}

// TestCrossTenantMatrix drives every route of cloud acme with acme's own
// key, globex's key, no key and the admin token, on the real wiring. A
// foreign key meets the very 404 of a missing object, and changes nothing.
func TestCrossTenantMatrix(t *testing.T) {
	a := startApp(t, t.TempDir())
	c := &apiClient{t: t, a: a}
	acmeKey := c.must("POST", "/v1/clouds/acme/keys", adminToken, "", http.StatusCreated)["key"].(string)
	globexKey := c.must("POST", "/v1/clouds/globex/keys", adminToken, "", http.StatusCreated)["key"].(string)
	_, missing := c.do("GET", "/v1/clouds/acme/subscriptions/sub_MISSING", adminToken, "")

	rc := newReceiver(t)
	seed := func() map[string]string {
		t.Helper()
		k := c.must("POST", "/v1/clouds/acme/keys", adminToken, "", http.StatusCreated)
		objs := map[string]string{
			"key":  k["id"].(string),
			"sub":  c.must("POST", "/v1/clouds/acme/subscriptions", adminToken, `{"url":"`+rc.URL+`/s","events":["*"]}`, 201)["id"].(string),
			"crd":  c.must("POST", "/v1/clouds/acme/credentials", adminToken, `{"name":"b","type":"bearer","token":"t"}`, 201)["id"].(string),
			"hmac": c.must("POST", "/v1/clouds/acme/credentials", adminToken, `{"name":"h","type":"hmac"}`, 201)["id"].(string),
		}
		// A settled delivery of that subscription, to read and redeliver.
		ev := c.must("POST", "/v1/clouds/acme/events", adminToken, `{"type":"encoding-complete","data":{"encoding_id":"seed"}}`, 202)["id"].(string)
		objs["dlv"] = herald.DeliveryID("acme", ev, objs["sub"])
		logRecord(t, a, "acme", objs["sub"], objs["dlv"], herald.StatusSucceeded)
		t.Cleanup(func() { // whatever is left, so that acme stays small
			c.do("DELETE", "/v1/clouds/acme/subscriptions/"+objs["sub"], adminToken, "")
			c.do("DELETE", "/v1/clouds/acme/credentials/"+objs["crd"], adminToken, "")
			c.do("DELETE", "/v1/clouds/acme/credentials/"+objs["hmac"], adminToken, "")
			c.do("DELETE", "/v1/clouds/acme/keys/"+objs["key"], adminToken, "")
		})
		return objs
	}
	// state is what acme holds, as the admin sees it.
	state := func() string {
		t.Helper()
		var parts []string
		for _, p := range []string{"keys", "subscriptions", "credentials"} {
			_, b := c.do("GET", "/v1/clouds/acme/"+p, adminToken, "")
			parts = append(parts, string(b))
		}
		return strings.Join(parts, "\n")
	}
	principals := []struct{ name, token string }{
		{"own key", acmeKey}, {"other cloud's key", globexKey}, {"no key", ""}, {"admin", adminToken},
	}
	for _, rt := range crossTenantRoutes {
		for _, p := range principals {
			want := rt.ok
			switch {
			case p.token == "":
				want = http.StatusUnauthorized
			case rt.adminOnly && p.token != adminToken:
				want = http.StatusForbidden
			case p.token == globexKey:
				want = http.StatusNotFound
			}
			t.Run(fmt.Sprintf("%s with %s answers %d", rt.name, p.name, want), func(t *testing.T) {
				objs := seed()
				path := fmt.Sprintf(rt.path, "acme")
				if rt.obj != "" {
					path = fmt.Sprintf(rt.path, "acme", objs[rt.obj])
				}
				before := state()
				status, body := c.do(rt.method, path, p.token, rt.body)
				if status != want {
					t.Fatalf("%s %s: %d, want %d: %s", rt.method, path, status, want, body)
				}
				if want == http.StatusNotFound && !bytes.Equal(body, missing) {
					t.Errorf("answer %s differs from a missing object's %s", body, missing)
				}
				if want >= 400 {
					if after := state(); after != before {
						t.Errorf("a refused request changed acme:\nbefore %s\nafter  %s", before, after)
					}
				}
			})
		}
	}
}

// TestSlowHeadersAreCutOff: a client that never finishes its headers
// (slowloris) is disconnected by the server's read-header timeout.
func TestSlowHeadersAreCutOff(t *testing.T) {
	a := startApp(t, t.TempDir())
	conn, err := net.Dial("tcp", a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	// Keep the line open; the server must hang up on its own.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(bufio.NewReader(conn))
	elapsed := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept a half-sent request open for %s", elapsed)
	}
	if elapsed > 10*time.Second {
		t.Errorf("cut off after %s, want about the 5 s read-header timeout", elapsed)
	}
	if bytes.Contains(b, []byte("200 OK")) {
		t.Errorf("the half-sent request was answered: %s", b)
	}
	t.Logf("cut off after %s (answer %q, %v)", elapsed.Round(time.Millisecond), b, err)
}

// TestPrivateTargetsRefused: with private targets refused (the default),
// a subscription to a literal private address is refused when stored, and
// one that reaches the dispatcher anyway (written straight to the bucket,
// as a name that resolves to loopback would) fails its attempts at connect
// time with the guard's error; the receiver never hears of it.
func TestPrivateTargetsRefused(t *testing.T) {
	a := startApp(t, t.TempDir(), func(c *app.Config) { c.Dispatch.AllowPrivateTargets = false })
	c := &apiClient{t: t, a: a}
	rc := newReceiver(t)
	for _, u := range []string{rc.URL, "http://localhost:3000/", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/"} {
		t.Run(u+" is refused when stored", func(t *testing.T) {
			out := c.must("POST", "/v1/clouds/acme/subscriptions", adminToken, `{"url":"`+u+`","events":["*"]}`, http.StatusUnprocessableEntity)
			if out["field"] != "url" {
				t.Errorf("answer %v", out)
			}
		})
	}
	t.Run("a loopback endpoint is refused at connect time", func(t *testing.T) {
		ctx := context.Background()
		kv, err := a.JetStream().KeyValue(ctx, subscriptions.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		url := rc.URL + "/sneaky"
		sub := herald.NewSubscription("acme", herald.SubscriptionPatch{URL: &url, Events: []string{"*"},
			Retry: &herald.RetryPolicy{Strategy: herald.StrategyLinear, MaxRetries: new(1), DelayDelta: herald.Duration(time.Second)}}, time.Now())
		b, _ := json.Marshal(sub)
		if _, err := kv.Put(ctx, "acme."+sub.ID, b); err != nil {
			t.Fatal(err)
		}
		var rec herald.Delivery
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			c.must("POST", "/v1/clouds/acme/events", adminToken, `{"id":"ssrf-1","type":"encoding-complete","data":{"encoding_id":"e"}}`, http.StatusAccepted)
			var err error
			rec, err = a.DeliveryLog().Lookup(ctx, "acme", sub.ID, herald.DeliveryID("acme", "ssrf-1", sub.ID))
			if err != nil {
				return err
			}
			if len(rec.Attempts) == 0 {
				return fmt.Errorf("no attempt yet")
			}
			return nil
		})
		if att := rec.Attempts[0]; att.Succeeded() || !strings.Contains(att.Error, "refused to connect") {
			t.Errorf("attempt %+v, want a failure saying the address is refused", att)
		}
		if n := len(rc.requests()); n != 0 {
			t.Errorf("the loopback receiver got %d requests", n)
		}
	})
}
