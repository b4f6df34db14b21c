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
package deliverylog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
}

// Open creates the buckets if needed.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	l := &Log{js: cfg.JetStream}
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
	page, err := l.scan(ctx, kvStream, "$KV."+Bucket+"."+cloud+".*."+id, 0, 1, nil)
	if err != nil {
		return herald.Delivery{}, err
	}
	if len(page.recs) > 0 {
		return page.recs[0], nil
	}
	return l.findSuccess(ctx, subjectPrefix+cloud+".*", id)
}

// findChunk is how many stream sequences findSuccess reads at a time,
// going back from the newest.
const findChunk = 50_000

// findSuccess looks for delivery id on subject of the success log, newest
// first: a chunk of the stream at a time, from its end back.
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
			if bytes.HasPrefix(data, needle) {
				if d, err := decode(data); err == nil {
					found = &d // the newest copy in the chunk wins
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
// has no record yet, to the success log without waiting.
func (l *Log) Succeeded(d *herald.Delivery) error {
	return l.publishAsync(subjectPrefix+d.Cloud+"."+d.SubscriptionID, d)
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
	// maxScan bounds the records one List call reads, so a selective status
	// filter over a large log answers in bounded time with a cursor.
	maxScan = 20_000
)

// List returns the records of cloud that match f, in about the order they
// were last changed, oldest first: the records with retry state and the
// first-attempt successes, merged by time.
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
	kv, err := l.scan(ctx, kvStream, "$KV."+Bucket+"."+cloud+"."+sub+".*", after.kv, f.Limit, keep)
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
	page.Cursor = cursor{kv: kv.resume(i, after.kv), log: ok.resume(j, after.log)}.String()
	return page, nil
}

// cursor is where a listing goes on in each of the two stores: the last
// stream sequence read of the bucket and of the success log.
type cursor struct{ kv, log uint64 }

func (c cursor) String() string {
	return strconv.FormatUint(c.kv, 10) + "." + strconv.FormatUint(c.log, 10)
}

// parseCursor reads "<kv>.<log>", or a bare "<kv>" from before the success
// log existed.
func parseCursor(s string) (cursor, bool) {
	a, b, two := strings.Cut(s, ".")
	kv, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return cursor{}, false
	}
	c := cursor{kv: kv}
	if two {
		if c.log, err = strconv.ParseUint(b, 10, 64); err != nil {
			return cursor{}, false
		}
	}
	return c, true
}

// scanned is what scan read from one store.
type scanned struct {
	recs []herald.Delivery
	seqs []uint64 // the stream sequence of each of recs
	last uint64   // the last sequence read
	end  bool     // nothing after last matches the subject
}

// resume is the sequence to continue after when the first n of s.recs were
// used: all of them means everything read, up to last.
func (s scanned) resume(n int, after uint64) uint64 {
	switch {
	case n == len(s.recs):
		return s.last
	case n > 0:
		return s.seqs[n-1]
	}
	return after
}

// scan reads up to limit records kept by keep (nil: all) on subject of
// stream, in sequence order from after+1, reading at most maxScan. The
// bucket keeps one value per key, so each live record comes once.
func (l *Log) scan(ctx context.Context, stream, subject string, after uint64, limit int, keep func(*herald.Delivery) bool) (scanned, error) {
	out := scanned{last: after}
	end, err := l.read(ctx, stream, subject, after, maxScan, func(seq uint64, data []byte) bool {
		out.last = seq
		if d, err := decode(data); err == nil && (keep == nil || keep(&d)) {
			out.recs = append(out.recs, d)
			out.seqs = append(out.seqs, seq)
		}
		return len(out.recs) < limit
	})
	out.end = end
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
