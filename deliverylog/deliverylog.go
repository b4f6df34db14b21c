// Package deliverylog keeps every delivery and its attempts in JetStream KV:
// the delivery log the API lists, the dead-letter log of deliveries that
// gave up, and the durable attempt count that retries read, so a dispatcher
// killed or a server restarted never resets a delivery to attempt 1.
//
// Records live in the bucket herald_deliveries under
// "<cloud>.<subscription id>.<delivery id>", one per delivery, replaced at
// each attempt. Records expire Retention after their last change.
package deliverylog

import (
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

// Buckets.
const (
	Bucket         = "herald_deliveries"
	ProgressBucket = "herald_progress"
	RejectedBucket = "herald_rejected"
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

// Get returns the record of delivery id of subscription subID, or
// herald.ErrNotFound.
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

// Find returns the record of delivery id in cloud, whatever its
// subscription, or herald.ErrNotFound.
func (l *Log) Find(ctx context.Context, cloud, id string) (herald.Delivery, error) {
	if !herald.ValidCloud(cloud) || !herald.ValidObjectID(id) {
		return herald.Delivery{}, herald.ErrNotFound
	}
	page, err := l.scan(ctx, "$KV."+Bucket+"."+cloud+".*."+id, 0, 1, nil)
	if err != nil {
		return herald.Delivery{}, err
	}
	if len(page.Deliveries) == 0 {
		return herald.Delivery{}, herald.ErrNotFound
	}
	return page.Deliveries[0], nil
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
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("deliverylog: encode: %w", err)
	}
	_, err = l.js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + Bucket + "." + key(d.Cloud, d.SubscriptionID, d.ID), Data: b})
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

// List returns the records of cloud that match f, least recently changed
// first.
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
	var after uint64
	if f.Cursor != "" {
		n, err := strconv.ParseUint(f.Cursor, 10, 64)
		if err != nil {
			return herald.DeliveryPage{}, herald.Invalid("cursor", "is not a cursor this API returned")
		}
		after = n
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
	return l.scan(ctx, "$KV."+Bucket+"."+cloud+"."+sub+".*", after, f.Limit, keep)
}

// scan reads the bucket's stream in sequence order from after+1 through an
// ordered consumer filtered on subject: since the bucket keeps one value
// per key, each live record comes once.
func (l *Log) scan(ctx context.Context, subject string, after uint64, limit int, keep func(*herald.Delivery) bool) (herald.DeliveryPage, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := l.js.OrderedConsumer(ctx, "KV_"+Bucket, cfg)
	if err != nil {
		return herald.DeliveryPage{}, fmt.Errorf("deliverylog: list: %w: %v", herald.ErrUnavailable, err)
	}
	page := herald.DeliveryPage{Deliveries: []herald.Delivery{}}
	scanned := 0
	for {
		batch, err := cons.Fetch(min(256, maxScan-scanned), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return herald.DeliveryPage{}, fmt.Errorf("deliverylog: list: %w: %v", herald.ErrUnavailable, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			scanned++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			last := meta.NumPending == 0
			if op := msg.Headers().Get("KV-Operation"); op == "" {
				d, err := decode(msg.Data())
				if err == nil && (keep == nil || keep(&d)) {
					page.Deliveries = append(page.Deliveries, d)
				}
			}
			if len(page.Deliveries) == limit || scanned == maxScan {
				if !last {
					page.Cursor = strconv.FormatUint(meta.Sequence.Stream, 10)
				}
				return page, nil
			}
			if last {
				return page, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return herald.DeliveryPage{}, fmt.Errorf("deliverylog: list: %w: %v", herald.ErrUnavailable, err)
		}
		if got == 0 || ctx.Err() != nil {
			return page, ctx.Err()
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
