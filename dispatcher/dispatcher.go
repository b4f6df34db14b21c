// Package dispatcher turns published events into HTTP notifications.
//
// It runs two stages on JetStream, each a durable pull consumer that any
// number of dispatcher processes share:
//
//   - fan-out reads HERALD_EVENTS and matches each event to the subscriptions
//     of its cloud. It makes the first attempt of a delivery itself when the
//     endpoint is known to answer fast and has a free slot; every other
//     delivery, and every first attempt that fails, becomes a delivery
//     message on HERALD_DELIVERIES. The event is acknowledged once all of
//     that is done. A delivery message's Nats-Msg-Id is the delivery id, so
//     replaying an event never doubles a delivery message.
//   - deliver reads HERALD_DELIVERIES and makes one HTTP attempt per message.
//     A single function, settle, turns the outcome into Ack, NakWithDelay (the
//     retry schedule) or Term. Each delivery is settled on its own: a failure
//     at one endpoint never re-sends to another.
package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/deliverylog"
	"github.com/herald-webhooks/herald/streams"
)

// Matcher finds the subscriptions an event goes to. Implementations are safe
// for concurrent use and return shared values that callers must not modify.
type Matcher interface {
	// Match appends to dst the enabled subscriptions of cloud that want an
	// event of type typ with data, without I/O.
	Match(cloud, typ string, data json.RawMessage, dst []*herald.Subscription) []*herald.Subscription
	// Subscription returns the current state of one subscription, or
	// herald.ErrNotFound when it no longer exists.
	Subscription(ctx context.Context, cloud, id string) (*herald.Subscription, error)
}

// Validator checks an event's data against its type's schema; see
// publisher.Validator. Digest names the version of typ's schema it applies
// ("" for an unknown type; see schemas.Registry.Digest): fan-out validates
// again every event that does not carry that digest in herald.HeaderSchema,
// such as one published straight onto NATS rather than by the publisher.
type Validator interface {
	Validate(typ string, data json.RawMessage) error
	Digest(typ string) string
}

// Credentials applies a subscription's stored credentials to a request.
// Apply is called once per attempt, after the body and the webhook-id,
// webhook-timestamp and herald-* headers are set; it adds what the
// credentials ask for: Authorization (basic, bearer), a custom header, and
// webhook-signature over "{msgID}.{ts}.{body}" (hmac). It must be safe for
// concurrent use and fast (it runs on every attempt). It returns
// herald.ErrNotFound when a credential no longer exists, and must never put
// a secret in its error.
type Credentials interface {
	Apply(ctx context.Context, cloud string, ids []string, h http.Header, msgID string, ts time.Time, body []byte) error
}

