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
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/streams"
	"github.com/herald-webhooks/herald/webhook"
)

// Outcomes that are not an HTTP attempt's: settle branches on them.
var (
	// errEndpointBusy: the endpoint already has EndpointConcurrency attempts
	// in flight from this process; the delivery waits a moment, uncounted.
	errEndpointBusy = errors.New("endpoint busy")
	// errStoreUnavailable: the subscription or the log could not be read.
	errStoreUnavailable = errors.New("store unavailable")
	// errAlreadySettled: the log says this delivery is done; the message is
	// a leftover (an acknowledgement lost to a crash). Nothing is sent.
	errAlreadySettled = errors.New("delivery already settled")
	// errSuperseded: a newer progress of the same encoding has already
	// reached the endpoint.
	errSuperseded = errors.New("superseded by a newer progress notification")
)

// dropError: the delivery cannot and need not be attempted (its
// subscription was deleted or disabled, or the message is malformed).
type dropError struct{ reason string }

func (e *dropError) Error() string { return e.reason }

// deliverConsumerConfig is the consumer of fresh deliveries; retryConsumer
// Config the one of parked retries come due. They share everything but
// their subjects: a delivery message is handled the same in either lane.
func (d *Dispatcher) deliverConsumerConfig() jetstream.ConsumerConfig {
	return d.attemptConsumerConfig(streams.DeliverConsumer, streams.DeliveryFilter,
		"herald: HTTP attempts, one message per (event, subscription)")
}

func (d *Dispatcher) retryConsumerConfig() jetstream.ConsumerConfig {
	return d.attemptConsumerConfig(streams.RetryConsumer, streams.RetryFilter,
		"herald: HTTP attempts of parked retries that came due")
}

