// Package deliverylog keeps every delivery and its attempts: the delivery
// log the API lists, the dead-letter log of deliveries that gave up, and the
// durable attempt count that retries read, so a dispatcher killed or a
// server restarted never resets a delivery to attempt 1.
//
// It keeps two kinds of record, both for Retention:
//
//   - A delivery that has retry state (an attempt failed, it gave up, was
//     superseded or redelivered by hand) lives in the KV bucket
//     herald_deliveries under "<cloud>.<subscription id>.<delivery id>",
//     replaced at each attempt and read by key.
//   - A delivery that succeeded at its first attempt, most of them, is
//     appended to the stream HERALD_LOG on herald.log.<cloud>.<subscription
//     id>. One key per delivery would cost the server memory for every
//     delivery kept; a subject per subscription costs it per subscription.
//     Such a record is found by id by reading its subscription's log (its
//     cloud's, when the subscription is not known), newest first.
//
// Successes are many (one per delivery), so they are appended in batches:
// the records of one subject are gathered for at most 5 ms (or 64 records,
// or 64 KiB) and published as one message holding several records, one JSON
// record a line (NDJSON), so the server stores and acknowledges a batch
// rather than each delivery. A message holding a single record and no
// newline, as versions before batching wrote, reads the same way. Records
// still gathering when the process dies are lost; Close publishes them on a
// clean stop.
package deliverylog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/streams"
)

// Buckets and the stream of first-attempt successes.
const (
	Bucket         = "herald_deliveries"
	ProgressBucket = "herald_progress"
	RejectedBucket = "herald_rejected"
	Stream         = "HERALD_LOG"

	kvStream      = "KV_" + Bucket
	subjectPrefix = "herald.log."
)

// DefaultRetention is how long a record is kept after its last change.
const DefaultRetention = 7 * 24 * time.Hour

// Config is what a Log needs. JetStream is required.
type Config struct {
	JetStream jetstream.JetStream
	Retention time.Duration // default 7 days; at least 1 hour
	Replicas  int           // default 1
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.JetStream == nil {
		return errors.New("deliverylog: JetStream is required")
	}
	if c.Retention != 0 && c.Retention < time.Hour {
		return fmt.Errorf("deliverylog: retention must be at least 1h, got %s", c.Retention)
	}
	return nil
}

// Log reads and writes delivery records. It is safe for concurrent use.
type Log struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	progress jetstream.KeyValue
	rejected jetstream.KeyValue

	// The success records not yet published (see Succeeded). mu guards
	// pending, size, closed and lost; nothing is published while it is
	// held.
	mu      sync.Mutex
	pending map[string]*batch // by subject
	size    int               // bytes in pending
	closed  bool              // Close has begun: Succeeded publishes at once
	lost    error             // a failed background publish, not yet reported

	kick      chan struct{} // a record is pending where none was
	stop      chan struct{} // closed by Close
	stopped   chan struct{} // closed when the flusher returns
	closeOnce sync.Once
}

// Batching of the success log: a subject's records are published as one
// message when there are batchRecords of them or batchBytes, and at the
// latest batchInterval after the first.
const (
	batchRecords  = 64
	batchBytes    = 64 << 10
	batchInterval = 5 * time.Millisecond
	// maxPending bounds the bytes waiting across subjects: past it,
	// Succeeded publishes everything itself.
	maxPending = 4 << 20
)

// batch is the success records waiting on one subject.
type batch struct {
	subject string
	data    []byte // the records, newline-separated, no newline at the end
	n       int    // records in data
	hint    int    // the capacity to give the next data
	idle    bool   // nothing appended since the last flush
}

