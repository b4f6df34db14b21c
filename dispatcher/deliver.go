package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/streams"
	"github.com/herald-webhooks/herald/webhook"
)

// Outcomes that are not an HTTP attempt's: settle branches on them.
var (
	// errEndpointBusy: the endpoint already has EndpointConcurrency attempts
	// in flight from this process; the delivery waits a moment, uncounted.
	errEndpointBusy = errors.New("endpoint busy")
	// errStoreUnavailable: the subscription could not be read; try shortly.
	errStoreUnavailable = errors.New("subscription store unavailable")
)

// dropError: the delivery cannot and need not be attempted (its
// subscription was deleted or disabled, or the message is malformed).
type dropError struct{ reason string }

func (e *dropError) Error() string { return e.reason }

func (d *Dispatcher) deliverConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     streams.DeliverConsumer,
		Description: "herald: HTTP attempts, one message per (event, subscription)",
		AckPolicy:   jetstream.AckExplicitPolicy,
		// Covers a message waiting in the small client buffer for a worker,
		// plus one attempt.
		AckWait:       2*d.cfg.AttemptTimeout + 10*time.Second,
		MaxAckPending: d.cfg.MaxAckPending,
		MaxDeliver:    -1, // the retry policy decides when to give up
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// job is one delivery message being worked on.
type job struct {
	msg     jetstream.Msg
	dl      delivery
	sub     *herald.Subscription
	attempt int       // 1 on the first try
	first   time.Time // when the delivery was queued: the retry window's start
}

// deliver handles one delivery message: at most one HTTP attempt, then settle.
func (d *Dispatcher) deliver(ctx context.Context, msg jetstream.Msg) {
	j := &job{msg: msg}
	d.settle(ctx, j, d.run(ctx, j))
}

func (d *Dispatcher) run(ctx context.Context, j *job) error {
	if err := json.Unmarshal(j.msg.Data(), &j.dl); err != nil || j.dl.ID == "" || j.dl.SubscriptionID == "" {
		return &dropError{reason: "malformed delivery message"}
	}
	meta, err := j.msg.Metadata()
	if err != nil {
		return &dropError{reason: "delivery message without metadata"}
	}
	j.first = meta.Timestamp
	sub, err := d.cfg.Matcher.Subscription(ctx, j.dl.Event.Cloud, j.dl.SubscriptionID)
	switch {
	case errors.Is(err, herald.ErrNotFound):
		return &dropError{reason: "subscription deleted"}
	case err != nil:
		return fmt.Errorf("%w: %v", errStoreUnavailable, err)
	case !sub.Enabled:
		return &dropError{reason: "subscription disabled"}
	}
	j.sub = sub

	release, ok := d.endpoints.acquire(sub.URL)
	if !ok {
		return errEndpointBusy
	}
	defer release()

	j.attempt = 1
	if meta.NumDelivered > 1 {
		// Redelivered: a retry, or a message handed back uncounted. The
		// count of failed attempts is kept durably, not derived from
		// NumDelivered, which also counts those hand-backs.
		n, err := d.attempts.failures(ctx, j.dl.ID)
		if err != nil {
			return fmt.Errorf("%w: %v", errStoreUnavailable, err)
		}
		j.attempt = n + 1
	}
	return d.attempt(ctx, j)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// attempt makes one HTTP request for j and returns nil on a 2xx answer, or a
// *herald.DeliveryError.
func (d *Dispatcher) attempt(ctx context.Context, j *job) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	body, contentType, err := encodeBody((*bp)[:0], j.sub.Format, &j.dl.Event)
	if err != nil {
		return &herald.DeliveryError{Err: fmt.Errorf("build notification: %w", err)}
	}
	*bp = body

	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, j.sub.Method, j.sub.URL, bytes.NewReader(body))
	if err != nil {
		return &herald.DeliveryError{Err: fmt.Errorf("build request: %w", err)}
	}
	now := d.cfg.Now()
	h := req.Header
	h.Set("Content-Type", contentType)
	h.Set("User-Agent", herald.UserAgent())
	h.Set(webhook.HeaderID, j.dl.ID)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderEvent, j.dl.Event.Type)
	h.Set(webhook.HeaderAttempt, strconv.Itoa(j.attempt))
	h.Set(webhook.HeaderSequence, strconv.FormatUint(j.dl.Event.Sequence, 10))
	if len(j.sub.CredentialIDs) > 0 {
		if d.cfg.Credentials == nil {
			return &herald.DeliveryError{Err: errors.New("the subscription names credentials but this dispatcher has no credential store")}
		}
		if err := d.cfg.Credentials.Apply(ctx, j.sub.Cloud, j.sub.CredentialIDs, h, j.dl.ID, now, body); err != nil {
			// A deleted credential may be replaced by an update of the
			// subscription: retry on schedule rather than send unsigned.
			return &herald.DeliveryError{Retryable: true, Err: fmt.Errorf("apply credentials: %w", err)}
		}
	}

	start := time.Now()
	resp, err := d.client.http.Do(req)
	elapsed := time.Since(start)
	if err != nil {
		d.metrics.attemptDuration.WithLabelValues("error").Observe(elapsed.Seconds())
		return &herald.DeliveryError{Retryable: true, Err: describeTransportError(err, d.cfg.AttemptTimeout)}
	}
	// Drain a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	class := strconv.Itoa(resp.StatusCode/100) + "xx"
	d.metrics.attemptDuration.WithLabelValues(class).Observe(elapsed.Seconds())
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &herald.DeliveryError{
		Status:     resp.StatusCode,
		Retryable:  true,
		RetryAfter: retryAfter(resp, now),
		Err:        errors.New(http.StatusText(resp.StatusCode)),
	}
}