func (d *Dispatcher) attemptConsumerConfig(name, filter, desc string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   desc,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Covers a message waiting in the small client buffer for a worker,
		// plus one attempt.
		AckWait:       2*d.cfg.AttemptTimeout + 10*time.Second,
		MaxAckPending: d.cfg.MaxAckPending,
		MaxDeliver:    -1, // the retry policy decides when to give up
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// settler is how a delivery message is settled: a jetstream.Msg, or a
// firstMsg for a first attempt made by fan-out.
type settler interface {
	Ack() error
	NakWithDelay(time.Duration) error
	Term() error
}

// job is one delivery being worked on.
type job struct {
	msg  settler
	dl   delivery
	sub  *herald.Subscription
	rec  *herald.Delivery // the log record; nil until known
	seen bool             // rec came from the log (this is not the first message)
	att  *herald.Attempt  // the attempt made, if one was
}

// deliver handles one delivery message: at most one HTTP attempt, then settle.
func (d *Dispatcher) deliver(ctx context.Context, msg jetstream.Msg) {
	j := &job{msg: msg}
	d.settle(ctx, j, d.run(ctx, j, msg))
}

// notDueError: the log says the delivery's next attempt is later than now
// (a retry's message published at once, or handed back early after a
// restart); the message waits until then.
type notDueError struct{ wait time.Duration }

func (e *notDueError) Error() string { return "next attempt not yet due" }

// dueSlack is how early an attempt may start: clocks of dispatchers differ a
// little, and a NAK delay is not exact.
const dueSlack = 50 * time.Millisecond

func (d *Dispatcher) run(ctx context.Context, j *job, msg jetstream.Msg) error {
	if err := json.Unmarshal(msg.Data(), &j.dl); err != nil || !herald.ValidObjectID(j.dl.ID) ||
		!herald.ValidObjectID(j.dl.SubscriptionID) || !herald.ValidCloud(j.dl.Event.Cloud) {
		return &dropError{reason: "malformed delivery message"}
	}
	meta, err := msg.Metadata()
	if err != nil {
		return &dropError{reason: "delivery message without metadata"}
	}
	if meta.NumDelivered == 1 && msg.Headers().Get("Nats-Scheduler") != "" {
		d.countParked(j.dl.Event.Cloud, j.dl.SubscriptionID, "-1") // a parked retry came due
	}
	if meta.NumDelivered > 1 || j.dl.Retry {
		// Not the first message of this delivery: what happened before is
		// in the log, not in NumDelivered, which also counts hand-backs.
		rec, err := d.cfg.Log.Get(ctx, j.dl.Event.Cloud, j.dl.SubscriptionID, j.dl.ID)
		switch {
		case err == nil:
			j.rec, j.seen = &rec, true
		case !errors.Is(err, herald.ErrNotFound):
			return fmt.Errorf("%w: %v", errStoreUnavailable, err)
		}
	}
	if j.rec != nil && j.rec.Status != herald.StatusPending {
		return errAlreadySettled
	}
	if j.rec != nil && j.rec.NextAttemptAt != nil {
		if wait := j.rec.NextAttemptAt.Sub(d.cfg.Now()); wait > dueSlack {
			return &notDueError{wait: wait}
		}
	}

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

	release, ok := d.endpoints.acquireWait(ctx, sub.URL, fastEndpoint)
	if !ok {
		return errEndpointBusy
	}
	start := time.Now()
	defer func() { release(time.Since(start)) }()
	return d.attemptNow(ctx, j)
}

// attemptNow makes j's next attempt, its subscription known and an
// endpoint slot held: the record is started if this is the first.
func (d *Dispatcher) attemptNow(ctx context.Context, j *job) error {
	now := d.cfg.Now()
	if j.rec == nil {
		j.rec = &herald.Delivery{
			ID: j.dl.ID, Cloud: j.dl.Event.Cloud, SubscriptionID: j.dl.SubscriptionID,
			EventID: j.dl.Event.ID, EventType: j.dl.Event.Type, EventSequence: j.dl.Event.Sequence,
			Status: herald.StatusPending, Attempts: []herald.Attempt{}, CreatedAt: now,
		}
	}
	if j.rec.ScheduleStart.IsZero() {
		j.rec.ScheduleStart = now
	}
	if len(j.rec.Attempts) > j.rec.ScheduleBase && j.dl.Event.Type == "encoding-progress" {
		if encID := encodingID(j.dl.Event.Data); encID != "" {
			newer, err := d.cfg.Log.Superseded(ctx, j.rec.Cloud, j.rec.SubscriptionID, encID, j.dl.Event.Sequence)
			if err != nil {
				return fmt.Errorf("%w: %v", errStoreUnavailable, err)
			}
			if newer {
				return errSuperseded
			}
		}
	}
	return d.attempt(ctx, j, now)
}

// encodingID reads data.encoding_id, or "".
func encodingID(data json.RawMessage) string {
	var v struct {
		EncodingID string `json:"encoding_id"`
	}
	_ = json.Unmarshal(data, &v)
	return v.EncodingID
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// attempt makes one HTTP request for j, records it in j.att, and returns
// nil on a 2xx answer or a *herald.DeliveryError.
func (d *Dispatcher) attempt(ctx context.Context, j *job, now time.Time) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	body, contentType, err := encodeBody((*bp)[:0], j.sub.Format, &j.dl.Event)
	if err != nil {
		return &herald.DeliveryError{Err: fmt.Errorf("build notification: %w", err)}
	}
	*bp = body
	att := &herald.Attempt{Number: len(j.rec.Attempts) + 1, At: now.UTC()}
	j.att = att
	err = d.sender.send(ctx, j.sub, j.dl.ID, &j.dl.Event, att, body, contentType)
	if err != nil {
		att.Error = err.Error()
	}
	return err
}

// sender makes HTTP attempts, for the deliver stage and for Service.
type sender struct {
	client  *client
	creds   Credentials
	timeout time.Duration
	// observe records an attempt's duration by answer class; may be nil.
	observe func(class string, seconds float64)
}

// send makes one request: the headers of SPEC §3, the subscription's
// credentials, the body. It fills att's duration, status and response.
func (d *sender) send(ctx context.Context, sub *herald.Subscription, msgID string, ev *herald.Event, att *herald.Attempt, body []byte, contentType string) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, sub.Method, sub.URL, bytes.NewReader(body))
	if err != nil {
		return &herald.DeliveryError{Err: fmt.Errorf("build request: %w", err)}
	}
	// The headers of SPEC §3, their names canonical as Header.Set makes
	// them, their values in one allocation rather than one each.
	v := [...]string{contentType, herald.UserAgent(), msgID, strconv.FormatInt(att.At.Unix(), 10), ev.Type, strconv.Itoa(att.Number), strconv.FormatUint(ev.Sequence, 10)}
	vals := v[:]
	h := req.Header
	for i, name := range notificationHeaders {
		h[name] = vals[i : i+1 : i+1]
	}
	if len(sub.CredentialIDs) > 0 {
		if d.creds == nil {
			return &herald.DeliveryError{Err: errors.New("the subscription names credentials but this dispatcher has no credential store")}
		}
		if err := d.creds.Apply(ctx, sub.Cloud, sub.CredentialIDs, h, msgID, att.At, body); err != nil {
			// A deleted credential may be replaced by an update of the
			// subscription: retry on schedule rather than send unsigned.
			return &herald.DeliveryError{Retryable: true, Err: fmt.Errorf("apply credentials: %w", err)}
		}
	}

	start := time.Now()
	resp, err := d.client.rt.RoundTrip(req)
	if err != nil {
		elapsed := time.Since(start)
		att.DurationMS = ms(elapsed)
		d.observeAttempt("error", elapsed)
		return &herald.DeliveryError{Retryable: true, Err: describeTransportError(err, d.timeout)}
	}
	excerpt := excerptPool.Get().(*[herald.MaxResponseExcerpt]byte)
	defer excerptPool.Put(excerpt)
	n, _ := io.ReadFull(resp.Body, excerpt[:])
	// Drain a bounded amount more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	elapsed := time.Since(start)
	att.DurationMS = ms(elapsed)
	att.StatusCode = resp.StatusCode
	att.Response = strings.ToValidUTF8(string(excerpt[:n]), "\uFFFD")
	d.observeAttempt(statusClass(resp.StatusCode), elapsed)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &herald.DeliveryError{
		Status:     resp.StatusCode,
		Retryable:  true,
		RetryAfter: retryAfter(resp, att.At),
		Err:        errors.New(http.StatusText(resp.StatusCode)),
	}
}