// Open creates the buckets and the success log if needed and starts the
// goroutine that publishes the pending success records; Close stops it.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	l := &Log{
		js:      cfg.JetStream,
		pending: make(map[string]*batch),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	var err error
	l.kv, err = streams.OpenBucket(ctx, cfg.JetStream, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "herald: deliveries and their attempts by <cloud>.<subscription>.<delivery>",
		History:     1,
		TTL:         cfg.Retention,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	l.progress, err = streams.OpenBucket(ctx, cfg.JetStream, jetstream.KeyValueConfig{
		Bucket:      ProgressBucket,
		Description: "herald: newest progress event delivered per <cloud>.<subscription>.<encoding>",
		History:     1,
		TTL:         48 * time.Hour,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	l.rejected, err = streams.OpenBucket(ctx, cfg.JetStream, jetstream.KeyValueConfig{
		Bucket:      RejectedBucket,
		Description: "herald: events refused at fan-out, by events-stream sequence",
		History:     1,
		TTL:         cfg.Retention,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	err = streams.Retry(ctx, func(ctx context.Context) error {
		_, err := cfg.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        Stream,
			Description: "herald: deliveries that succeeded at their first attempt, by herald.log.<cloud>.<subscription>",
			Subjects:    []string{subjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.Retention,
			Storage:     jetstream.FileStorage,
			Replicas:    max(cfg.Replicas, 1),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("deliverylog: create %s: %w", Stream, err)
	}
	go l.flusher()
	return l, nil
}

// Rejected is a message on herald.events.* that fan-out refused: published
// straight onto NATS with a bad envelope, an unknown type or invalid data.
type Rejected struct {
	Sequence uint64    `json:"sequence"` // in the events stream
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	Size     int       `json:"size"`
	At       time.Time `json:"at"`
}

// RecordRejected keeps r for the log's retention, under its sequence.
func (l *Log) RecordRejected(ctx context.Context, r Rejected) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = l.rejected.Put(ctx, strconv.FormatUint(r.Sequence, 10), b)
	return err
}

// RejectedEvent returns the record of the events-stream message seq, or
// herald.ErrNotFound.
func (l *Log) RejectedEvent(ctx context.Context, seq uint64) (Rejected, error) {
	var r Rejected
	e, err := l.rejected.Get(ctx, strconv.FormatUint(seq, 10))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, herald.ErrNotFound
	}
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(e.Value(), &r)
	return r, err
}

func key(cloud, subID, id string) string { return cloud + "." + subID + "." + id }

// Get returns the record of delivery id of subscription subID that has
// retry state, or herald.ErrNotFound: a delivery that succeeded at its
// first attempt is not there (see Lookup). It is what a retry reads.
func (l *Log) Get(ctx context.Context, cloud, subID, id string) (herald.Delivery, error) {
	if !herald.ValidCloud(cloud) || !herald.ValidObjectID(subID) || !herald.ValidObjectID(id) {
		return herald.Delivery{}, herald.ErrNotFound
	}
	e, err := l.kv.Get(ctx, key(cloud, subID, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return herald.Delivery{}, herald.ErrNotFound
	}
	if err != nil {
		return herald.Delivery{}, fmt.Errorf("deliverylog: get %s: %w: %v", id, herald.ErrUnavailable, err)
	}
	return decode(e.Value())
}

// Lookup returns the record of delivery id of subscription subID, whatever
// its state, or herald.ErrNotFound.
func (l *Log) Lookup(ctx context.Context, cloud, subID, id string) (herald.Delivery, error) {
	if !herald.ValidCloud(cloud) || !herald.ValidObjectID(subID) || !herald.ValidObjectID(id) {
		return herald.Delivery{}, herald.ErrNotFound
	}
	if d, err := l.Get(ctx, cloud, subID, id); !errors.Is(err, herald.ErrNotFound) {
		return d, err
	}
	return l.findSuccess(ctx, subjectPrefix+cloud+"."+subID, id)
}

// Find returns the record of delivery id in cloud, whatever its
// subscription and state, or herald.ErrNotFound.
func (l *Log) Find(ctx context.Context, cloud, id string) (herald.Delivery, error) {
	if !herald.ValidCloud(cloud) || !herald.ValidObjectID(id) {
		return herald.Delivery{}, herald.ErrNotFound
	}
	page, err := l.scan(ctx, kvStream, "$KV."+Bucket+"."+cloud+".*."+id, position{}, 1, nil)
	if err != nil {
		return herald.Delivery{}, err
	}
	if len(page.recs) > 0 {
		return page.recs[0], nil
	}
	return l.findSuccess(ctx, subjectPrefix+cloud+".*", id)
}

// findChunk is how many stream sequences (messages, each of one record or
// a batch) findSuccess reads at a time, going back from the newest.
const findChunk = 50_000

// findSuccess looks for delivery id on subject of the success log, newest
// first: a chunk of the stream at a time, from its end back, each message
// a record at a time.
func (l *Log) findSuccess(ctx context.Context, subject, id string) (herald.Delivery, error) {
	st, err := l.js.Stream(ctx, Stream)
	if err != nil {
		return herald.Delivery{}, fmt.Errorf("deliverylog: find %s: %w: %v", id, herald.ErrUnavailable, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return herald.Delivery{}, fmt.Errorf("deliverylog: find %s: %w: %v", id, herald.ErrUnavailable, err)
	}
	first, end := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return herald.Delivery{}, herald.ErrNotFound
	}
	// A record starts with its id (Delivery's first field): match the
	// bytes before decoding anything.
	needle := []byte(`{"id":"` + id + `"`)
	for end >= first {
		start := first
		if end-first >= findChunk {
			start = end - findChunk + 1
		}
		var found *herald.Delivery
		_, err := l.read(ctx, Stream, subject, start-1, findChunk, func(seq uint64, data []byte) bool {
			if seq > end {
				return false
			}
			if !bytes.Contains(data, needle) {
				return true
			}
			for _, rec := range records(data) {
				if bytes.HasPrefix(rec, needle) {
					if d, err := decode(rec); err == nil {
						found = &d // the newest copy in the chunk wins
					}
				}
			}
			return true
		})
		if err != nil {
			return herald.Delivery{}, err
		}
		if found != nil {
			return *found, nil
		}
		if start == first || ctx.Err() != nil {
			break
		}
		end = start - 1
	}
	if err := ctx.Err(); err != nil {
		return herald.Delivery{}, err
	}
	return herald.Delivery{}, herald.ErrNotFound
}

// records yields the records of a message of the success log (or a value
// of the bucket) in order, with their index in it: one JSON record a line.
// A message written before batching holds one record and no newline; empty
// lines are skipped and not counted.
func records(data []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		for i := 0; len(data) > 0; {
			var rec []byte
			rec, data, _ = bytes.Cut(data, newline)
			if len(rec) == 0 {
				continue
			}
			if !yield(i, rec) {
				return
			}
			i++
		}
	}
}

func decode(b []byte) (herald.Delivery, error) {
	var d herald.Delivery
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("deliverylog: decode record: %w", err)
	}
	return d, nil
}

// Put stores d and waits until it is stored.
func (l *Log) Put(ctx context.Context, d *herald.Delivery) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("deliverylog: encode: %w", err)
	}
	if _, err := l.kv.Put(ctx, key(d.Cloud, d.SubscriptionID, d.ID), b); err != nil {
		return fmt.Errorf("deliverylog: put %s: %w", d.ID, err)
	}
	return nil
}

// PutAsync stores d without waiting: for records whose loss costs only a
// log line (a success), never for the count a retry depends on.
func (l *Log) PutAsync(d *herald.Delivery) error {
	return l.publishAsync("$KV."+Bucket+"."+key(d.Cloud, d.SubscriptionID, d.ID), d)
}

// Succeeded appends d, a delivery that succeeded at its first attempt and
// has no record yet, to the success log without waiting: the record joins
// its subscription's batch, published within 5 ms (sooner when the batch is
// full) as one message with the others. As with PutAsync, a record lost
// costs only a log line: a crash loses at most the last 5 ms of them.
//
// The error is an encoding error, or that of publishing: this record's,
// or an earlier batch's that the background flusher could not publish.
// After Close, each record is published at once, alone.
func (l *Log) Succeeded(d *herald.Delivery) error {
	e := encoders.Get().(*encoder)
	defer e.release()
	e.buf.Reset()
	if err := e.enc.Encode(d); err != nil { // Marshal's bytes and a newline
		return fmt.Errorf("deliverylog: encode: %w", err)
	}
	rec := bytes.TrimSuffix(e.buf.Bytes(), newline)
	e.subject = append(append(append(append(e.subject[:0], subjectPrefix...), d.Cloud...), '.'), d.SubscriptionID...)

	var full, over *nats.Msg
	var all []*nats.Msg
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.publish(&nats.Msg{Subject: string(e.subject), Data: bytes.Clone(rec)})
	}
	b := l.pending[string(e.subject)]
	if b == nil {
		b = &batch{subject: string(e.subject)}
		l.pending[b.subject] = b
	}
	if b.n > 0 && len(b.data)+1+len(rec) > batchBytes {
		over = l.take(b) // rec would not fit
	}
	if l.size == 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	if b.data == nil {
		b.data = make([]byte, 0, max(b.hint, len(rec)))
	}
	before := len(b.data)
	if b.n > 0 {
		b.data = append(b.data, '\n')
	}
	b.data = append(b.data, rec...)
	b.n++
	b.idle = false
	l.size += len(b.data) - before
	if b.n >= batchRecords || len(b.data) >= batchBytes {
		full = l.take(b)
	}
	if l.size > maxPending {
		all = l.takeAll()
	}
	lost := l.lost
	l.lost = nil
	l.mu.Unlock()

	err := errors.Join(lost, l.publish(over), l.publish(full))
	for _, m := range all {
		err = errors.Join(err, l.publish(m))
	}
	return err
}

