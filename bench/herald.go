package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/publisher"
	"github.com/herald-webhooks/herald/schemas"
)

// instance is a herald under test: one `herald serve` (or `serve
// --api-only` with `herald dispatch` processes beside it), its NATS server
// embedded, in a data directory of its own.
type instance struct {
	serve    *proc
	natsURL  string
	apiURL   string
	token    string
	nc       *nats.Conn
	js       jetstream.JetStream
	http     *http.Client
	dispatch []*proc
}

// heraldEnv is the environment of every herald process of an instance:
// loopback receivers are allowed, logs are JSON, and the harness's own
// HERALD_NATS_URL (if any) does not leak into `herald serve`.
func heraldEnv(dir, token string) []string {
	return []string{
		"HERALD_DATA_DIR=" + dir, "HERALD_NATS_URL=", "HERALD_NATS_LISTEN=127.0.0.1:0", "HERALD_HTTP_ADDR=127.0.0.1:0",
		"HERALD_ADMIN_TOKEN=" + token, "HERALD_ALLOW_PRIVATE_TARGETS=true", "HERALD_LOG_FORMAT=json", "HERALD_LOG_LEVEL=info",
	}
}

// startHerald runs `herald serve` in dir; with apiOnly, without its
// dispatcher (add them with addDispatcher).
func startHerald(ctx context.Context, o Options, dir string, apiOnly bool) (*instance, error) {
	token := "bench_" + rand.Text()
	args := []string{"serve"}
	if apiOnly {
		args = append(args, "--api-only")
	}
	p, err := startProc(ctx, "herald serve", o.Herald, args, heraldEnv(dir, token), "HTTP API listening")
	if err != nil {
		return nil, err
	}
	in := &instance{serve: p, natsURL: p.field("nats"), apiURL: p.field("addr"), token: token,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	if in.natsURL == "" || in.apiURL == "" {
		in.stop()
		return nil, fmt.Errorf("herald serve did not log its NATS and API addresses:\n%s", p.lastLines())
	}
	if in.nc, err = nats.Connect(in.natsURL); err != nil {
		in.stop()
		return nil, err
	}
	if in.js, err = jetstream.New(in.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// addDispatcher starts a `herald dispatch` process against in's NATS.
func (in *instance) addDispatcher(ctx context.Context, o Options, dir string) (*proc, error) {
	env := append(heraldEnv(dir, in.token), "HERALD_NATS_URL="+in.natsURL)
	p, err := startProc(ctx, "herald dispatch", o.Herald, []string{"dispatch"}, env, "dispatcher running")
	if err != nil {
		return nil, err
	}
	in.dispatch = append(in.dispatch, p)
	return p, nil
}

func (in *instance) stop() {
	if in.nc != nil {
		in.nc.Close()
	}
	for _, p := range in.dispatch {
		p.stop()
	}
	in.serve.stop()
}

// subscribe creates a subscription of cloud through the HTTP API.
func (in *instance) subscribe(ctx context.Context, cloud string, body map[string]any) error {
	return in.post(ctx, "/v1/clouds/"+cloud+"/subscriptions", body, http.StatusCreated)
}

// post sends body as JSON to the API with the admin token and expects
// status want.
func (in *instance) post(ctx context.Context, path string, body any, want int) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", in.apiURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+in.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, resp.Body) // the connection is reused
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, out)
	}
	return nil
}

// subscribeAll creates n subscriptions, 16 at a time; body(i) is the i-th.
func (in *instance) subscribeAll(ctx context.Context, n int, cloud func(i int) string, body func(i int) map[string]any) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := in.subscribe(ctx, cloud(i), body(i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// eventData is the data of bench event n: a video-created as in SPEC's
// example, whose video_id carries n for the receivers.
func eventData(n int) []byte {
	return []byte(`{"video_id":"` + strconv.Itoa(n) + `","status":"success","encoding_ids":["4b0a9d2e","c3e1f5a7"],"metadata":{"width":1280,"height":720}}`)
}

const eventType = "video-created"

// eventPublisher sends events to a JetStream server, herald's or the
// baseline's, with an id each, asynchronously with many in flight: send
// publishes event n with the given id and data.
type eventPublisher struct {
	js   jetstream.JetStream
	send func(id string, n int, data []byte) error
}

// heraldPublisher publishes through herald's publisher package, the way an
// encoder embedding it does: each event is validated against its schema
// before it is sent, and marked as validated.
func heraldPublisher(js jetstream.JetStream, cloud func(n int) string) eventPublisher {
	pub, err := publisher.New(publisher.Config{JetStream: js, Schemas: builtinSchemas()})
	if err != nil {
		panic(err) // cannot happen: both are set
	}
	return eventPublisher{js: js, send: func(id string, n int, data []byte) error {
		_, _, err := pub.PublishAsync(herald.Event{ID: id, Cloud: cloud(n), Type: eventType, OccurredAt: time.Now(), Data: data})
		return err
	}}
}

// builtinSchemas are herald's built-in schemas, compiled once.
var builtinSchemas = sync.OnceValue(func() *schemas.Registry {
	r, err := schemas.New("")
	if err != nil {
		panic(err) // the built-in schemas compile: package schemas tests it
	}
	return r
})

// rawPublisher publishes envelopes on subject as they are, without
// validation: the baseline's publisher.
func rawPublisher(js jetstream.JetStream, subject string) eventPublisher {
	return eventPublisher{js: js, send: func(id string, _ int, data []byte) error {
		body, err := (&herald.Event{ID: id, OccurredAt: time.Now(), Data: data}).Envelope()
		if err == nil {
			_, err = js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: body}, jetstream.WithMsgID(id))
		}
		return err
	}}
}

// burst publishes events 0..n-1 as fast as JetStream takes them and
// records when each was sent, after t0.
func (p eventPublisher) burst(ctx context.Context, tag string, n int, t0 time.Time) ([]time.Duration, error) {
	return p.paced(ctx, tag, n, 0, t0)
}

// paced publishes events 0..n-1 at rate per second (0: as fast as
// JetStream takes them), each at its own time on a fixed schedule (a late
// one does not push the rest back), and records when each was sent.
func (p eventPublisher) paced(ctx context.Context, tag string, n, rate int, t0 time.Time) ([]time.Duration, error) {
	sent := make([]time.Duration, n)
	start := time.Now()
	for i := range n {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
		sent[i] = time.Since(t0)
		if err := p.send(tag+"-"+strconv.Itoa(i), i, eventData(i)); err != nil {
			return nil, fmt.Errorf("publish event %d: %w", i, err)
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
		return sent, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Minute):
		return nil, fmt.Errorf("%d publishes not acknowledged within 10 minutes", p.js.PublishAsyncPending())
	}
}