// statusClass is the metric label of an answer's status: "2xx" and so on.
func statusClass(code int) string {
	if code >= 100 && code < 600 {
		return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[code/100-1]
	}
	return strconv.Itoa(code/100) + "xx"
}

// excerptPool holds the buffers answers are read into: one per attempt
// would be a kilobyte of garbage each.
var excerptPool = sync.Pool{New: func() any { return new([herald.MaxResponseExcerpt]byte) }}

// notificationHeaders are the names of the headers send sets, in the order
// of its values.
var notificationHeaders = [...]string{
	"Content-Type", "User-Agent",
	http.CanonicalHeaderKey(webhook.HeaderID), http.CanonicalHeaderKey(webhook.HeaderTimestamp),
	http.CanonicalHeaderKey(webhook.HeaderEvent), http.CanonicalHeaderKey(webhook.HeaderAttempt),
	http.CanonicalHeaderKey(webhook.HeaderSequence),
}

func (d *sender) observeAttempt(class string, took time.Duration) {
	if d.observe != nil {
		d.observe(class, took.Seconds())
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func encodeBody(dst []byte, format string, ev *herald.Event) ([]byte, string, error) {
	if format == herald.FormatForm {
		b, err := webhook.AppendForm(dst, ev.Type, ev.Data)
		return b, webhook.ContentTypeForm, err
	}
	b, err := webhook.AppendJSON(dst, ev.Type, ev.Data)
	return b, webhook.ContentTypeJSON, err
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

// holdUntil makes j's message come back at next, delay from now: parked as
// a message schedule when shouldPark says so (and parking works), otherwise
// NAKed with the delay.
func (d *Dispatcher) holdUntil(ctx context.Context, j *job, next time.Time, delay time.Duration, log func(zerolog.Level) *zerolog.Event) {
	if d.shouldPark(delay) {
		err := d.park(ctx, j, next)
		if err == nil {
			_ = j.msg.Ack()
			return
		}
		log(zerolog.WarnLevel).Err(err).Msg("could not park the retry; holding it on the consumer instead")
	}
	_ = j.msg.NakWithDelay(delay)
}

// settle is the one place a delivery message is acknowledged, redelivered,
// parked or terminated, and its log record written.
func (d *Dispatcher) settle(ctx context.Context, j *job, err error) {
	// A line about this delivery, with its ids; built only when logged.
	log := func(level zerolog.Level) *zerolog.Event {
		return d.log.WithLevel(level).Str("delivery_id", j.dl.ID).Str("subscription_id", j.dl.SubscriptionID).Str("cloud", j.dl.Event.Cloud)
	}
	now := d.cfg.Now()
	if j.att != nil {
		j.rec.Attempts = append(j.rec.Attempts, *j.att)
		j.rec.UpdatedAt = now
	}
	var de *herald.DeliveryError
	var drop *dropError
	var notDue *notDueError
	switch {
	case err == nil:
		d.metrics.deliveries.WithLabelValues("succeeded").Inc()
		j.rec.Status, j.rec.NextAttemptAt, j.rec.Reason = herald.StatusSucceeded, nil, ""
		// A delivery with a record (it was retried) updates it; one that
		// succeeded at once goes to the log of first-attempt successes.
		var lerr error
		switch {
		case j.seen:
			lerr = d.cfg.Log.PutAsync(j.rec)
		case !d.cfg.SkipSuccessLog:
			lerr = d.cfg.Log.Succeeded(j.rec)
		}
		if lerr != nil {
			log(zerolog.WarnLevel).Err(lerr).Msg("could not log the delivery")
		}
		if t := j.dl.Event.Type; t == "encoding-progress" || t == "encoding-complete" {
			if encID := encodingID(j.dl.Event.Data); encID != "" {
				_ = d.cfg.Log.MarkProgress(j.rec.Cloud, j.rec.SubscriptionID, encID, j.dl.Event.Sequence)
			}
		}
		_ = j.msg.Ack()
		log(zerolog.DebugLevel).Int("attempt", j.att.Number).Msg("delivered")

	case errors.Is(err, errAlreadySettled):
		d.metrics.deliveries.WithLabelValues("duplicate").Inc()
		_ = j.msg.Ack()

	case errors.Is(err, errEndpointBusy):
		d.metrics.deliveries.WithLabelValues("deferred").Inc()
		_ = j.msg.NakWithDelay(d.endpoints.busyDelay(j.sub.URL, d.cfg.AttemptTimeout))

	case errors.As(err, &notDue):
		d.metrics.deliveries.WithLabelValues("early").Inc()
		d.holdUntil(ctx, j, *j.rec.NextAttemptAt, notDue.wait, log)

	case errors.Is(err, errStoreUnavailable):
		log(zerolog.WarnLevel).Err(err).Msg("delivery postponed")
		_ = j.msg.NakWithDelay(2 * time.Second)

	case errors.As(err, &drop):
		d.metrics.deliveries.WithLabelValues("dropped").Inc()
		log(zerolog.InfoLevel).Str("reason", drop.reason).Msg("delivery dropped")
		if j.seen {
			d.finish(ctx, j, herald.StatusFailed, drop.reason)
		}
		_ = j.msg.Term()

	case errors.Is(err, errSuperseded):
		d.metrics.deliveries.WithLabelValues("superseded").Inc()
		log(zerolog.InfoLevel).Msg("stale progress notification superseded; not sent")
		d.finish(ctx, j, herald.StatusSuperseded, err.Error())
		_ = j.msg.Term()

	case errors.As(err, &de) && de.Retryable:
		pos := len(j.rec.Attempts) - j.rec.ScheduleBase
		delay, ok := j.sub.Retry.Next(pos, j.rec.ScheduleStart, now, rand.Float64())
		if ok && de.RetryAfter > delay { // the endpoint asked for longer: honour it, within the window
			delay = de.RetryAfter
			if w := j.sub.Retry.Window.Std(); w > 0 {
				delay = min(delay, j.rec.ScheduleStart.Add(w).Sub(now))
			}
		}
		if !ok {
			d.metrics.deliveries.WithLabelValues("failed").Inc()
			log(zerolog.WarnLevel).Int("attempts", len(j.rec.Attempts)).Str("error", de.Error()).Msg("delivery failed: retry schedule exhausted")
			d.finish(ctx, j, herald.StatusFailed, fmt.Sprintf("gave up after %d attempts; last: %s", len(j.rec.Attempts), de.Error()))
			_ = j.msg.Term()
			return
		}
		next := now.Add(delay).UTC()
		j.rec.Status, j.rec.NextAttemptAt = herald.StatusPending, &next
		// The record is the attempt count the retry will read: it must be
		// stored before the message is handed back.
		if err := d.cfg.Log.Put(ctx, j.rec); err != nil {
			log(zerolog.WarnLevel).Err(err).Msg("could not record the attempt; the retry may repeat its number")
		}
		d.metrics.deliveries.WithLabelValues("retry").Inc()
		log(zerolog.DebugLevel).Int("attempt", len(j.rec.Attempts)).Dur("next_in", delay).Str("error", de.Error()).Msg("attempt failed; retry scheduled")
		d.holdUntil(ctx, j, next, delay, log)

	default: // a non-retryable *herald.DeliveryError, or anything unforeseen
		d.metrics.deliveries.WithLabelValues("failed").Inc()
		log(zerolog.WarnLevel).Err(err).Msg("delivery failed")
		if j.rec != nil {
			d.finish(ctx, j, herald.StatusFailed, err.Error())
		}
		_ = j.msg.Term()
	}
}

// finish writes the record's final state.
func (d *Dispatcher) finish(ctx context.Context, j *job, status, reason string) {
	j.rec.Status, j.rec.Reason, j.rec.NextAttemptAt = status, reason, nil
	j.rec.UpdatedAt = d.cfg.Now()
	if err := d.cfg.Log.Put(ctx, j.rec); err != nil {
		d.log.Warn().Err(err).Str("delivery_id", j.rec.ID).Msg("could not log the delivery's end")
	}
}

// park turns a retry due at due into a message schedule on the delivery's
// own parked subject, so that it waits in the stream instead of pending on the
// consumer, where every waiting retry costs the server timer work and
// counts against MaxAckPending. JetStream publishes it back onto the
// delivery subject when it is due.
func (d *Dispatcher) park(ctx context.Context, j *job, due time.Time) error {
	dl := j.dl
	dl.Retry = true
	body, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	// Schedules have one-second resolution and fire at the due second:
	// round up so that a retry never comes early.
	if t := due.Truncate(time.Second); t.Before(due) {
		due = t.Add(time.Second)
	}
	target := herald.RetrySubjectPrefix + dl.Event.Cloud + "." + dl.SubscriptionID
	parked := herald.ParkedSubjectPrefix + dl.Event.Cloud + "." + dl.SubscriptionID + "." + dl.ID
	_, err = d.js.PublishMsg(ctx, &nats.Msg{Subject: parked, Data: body},
		jetstream.WithScheduleAt(due), jetstream.WithScheduleTarget(target),
		jetstream.WithMsgID(dl.ID+".park."+strconv.Itoa(len(j.rec.Attempts))))
	if err == nil {
		d.metrics.parked.Inc()
		d.countParked(dl.Event.Cloud, dl.SubscriptionID, "+1")
	}
	return err
}

// countParked moves the subscription's parked-retries counter by delta
// ("+1" or "-1"), without waiting: it feeds a metric, and a crash between a
// park and its count leaves the count off by one, nothing worse.
func (d *Dispatcher) countParked(cloud, subID, delta string) {
	_, err := d.js.PublishMsgAsync(&nats.Msg{
		Subject: herald.BacklogSubjectPrefix + cloud + "." + subID,
		Header:  nats.Header{"Nats-Incr": []string{delta}},
	})
	if err != nil {
		d.log.Debug().Err(err).Msg("count parked retry")
	}
}