var newline = []byte{'\n'}

// encoder holds the buffers Succeeded encodes a record and its subject in,
// kept from one call to the next.
type encoder struct {
	buf     bytes.Buffer
	enc     *json.Encoder
	subject []byte
}

var encoders = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

func (e *encoder) release() {
	if e.buf.Cap() <= batchBytes { // not the odd huge record's buffer
		encoders.Put(e)
	}
}

// take returns b's records as a message and empties b. l.mu is held.
func (l *Log) take(b *batch) *nats.Msg {
	m := &nats.Msg{Subject: b.subject, Data: b.data}
	l.size -= len(b.data)
	// The client keeps the message until it is acknowledged, to resend it
	// if no server answered: its buffer cannot be reused, the next
	// batch gets a new one.
	b.hint = min(cap(b.data), batchBytes)
	b.data, b.n = nil, 0
	return m
}

// takeAll returns every pending batch as a message, and forgets the
// subjects that had nothing for a whole interval. l.mu is held.
func (l *Log) takeAll() []*nats.Msg {
	var msgs []*nats.Msg
	for subject, b := range l.pending {
		switch {
		case b.n > 0:
			msgs = append(msgs, l.take(b))
			b.idle = true
		case b.idle:
			delete(l.pending, subject)
		default:
			b.idle = true
		}
	}
	return msgs
}

