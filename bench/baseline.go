package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald/natsserver"
)

// The baseline is the least a webhook pipeline on JetStream can do: one
// file-backed stream, one durable pull consumer, and for each message an
// HTTP POST of its body to one endpoint and an acknowledgement. No
// matching, no formats, no signatures, no delivery log, no retry
// bookkeeping. It runs in a process of its own, as herald does, with its
// NATS server embedded.
const (
	baselineStream   = "BASELINE"
	baselineSubject  = "baseline.events"
	baselineConsumer = "baseline"
	baselineReady    = "baseline ready"
)

// RunBaselineWorker is the baseline process (`herald bench baseline-worker`):
// args are --store DIR, --target URL and --workers N. It logs
// baselineReady, with the server's address in the "nats" field, once it
// consumes, and runs until ctx ends.
func RunBaselineWorker(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("baseline-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	store := fs.String("store", "", "JetStream store directory")
	target := fs.String("target", "", "URL every message is POSTed to")
	workers := fs.Int("workers", 64, "concurrent POSTs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *store == "" || *target == "" {
		return errors.New("baseline-worker needs --store and --target")
	}
	log := zerolog.New(stderr).With().Timestamp().Logger()
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(*store, "jetstream"), Logger: log})
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: baselineStream, Subjects: []string{baselineSubject}, Storage: jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return err
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: baselineConsumer, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 100_000, AckWait: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers}, Timeout: 10 * time.Second}
	// As herald's dispatcher does, at most one message per worker is pulled
	// ahead, and a message waits for a free worker. It pulls with a loop of
	// fetches rather than Consume, which can miss a pull under load and
	// wait for heartbeats (see herald's dispatcher/stage.go): the baseline
	// is the best the machine does.
	slots := make(chan struct{}, *workers)
	go func() {
		for ctx.Err() == nil {
			b, err := c.Fetch(*workers, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for m := range b.Messages() {
				slots <- struct{}{}
				go func() {
					defer func() { <-slots }()
					post(client, *target, m)
				}()
			}
		}
	}()
	log.Info().Str("nats", ns.ClientURL()).Msg(baselineReady)
	<-ctx.Done()
	return nil
}

// startBaseline runs the baseline process, POSTing to target.
func startBaseline(ctx context.Context, o Options, dir, target string) (*proc, string, error) {
	p, err := startProc(ctx, "baseline", o.Herald,
		[]string{"bench", "baseline-worker", "--store", dir, "--target", target}, nil, baselineReady)
	if err != nil {
		return nil, "", err
	}
	url := p.field("nats")
	if url == "" {
		p.kill()
		return nil, "", fmt.Errorf("baseline did not log its NATS address")
	}
	return p, url, nil
}

// post sends m's body to target and acknowledges m on a 2xx answer.
func post(client *http.Client, target string, m jetstream.Msg) {
	resp, err := client.Post(target, "application/json", bytes.NewReader(m.Data()))
	if err != nil {
		_ = m.Nak()
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_ = m.Ack()
	} else {
		_ = m.Nak()
	}
}