func encodeBody(dst []byte, format string, ev *herald.Event) ([]byte, string, error) {
	if format == herald.FormatForm {
		b, err := webhook.AppendForm(dst, ev.Type, ev.Data)
		return b, "application/x-www-form-urlencoded", err
	}
	b, err := webhook.AppendJSON(dst, ev.Type, ev.Data)
	return b, "application/json", err
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) on a 429
// or 503 answer.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// settle is the one place a delivery message is acknowledged, redelivered
// or terminated.
func (d *Dispatcher) settle(ctx context.Context, j *job, err error) {
	log := d.log.With().Str("delivery_id", j.dl.ID).Str("subscription_id", j.dl.SubscriptionID).Str("cloud", j.dl.Event.Cloud).Logger()
	var de *herald.DeliveryError
	var drop *dropError
	switch {
	case err == nil:
		d.metrics.deliveries.WithLabelValues("succeeded").Inc()
		_ = j.msg.Ack()
		if j.attempt > 1 {
			d.attempts.forget(ctx, j.dl.ID)
		}
		log.Debug().Int("attempt", j.attempt).Msg("delivered")

	case errors.Is(err, errEndpointBusy):
		d.metrics.deliveries.WithLabelValues("deferred").Inc()
		_ = j.msg.NakWithDelay(250*time.Millisecond + rand.N(750*time.Millisecond))

	case errors.Is(err, errStoreUnavailable):
		log.Warn().Err(err).Msg("delivery postponed")
		_ = j.msg.NakWithDelay(2 * time.Second)

	case errors.As(err, &drop):
		d.metrics.deliveries.WithLabelValues("dropped").Inc()
		log.Info().Str("reason", drop.reason).Msg("delivery dropped")
		_ = j.msg.Term()

	case errors.As(err, &de) && de.Retryable:
		now := d.cfg.Now()
		delay, ok := j.sub.Retry.Next(j.attempt, j.first, now, rand.Float64())
		if ok && de.RetryAfter > delay { // the endpoint asked for longer: honour it, within the window
			delay = de.RetryAfter
			if w := j.sub.Retry.Window.Std(); w > 0 {
				delay = min(delay, j.first.Add(w).Sub(now))
			}
		}
		if !ok {
			d.metrics.deliveries.WithLabelValues("failed").Inc()
			log.Warn().Int("attempts", j.attempt).Str("error", de.Error()).Msg("delivery failed: retry schedule exhausted")
			_ = j.msg.Term()
			return
		}
		if err := d.attempts.record(ctx, j.dl.ID, j.attempt); err != nil {
			log.Warn().Err(err).Msg("could not record the attempt count; the retry may repeat its number")
		}
		d.metrics.deliveries.WithLabelValues("retry").Inc()
		log.Debug().Int("attempt", j.attempt).Dur("next_in", delay).Str("error", de.Error()).Msg("attempt failed; retry scheduled")
		_ = j.msg.NakWithDelay(delay)

	default: // a non-retryable *herald.DeliveryError, or anything unforeseen
		d.metrics.deliveries.WithLabelValues("failed").Inc()
		log.Warn().Err(err).Msg("delivery failed")
		_ = j.msg.Term()
	}
}