// publish publishes m (nothing when nil) without waiting for its
// acknowledgement.
func (l *Log) publish(m *nats.Msg) error {
	if m == nil {
		return nil
	}
	if _, err := l.js.PublishMsgAsync(m); err != nil {
		return fmt.Errorf("deliverylog: %d success records lost: %w", bytes.Count(m.Data, newline)+1, err)
	}
	return nil
}

// flush publishes every pending batch and reports whether there was one.
func (l *Log) flush() (bool, error) {
	l.mu.Lock()
	msgs := l.takeAll()
	l.mu.Unlock()
	var err error
	for _, m := range msgs {
		err = errors.Join(err, l.publish(m))
	}
	return len(msgs) > 0, err
}

// flusher publishes the pending batches every batchInterval while there
// are any, and sleeps while there are none, until Close.
func (l *Log) flusher() {
	defer close(l.stopped)
	tick := time.NewTicker(batchInterval)
	defer tick.Stop()
	for {
		tick.Stop()
		select {
		case <-l.kick:
		case <-l.stop:
			return
		}
		tick.Reset(batchInterval)
		for busy := true; busy; {
			select {
			case <-tick.C:
			case <-l.stop:
				return
			}
			var err error
			busy, err = l.flush()
			if err != nil {
				l.mu.Lock()
				if l.lost == nil { // the first says enough
					l.lost = err
				}
				l.mu.Unlock()
			}
		}
	}
}

// Flush publishes the pending success records and waits, until ctx ends,
// for JetStream to acknowledge every asynchronous publish made through the
// Log's JetStream handle: the success records, PutAsync, MarkProgress and
// those of whoever shares the handle.
func (l *Log) Flush(ctx context.Context) error {
	_, err := l.flush()
	l.mu.Lock()
	err = errors.Join(l.lost, err)
	l.lost = nil
	l.mu.Unlock()
	select {
	case <-l.js.PublishAsyncComplete():
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("deliverylog: waiting for acknowledgements: %w", ctx.Err()))
	}
	return err
}

// Close stops the background flusher, then flushes (see Flush). Call it
// once nothing calls Succeeded any more and before the NATS connection
// closes; a Succeeded after it publishes its record at once, alone. Calls
// after the first do nothing and return nil.
func (l *Log) Close(ctx context.Context) error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stop)
		<-l.stopped
		err = l.Flush(ctx)
	})
	return err
}

func (l *Log) publishAsync(subject string, d *herald.Delivery) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("deliverylog: encode: %w", err)
	}
	_, err = l.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: b})
	return err
}

// Listing limits.
const (
	DefaultLimit = 50
	MaxLimit     = herald.MaxDeliveryPage
	// maxScan bounds the records one List call reads in each store (the
	// messages too, as a message holds one record or more), so a
	// selective status filter over a large log answers in bounded time
	// with a cursor.
	maxScan = 20_000
)