// Config is what a Dispatcher needs. JetStream, Matcher and Schemas are
// required; every other zero value means the default.
type Config struct {
	JetStream jetstream.JetStream
	Matcher   Matcher
	Schemas   Validator
	// Log records every delivery and attempt; retries read their attempt
	// count from it.
	Log *deliverylog.Log
	// Credentials signs and authorizes requests of subscriptions that name
	// credentials. Nil: such deliveries fail (nothing is sent unsigned).
	Credentials Credentials
	Logger      zerolog.Logger
	// Metrics registers the dispatcher's collectors (default: a private registry).
	Metrics prometheus.Registerer

	// AttemptTimeout bounds one HTTP attempt (default 10 s).
	AttemptTimeout time.Duration
	// MaxInFlight bounds concurrent HTTP attempts of this process: fan-out's
	// first attempts and the deliver stage's together (default 256). The
	// retry stage has a quarter of it besides.
	MaxInFlight int
	// EndpointConcurrency bounds concurrent attempts to one endpoint (scheme,
	// host and port) from this process (default 16).
	EndpointConcurrency int
	// FanoutWorkers bounds events being fanned out at once (default 32).
	FanoutWorkers int
	// AllowPrivateTargets permits delivery to loopback, private and
	// link-local addresses.
	AllowPrivateTargets bool
	// MaxAckPending of the deliver consumer: deliveries handed out and not
	// yet settled, waiting retries included (default 100,000).
	MaxAckPending int
	// ParkAfter: a retry due later than this waits as a JetStream message
	// schedule instead of a NakWithDelay (default 60 s, at least 1 s).
	ParkAfter time.Duration
	// BacklogRefresh is how often herald_retry_backlog is read from the
	// streams (default 15 s).
	BacklogRefresh time.Duration
	// SkipSuccessLog leaves deliveries that succeed at the first attempt
	// out of the delivery log (retries and failures are always logged).
	SkipSuccessLog bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Validate checks cfg.
func (c Config) Validate() error {
	switch {
	case c.JetStream == nil:
		return errors.New("dispatcher: JetStream is required")
	case c.Matcher == nil:
		return errors.New("dispatcher: Matcher is required")
	case c.Schemas == nil:
		return errors.New("dispatcher: Schemas is required")
	case c.Log == nil:
		return errors.New("dispatcher: Log is required")
	case c.ParkAfter != 0 && c.ParkAfter < time.Second:
		return fmt.Errorf("dispatcher: park-after must be at least 1s (message schedules have 1s resolution), got %s", c.ParkAfter)
	case c.AttemptTimeout < 0 || c.AttemptTimeout > 5*time.Minute:
		return fmt.Errorf("dispatcher: attempt timeout must be between 1ms and 5m, got %s", c.AttemptTimeout)
	case c.MaxInFlight < 0 || c.EndpointConcurrency < 0 || c.FanoutWorkers < 0 || c.MaxAckPending < 0:
		return errors.New("dispatcher: limits must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 10 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.EndpointConcurrency == 0 {
		c.EndpointConcurrency = 16
	}
	if c.FanoutWorkers == 0 {
		c.FanoutWorkers = 32
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 100_000
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = 60 * time.Second
	}
	if c.BacklogRefresh <= 0 {
		c.BacklogRefresh = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	return c
}

// Dispatcher runs the fan-out and deliver stages.
type Dispatcher struct {
	cfg       Config
	log       zerolog.Logger
	js        jetstream.JetStream
	sender    *sender
	endpoints *endpointLimits
	metrics   *metrics
	// ackPending is the deliver consumer's NumAckPending, sampled every
	// few seconds: the pressure that makes settle park even short retries.
	ackPending atomic.Int64
	// attemptSlots bounds the attempts in flight of the deliver stage and
	// of fan-out's first attempts together (MaxInFlight).
	attemptSlots chan struct{}
	// firsts tracks fan-out's first attempts, which outlive the fan-out
	// handler that started them; firstCtx is theirs, cancelled only when
	// shutdown gives up waiting for them.
	firsts      sync.WaitGroup
	firstCtx    context.Context
	firstCancel context.CancelFunc
	// workers runs the stages' handlers and the first attempts.
	workers *workers
}

// New returns a Dispatcher; Run starts it.
func New(cfg Config) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	firstCtx, firstCancel := context.WithCancel(context.Background())
	return &Dispatcher{
		cfg: cfg,
		log: cfg.Logger.With().Str("component", "dispatcher").Logger(),
		js:  cfg.JetStream,
		sender: &sender{
			// Idle connections: an endpoint's full bound, and in all a few
			// times the attempts that can be in flight; each costs two
			// goroutines and 8 KiB of buffers.
			client:  newClient(cfg.AttemptTimeout, cfg.EndpointConcurrency*fastFactor, 4*cfg.MaxInFlight, cfg.AllowPrivateTargets),
			creds:   cfg.Credentials,
			timeout: cfg.AttemptTimeout,
			observe: func(class string, s float64) { m.attemptDuration.WithLabelValues(class).Observe(s) },
		},
		endpoints:    newEndpointLimits(cfg.EndpointConcurrency),
		metrics:      m,
		attemptSlots: make(chan struct{}, cfg.MaxInFlight),
		firstCtx:     firstCtx,
		firstCancel:  firstCancel,
		workers:      newWorkers(10 * time.Second),
	}, nil
}

// Run consumes until ctx ends, then stops taking messages, lets attempts in
// flight finish (each bounded by the attempt timeout), hands back messages
// it had not started, and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	fan, err := d.consumer(ctx, d.fanoutConsumerConfig(), streams.Events)
	if err != nil {
		return err
	}
	del, err := d.consumer(ctx, d.deliverConsumerConfig(), streams.Deliveries)
	if err != nil {
		return err
	}
	ret, err := d.consumer(ctx, d.retryConsumerConfig(), streams.Deliveries)
	if err != nil {
		return err
	}
	grace := d.cfg.AttemptTimeout + 5*time.Second
	fanStage := newStage("fan-out", make(chan struct{}, d.cfg.FanoutWorkers), d.workers, grace, d.log, d.fanout)
	// Fan-out handles an event in well under a millisecond, against an
	// AckWait of 30 s or more: a deep buffer costs nothing, and it makes
	// nats.go's missed pull (see stage.start) much rarer.
	fanStage.buffer = max(fanStage.buffer, fanoutBuffer)
	stages := []*stage{
		fanStage,
		newStage("deliver", d.attemptSlots, d.workers, grace, d.log, d.deliver),
		// Retries come due in waves (a dead endpoint's, all at once): a
		// smaller pool of their own keeps a wave from taking the CPU and
		// the connections that fresh deliveries need.
		newStage("retry", make(chan struct{}, max(d.cfg.MaxInFlight/4, 1)), d.workers, grace, d.log, d.deliver),
	}
	var started []*stage
	for i, cons := range []jetstream.Consumer{fan, del, ret} {
		if err := stages[i].start(cons); err != nil {
			for _, s := range started {
				s.stop()
			}
			return err
		}
		started = append(started, stages[i])
	}
	go d.watchPressure(ctx, del)
	go d.watchBacklog(ctx)
	d.log.Info().Int("max_in_flight", d.cfg.MaxInFlight).Int("endpoint_concurrency", d.cfg.EndpointConcurrency).Msg("dispatcher running")
	<-ctx.Done()
	var wg sync.WaitGroup
	for _, s := range stages {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Wait()
	d.waitFirsts(grace)
	d.workers.stop()
	d.sender.client.close()
	d.log.Info().Msg("dispatcher stopped")
	return nil
}

func (d *Dispatcher) consumer(ctx context.Context, cc jetstream.ConsumerConfig, stream string) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	var err error
	for i := 0; i < 50; i++ {
		cons, err = d.js.CreateOrUpdateConsumer(ctx, stream, cc)
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dispatcher: consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return cons, nil
}

// fanoutBuffer is how many events fan-out pulls ahead.
const fanoutBuffer = 256

// parkPressure is the ack-pending count above which every retry of 2 s or
// more is parked as a message schedule, whatever ParkAfter says: retries
// held on the consumer count against MaxAckPending, and once that fills the
// consumer stops handing out fresh deliveries to every endpoint.
func (d *Dispatcher) parkPressure() int64 { return int64(d.cfg.MaxAckPending / 10) }

// watchPressure samples the deliver consumer's ack-pending count.
func (d *Dispatcher) watchPressure(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			d.ackPending.Store(int64(info.NumAckPending))
			d.metrics.ackPending.Set(float64(info.NumAckPending))
			d.metrics.waiting.Set(float64(info.NumPending))
		}
	}
}