// List returns the records of cloud that match f, in about the order they
// were last changed, oldest first: the records with retry state and the
// first-attempt successes, merged by time. The successes come in the
// order of the success log, where those of one subscription gathered in the
// same few milliseconds (see Succeeded) follow one another.
func (l *Log) List(ctx context.Context, cloud string, f herald.DeliveryFilter) (herald.DeliveryPage, error) {
	if !herald.ValidCloud(cloud) {
		return herald.DeliveryPage{}, herald.ErrNotFound
	}
	if f.Status != "" && !herald.ValidDeliveryStatus(f.Status) {
		return herald.DeliveryPage{}, herald.Invalid("status", "must be pending, succeeded, failed or superseded")
	}
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	if f.Limit > MaxLimit {
		return herald.DeliveryPage{}, herald.Invalid("limit", fmt.Sprintf("must be between 1 and %d", MaxLimit))
	}
	var after cursor
	if f.Cursor != "" {
		var ok bool
		if after, ok = parseCursor(f.Cursor); !ok {
			return herald.DeliveryPage{}, herald.Invalid("cursor", "is not a cursor this API returned")
		}
	}
	sub := "*"
	if f.SubscriptionID != "" {
		if !herald.ValidObjectID(f.SubscriptionID) {
			return herald.DeliveryPage{}, nil
		}
		sub = f.SubscriptionID
	}
	var keep func(*herald.Delivery) bool
	if f.Status != "" {
		keep = func(d *herald.Delivery) bool { return d.Status == f.Status }
	}
	kv, err := l.scan(ctx, kvStream, "$KV."+Bucket+"."+cloud+"."+sub+".*", position{seq: after.kv}, f.Limit, keep)
	if err != nil {
		return herald.DeliveryPage{}, err
	}
	ok := scanned{last: after.log, end: true}
	if f.Status == "" || f.Status == herald.StatusSucceeded {
		if ok, err = l.scan(ctx, Stream, subjectPrefix+cloud+"."+sub, after.log, f.Limit, keep); err != nil {
			return herald.DeliveryPage{}, err
		}
	}
	page := herald.DeliveryPage{Deliveries: make([]herald.Delivery, 0, min(f.Limit, len(kv.recs)+len(ok.recs)))}
	i, j := 0, 0
	for len(page.Deliveries) < f.Limit && (i < len(kv.recs) || j < len(ok.recs)) {
		if j == len(ok.recs) || (i < len(kv.recs) && !kv.recs[i].UpdatedAt.After(ok.recs[j].UpdatedAt)) {
			page.Deliveries = append(page.Deliveries, kv.recs[i])
			i++
		} else {
			page.Deliveries = append(page.Deliveries, ok.recs[j])
			j++
		}
	}
	if i == len(kv.recs) && kv.end && j == len(ok.recs) && ok.end {
		return page, nil
	}
	page.Cursor = cursor{kv: kv.resume(i, position{seq: after.kv}).seq, log: ok.resume(j, after.log)}.String()
	return page, nil
}

// cursor is where a listing goes on in each of the two stores: the last
// stream sequence read of the bucket, and the position in the success log.
type cursor struct {
	kv  uint64
	log position
}

// String is "<kv>.<log>", or "<kv>.<log>.<n>" when the first n records of
// the success log's message <log> were returned and not the others.
func (c cursor) String() string {
	s := strconv.FormatUint(c.kv, 10) + "." + strconv.FormatUint(c.log.seq, 10)
	if c.log.n > 0 {
		s += "." + strconv.Itoa(c.log.n)
	}
	return s
}

// parseCursor reads what String writes, "<kv>.<log>" from before the
// success log was batched, or a bare "<kv>" from before it existed.
func parseCursor(s string) (cursor, bool) {
	a, rest, _ := strings.Cut(s, ".")
	b, n, three := strings.Cut(rest, ".")
	var c cursor
	var err error
	if c.kv, err = strconv.ParseUint(a, 10, 64); err != nil {
		return cursor{}, false
	}
	if rest == "" {
		if strings.HasSuffix(s, ".") {
			return cursor{}, false
		}
		return c, true
	}
	if c.log.seq, err = strconv.ParseUint(b, 10, 64); err != nil {
		return cursor{}, false
	}
	if three {
		if c.log.n, err = strconv.Atoi(n); err != nil || c.log.n <= 0 || c.log.seq == 0 {
			return cursor{}, false
		}
	}
	return c, true
}

// position is a place in a stream: after its first n records of the
// message at seq, or after the whole of it when n is 0.
type position struct {
	seq uint64
	n   int
}

// scanned is what scan read from one store.
type scanned struct {
	recs []herald.Delivery
	at   []position // the position just after each of recs
	last position   // where the reading stopped
	end  bool       // nothing after last matches the subject
}

// resume is the position to continue after when the first n of s.recs
// were used: all of them means everything read, up to last.
func (s scanned) resume(n int, after position) position {
	switch {
	case n == len(s.recs):
		return s.last
	case n > 0:
		return s.at[n-1]
	}
	return after
}

// scan reads up to limit records kept by keep (nil: all) on subject of
// stream, in sequence order and, within a message, line order, from after
// on, reading at most maxScan records. The bucket keeps one value per key,
// so each live record comes once.
func (l *Log) scan(ctx context.Context, stream, subject string, after position, limit int, keep func(*herald.Delivery) bool) (scanned, error) {
	out := scanned{last: after}
	from := after.seq
	if after.n > 0 {
		from-- // read that message again, past its first n records
	}
	read := 0
	end, err := l.read(ctx, stream, subject, from, maxScan, func(seq uint64, data []byte) bool {
		skip, n := 0, 0
		if seq == after.seq {
			skip = after.n
		}
		for i, rec := range records(data) {
			n = i + 1
			if i < skip {
				continue
			}
			if len(out.recs) == limit || read == maxScan {
				out.last = position{seq, i} // some of the message is left
				return false
			}
			read++
			if d, err := decode(rec); err == nil && (keep == nil || keep(&d)) {
				out.recs = append(out.recs, d)
				out.at = append(out.at, position{seq, i + 1})
			}
		}
		if k := len(out.at) - 1; k >= 0 && out.at[k] == (position{seq, n}) {
			out.at[k] = position{seq: seq} // the message's last record
		}
		out.last = position{seq: seq}
		return len(out.recs) < limit && read < maxScan
	})
	out.end = end && out.last.n == 0
	return out, err
}

// read hands each record on subject of stream after sequence after to fn,
// in order, until fn returns false, limit were read or none is left; end
// reports the last. Delete and purge markers are skipped.
func (l *Log) read(ctx context.Context, stream, subject string, after uint64, limit int, fn func(seq uint64, data []byte) bool) (end bool, err error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := l.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return false, fmt.Errorf("deliverylog: read: %w: %v", herald.ErrUnavailable, err)
	}
	// The server would keep the consumer for minutes after its last use,
	// and a stream allows 1,000: reads as frequent as lookups must delete
	// theirs.
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = l.js.DeleteConsumer(dctx, stream, info.Name)
			cancel()
		}
	}()
	read := 0
	for {
		batch, err := cons.FetchNoWait(min(256, limit-read))
		if err != nil {
			return false, fmt.Errorf("deliverylog: read: %w: %v", herald.ErrUnavailable, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			read++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			last := meta.NumPending == 0
			more := true
			if msg.Headers().Get("KV-Operation") == "" {
				more = fn(meta.Sequence.Stream, msg.Data())
			}
			if last {
				return true, nil
			}
			if !more || read == limit {
				return false, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return false, fmt.Errorf("deliverylog: read: %w: %v", herald.ErrUnavailable, err)
		}
		if got == 0 || ctx.Err() != nil {
			return got == 0, ctx.Err()
		}
	}
}

// progressKey names the newest progress mark of an encoding at a
// subscription. Encoding ids are arbitrary strings, so they are not used
// as key tokens directly.
func progressKey(cloud, subID, encodingID string) string {
	return cloud + "." + subID + "." + strings.TrimPrefix(herald.DeliveryID(cloud, encodingID, subID), "msg_")
}

// MarkProgress records that the event with stream sequence seq, about
// encoding encodingID, reached subscription subID. Best effort.
func (l *Log) MarkProgress(cloud, subID, encodingID string, seq uint64) error {
	_, err := l.js.PublishMsgAsync(&nats.Msg{
		Subject: "$KV." + ProgressBucket + "." + progressKey(cloud, subID, encodingID),
		Data:    strconv.AppendUint(nil, seq, 10),
	})
	return err
}

// Superseded reports whether an event about encoding encodingID newer than
// seq has already reached subscription subID.
func (l *Log) Superseded(ctx context.Context, cloud, subID, encodingID string, seq uint64) (bool, error) {
	e, err := l.progress.Get(ctx, progressKey(cloud, subID, encodingID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	newest, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return false, nil
	}
	return newest > seq, nil
}