// shouldPark reports whether a retry due in delay waits as a message
// schedule rather than a NakWithDelay.
func (d *Dispatcher) shouldPark(delay time.Duration) bool {
	return delay > d.cfg.ParkAfter || (delay >= 2*time.Second && d.ackPending.Load() > d.parkPressure())
}

// watchBacklog refreshes herald_retry_backlog every BacklogRefresh: from the
// deliveries stream's per-subject counts, each subscription's messages held
// on the consumer (waiting for a worker or their NAK delay); from the
// backlog counters, its parked retries. Both are the same on every
// dispatcher.
func (d *Dispatcher) watchBacklog(ctx context.Context) {
	t := time.NewTicker(d.cfg.BacklogRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		held, err := d.subjectCounts(ctx, streams.Deliveries, streams.DeliveryFilter)
		if err != nil {
			continue
		}
		due, err := d.subjectCounts(ctx, streams.Deliveries, streams.RetryFilter)
		if err != nil {
			continue
		}
		parked, err := d.parkedCounts(ctx)
		if err != nil {
			continue
		}
		d.metrics.backlog.Reset()
		consumer := map[[2]string]uint64{}
		for subj, n := range held {
			cloud, sub, _ := strings.Cut(strings.TrimPrefix(subj, herald.DeliverySubjectPrefix), ".")
			consumer[[2]string{cloud, sub}] += n
		}
		for subj, n := range due {
			cloud, sub, _ := strings.Cut(strings.TrimPrefix(subj, herald.RetrySubjectPrefix), ".")
			consumer[[2]string{cloud, sub}] += n
		}
		for k, n := range consumer {
			d.metrics.backlog.WithLabelValues(k[0], k[1], "consumer").Set(float64(n))
		}
		for subj, n := range parked {
			cloud, sub, _ := strings.Cut(strings.TrimPrefix(subj, herald.BacklogSubjectPrefix), ".")
			d.metrics.backlog.WithLabelValues(cloud, sub, "parked").Set(float64(n))
		}
		d.log.Debug().Dur("took", time.Since(start)).Int("subscriptions", len(held)+len(parked)).Msg("retry backlog read")
	}
}

// subjectCounts returns the message count of each subject of stream that
// matches filter.
func (d *Dispatcher) subjectCounts(ctx context.Context, stream, filter string) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := d.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// parkedCounts reads every subscription's parked-retries counter.
func (d *Dispatcher) parkedCounts(ctx context.Context) (map[string]int64, error) {
	subjects, err := d.subjectCounts(ctx, streams.Backlog, herald.BacklogSubjectPrefix+">")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := d.js.Stream(ctx, streams.Backlog)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(subjects))
	for subj := range subjects {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			continue
		}
		var v struct {
			Val string `json:"val"`
		}
		if json.Unmarshal(m.Data, &v) == nil {
			if n, err := strconv.ParseInt(v.Val, 10, 64); err == nil && n > 0 {
				out[subj] = n
			}
		}
	}
	return out, nil
}
