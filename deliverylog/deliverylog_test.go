package deliverylog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/internal/poll"
	"github.com/herald-webhooks/herald/natsserver/natstest"
)

func testLog(t testing.TB) *Log {
	t.Helper()
	js, _ := natstest.JetStream(t)
	l, err := Open(context.Background(), Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func record(sub string, n int, status string, at time.Time) *herald.Delivery {
	ev := fmt.Sprintf("ev-%d", n)
	return &herald.Delivery{
		ID: herald.DeliveryID("acme", ev, sub), Cloud: "acme", SubscriptionID: sub, EventID: ev, EventType: "video-created",
		Status: status, Attempts: []herald.Attempt{{Number: 1, At: at, StatusCode: 200}}, CreatedAt: at, UpdatedAt: at,
	}
}

// flush publishes the pending appends and waits until they are stored.
func flush(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSuccessesAndRetryState: first-attempt successes go to the success
// log, records with retry state to the bucket; Lookup and Find see both,
// Get only the bucket, and List merges them by time, a page at a time.
func TestSuccessesAndRetryState(t *testing.T) {
	l := testLog(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var want []string // ids in the order List must give them
	for n := range 7 {
		at := t0.Add(time.Duration(n) * time.Second)
		sub := "sub_A"
		if n%3 == 2 {
			sub = "sub_B"
		}
		d := record(sub, n, herald.StatusSucceeded, at)
		var err error
		switch n {
		case 1:
			d.Status = herald.StatusPending
			err = l.Put(ctx, d)
		case 4:
			d.Status = herald.StatusFailed
			err = l.Put(ctx, d)
		default:
			err = l.Succeeded(d)
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, d.ID)
		// A second apart, as their times say: batches of their own. (A
		// batch holds one subscription's records of a few milliseconds, so
		// successes of several subscriptions in the same milliseconds list
		// a batch at a time.)
		flush(t, l)
	}

	succ := record("sub_A", 0, "", t0)
	if _, err := l.Get(ctx, "acme", "sub_A", succ.ID); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("Get of a first-attempt success: %v, want not found (it has no retry state)", err)
	}
	if d, err := l.Lookup(ctx, "acme", "sub_A", succ.ID); err != nil || d.Status != herald.StatusSucceeded {
		t.Errorf("Lookup of a success: %+v, %v", d, err)
	}
	if d, err := l.Find(ctx, "acme", succ.ID); err != nil || d.SubscriptionID != "sub_A" {
		t.Errorf("Find of a success: %+v, %v", d, err)
	}
	pend := record("sub_A", 1, "", t0)
	if d, err := l.Find(ctx, "acme", pend.ID); err != nil || d.Status != herald.StatusPending {
		t.Errorf("Find of a pending delivery: %+v, %v", d, err)
	}
	if _, err := l.Lookup(ctx, "acme", "sub_B", succ.ID); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("Lookup under another subscription: %v, want not found", err)
	}
	if _, err := l.Find(ctx, "other", succ.ID); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("Find in another cloud: %v, want not found", err)
	}

	// Every page of 2, in time order, both stores merged.
	got := listAll(t, l, herald.DeliveryFilter{Limit: 2}, nil)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listing\n got %v\nwant %v", got, want)
	}

	for _, c := range []struct {
		f    herald.DeliveryFilter
		want int
	}{
		{herald.DeliveryFilter{Status: herald.StatusSucceeded}, 5},
		{herald.DeliveryFilter{Status: herald.StatusFailed}, 1},
		{herald.DeliveryFilter{Status: herald.StatusPending, SubscriptionID: "sub_A"}, 1},
		{herald.DeliveryFilter{SubscriptionID: "sub_B"}, 2},
		{herald.DeliveryFilter{SubscriptionID: "sub_B", Status: herald.StatusFailed}, 0},
	} {
		page, err := l.List(ctx, "acme", c.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Deliveries) != c.want || page.Cursor != "" {
			t.Errorf("%+v: %d deliveries (cursor %q), want %d", c.f, len(page.Deliveries), page.Cursor, c.want)
		}
	}
	var verr *herald.ValidationError
	if _, err := l.List(ctx, "acme", herald.DeliveryFilter{Cursor: "12.x"}); !errors.As(err, &verr) {
		t.Errorf("bad cursor: %v, want invalid", err)
	}
	if page, err := l.List(ctx, "acme", herald.DeliveryFilter{Cursor: "3"}); err != nil || len(page.Deliveries) == 0 {
		t.Errorf("a bare bucket cursor: %d deliveries, %v", len(page.Deliveries), err)
	}
}

// TestFindGoesBackChunkByChunk: a success older than one chunk of the
// success log is still found. The chunk is counted in messages: the
// filler is written a record a message, as before batching.
func TestFindGoesBackChunkByChunk(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a chunk and more")
	}
	l := testLog(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	old := record("sub_A", 0, herald.StatusSucceeded, t0)
	if err := l.Succeeded(old); err != nil {
		t.Fatal(err)
	}
	flush(t, l)
	for n := 1; n <= findChunk+10; n++ {
		b, err := json.Marshal(record("sub_B", n, herald.StatusSucceeded, t0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.js.PublishMsgAsync(&nats.Msg{Subject: subjectPrefix + "acme.sub_B", Data: b}); err != nil {
			t.Fatal(err)
		}
		if n%5000 == 0 {
			flush(t, l)
		}
	}
	flush(t, l)
	if d, err := l.Find(ctx, "acme", old.ID); err != nil || d.ID != old.ID {
		t.Fatalf("Find: %+v, %v", d, err)
	}
	if _, err := l.Find(ctx, "acme", record("sub_C", 1, "", t0).ID); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("Find of a delivery never made: %v", err)
	}
}

// TestReadsLeaveNoConsumers: every lookup that reads the success log
// removes its consumer, so lookups beyond the stream's limit of 1,000
// consumers keep working.
func TestReadsLeaveNoConsumers(t *testing.T) {
	l := testLog(t)
	ctx := context.Background()
	if err := l.Succeeded(record("sub_A", 0, herald.StatusSucceeded, time.Now())); err != nil {
		t.Fatal(err)
	}
	flush(t, l)
	missing := record("sub_A", 1, "", time.Now()).ID
	for i := range 1100 {
		if _, err := l.Lookup(ctx, "acme", "sub_A", missing); !errors.Is(err, herald.ErrNotFound) {
			t.Fatalf("lookup %d: %v, want not found", i, err)
		}
	}
	st, err := l.js.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s after the lookups", info.State.Consumers, Stream)
	}
}

// appendMessage publishes recs on sub's success log as one message, one
// record a line, the way Succeeded batches them (a single record: the way
// versions before batching wrote it), and returns its stream sequence.
func appendMessage(t *testing.T, l *Log, sub string, recs ...*herald.Delivery) uint64 {
	t.Helper()
	var lines [][]byte
	for _, d := range recs {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, b)
	}
	ack, err := l.js.Publish(context.Background(), subjectPrefix+"acme."+sub, bytes.Join(lines, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// logMessages returns the messages of the success log, each as its lines.
func logMessages(t *testing.T, l *Log) [][]string {
	t.Helper()
	var msgs [][]string
	_, err := l.read(context.Background(), Stream, subjectPrefix+">", 0, 1_000_000, func(_ uint64, data []byte) bool {
		msgs = append(msgs, strings.Split(string(data), "\n"))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestSucceededBatches: records of one subscription go out as few
// messages of at most 64 lines, each a record Lookup and Find see; Close
// publishes what is pending, a second Close is harmless, and a record
// after Close is published on its own.
func TestSucceededBatches(t *testing.T) {
	l := testLog(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	var all []*herald.Delivery
	for n := range 100 {
		d := record("sub_A", n, herald.StatusSucceeded, t0.Add(time.Duration(n)*time.Millisecond))
		if n%10 == 9 {
			d = record("sub_B", n, herald.StatusSucceeded, t0.Add(time.Duration(n)*time.Millisecond))
		}
		if err := l.Succeeded(d); err != nil {
			t.Fatal(err)
		}
		all = append(all, d)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	msgs := logMessages(t, l)
	lines := 0
	for _, m := range msgs {
		if len(m) > batchRecords {
			t.Errorf("a message of %d records, want at most %d", len(m), batchRecords)
		}
		lines += len(m)
	}
	t.Logf("100 records in %d messages", len(msgs))
	if lines != 100 || len(msgs) > 20 {
		t.Errorf("100 records in %d messages of %d lines in all, want 100 in a few messages", len(msgs), lines)
	}
	for _, d := range all {
		if got, err := l.Lookup(ctx, "acme", d.SubscriptionID, d.ID); err != nil || got.ID != d.ID || !got.UpdatedAt.Equal(d.UpdatedAt) {
			t.Fatalf("Lookup %s: %+v, %v", d.ID, got, err)
		}
		if got, err := l.Find(ctx, "acme", d.ID); err != nil || got.ID != d.ID {
			t.Fatalf("Find %s: %+v, %v", d.ID, got, err)
		}
	}

	if err := l.Close(closeCtx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	late := record("sub_A", 100, herald.StatusSucceeded, t0)
	if err := l.Succeeded(late); err != nil {
		t.Fatalf("Succeeded after Close: %v", err)
	}
	flush(t, l)
	if n := len(logMessages(t, l)); n != len(msgs)+1 {
		t.Errorf("%d messages after one more record, want %d", n, len(msgs)+1)
	}
	if _, err := l.Lookup(ctx, "acme", "sub_A", late.ID); err != nil {
		t.Errorf("Lookup of the record after Close: %v", err)
	}
}

// TestSucceededConcurrent: records appended from many goroutines at once
// are each stored once.
func TestSucceededConcurrent(t *testing.T) {
	l := testLog(t)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for n := range each {
				sub := fmt.Sprintf("sub_%d", n%3)
				if err := l.Succeeded(record(sub, g*each+n, herald.StatusSucceeded, time.Now())); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	msgs := logMessages(t, l)
	for _, m := range msgs {
		for _, line := range m {
			d, err := decode([]byte(line))
			if err != nil {
				t.Fatal(err)
			}
			if seen[d.ID] {
				t.Fatalf("%s stored twice", d.ID)
			}
			seen[d.ID] = true
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d records stored, want %d", len(seen), goroutines*each)
	}
	t.Logf("%d records in %d messages", len(seen), len(msgs))
}

// TestSucceededFlushesWithinInterval: a lone record is published by the
// background flusher, without Flush.
func TestSucceededFlushesWithinInterval(t *testing.T) {
	l := testLog(t)
	d := record("sub_A", 0, herald.StatusSucceeded, time.Now())
	if err := l.Succeeded(d); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		_, err := l.Lookup(context.Background(), "acme", "sub_A", d.ID)
		return err
	})
}

// TestLookupTakesNewestLine: of two copies of a record in one message, the
// later line is the newer and wins.
func TestLookupTakesNewestLine(t *testing.T) {
	l := testLog(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	older, newer := record("sub_A", 1, herald.StatusSucceeded, t0), record("sub_A", 1, herald.StatusSucceeded, t0)
	newer.EventSequence = 2
	appendMessage(t, l, "sub_A", record("sub_A", 0, herald.StatusSucceeded, t0), older, newer, record("sub_A", 2, herald.StatusSucceeded, t0))
	if d, err := l.Lookup(ctx, "acme", "sub_A", newer.ID); err != nil || d.EventSequence != 2 {
		t.Errorf("Lookup: %+v, %v; want the later line", d, err)
	}
	if d, err := l.Find(ctx, "acme", newer.ID); err != nil || d.EventSequence != 2 {
		t.Errorf("Find: %+v, %v; want the later line", d, err)
	}
}

// TestListPagesThroughBatches: single-record messages (as written before
// batching), multi-record ones and bucket records list in order at any
// page size, each once, with cursors inside messages; a cursor of the
// older "<kv>.<log>" form still resumes after its message.
func TestListPagesThroughBatches(t *testing.T) {
	l := testLog(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	n := 0
	next := func(sub string) *herald.Delivery {
		d := record(sub, n, herald.StatusSucceeded, t0.Add(time.Duration(n)*time.Second))
		n++
		return d
	}
	var want []*herald.Delivery
	add := func(sub string, k int) []*herald.Delivery {
		var recs []*herald.Delivery
		for range k {
			recs = append(recs, next(sub))
		}
		want = append(want, recs...)
		return recs
	}
	old := appendMessage(t, l, "sub_A", add("sub_A", 1)...)
	appendMessage(t, l, "sub_A", add("sub_A", 5)...)
	failed := add("sub_A", 1)[0]
	failed.Status = herald.StatusFailed
	if err := l.Put(ctx, failed); err != nil {
		t.Fatal(err)
	}
	appendMessage(t, l, "sub_B", add("sub_B", 3)...)
	appendMessage(t, l, "sub_A", add("sub_A", 1)...)
	appendMessage(t, l, "sub_A", add("sub_A", 4)...)
	ids := func(ds []*herald.Delivery) []string {
		var s []string
		for _, d := range ds {
			s = append(s, d.ID)
		}
		return s
	}

	for _, limit := range []int{1, 2, 3, 4, 50} {
		t.Run(fmt.Sprintf("limit %d lists each once, in order", limit), func(t *testing.T) {
			inside := 0
			got := listAll(t, l, herald.DeliveryFilter{Limit: limit}, func(page herald.DeliveryPage) {
				if len(page.Deliveries) > limit || (len(page.Deliveries) < limit && page.Cursor != "") {
					t.Fatalf("page of %d with cursor %q, limit %d", len(page.Deliveries), page.Cursor, limit)
				}
				if strings.Count(page.Cursor, ".") == 2 {
					inside++
				}
			})
			if !slices.Equal(got, ids(want)) {
				t.Errorf("listing\n got %v\nwant %v", got, ids(want))
			}
			if limit < 5 && inside == 0 {
				t.Errorf("no cursor pointed inside a message")
			}
		})
	}

	t.Run("a subscription's successes page inside its messages", func(t *testing.T) {
		got := listAll(t, l, herald.DeliveryFilter{SubscriptionID: "sub_A", Status: herald.StatusSucceeded, Limit: 3}, nil)
		var wantA []*herald.Delivery
		for _, d := range want {
			if d.SubscriptionID == "sub_A" && d.Status == herald.StatusSucceeded {
				wantA = append(wantA, d)
			}
		}
		if !slices.Equal(got, ids(wantA)) {
			t.Errorf("listing\n got %v\nwant %v", got, ids(wantA))
		}
	})

	t.Run("an old cursor resumes after its message", func(t *testing.T) {
		page, err := l.List(ctx, "acme", herald.DeliveryFilter{Status: herald.StatusSucceeded, Cursor: fmt.Sprintf("0.%d", old)})
		if err != nil {
			t.Fatal(err)
		}
		var wantOK []*herald.Delivery
		for _, d := range want[1:] {
			if d.Status == herald.StatusSucceeded {
				wantOK = append(wantOK, d)
			}
		}
		var got []*herald.Delivery
		for i := range page.Deliveries {
			got = append(got, &page.Deliveries[i])
		}
		if !slices.Equal(ids(got), ids(wantOK)) || page.Cursor != "" {
			t.Errorf("listing\n got %v (cursor %q)\nwant %v", ids(got), page.Cursor, ids(wantOK))
		}
	})
}

func TestParseCursor(t *testing.T) {
	for _, c := range []struct {
		in   string
		want cursor
		ok   bool
	}{
		{"3", cursor{kv: 3}, true},
		{"3.4", cursor{kv: 3, log: position{seq: 4}}, true},
		{"3.4.2", cursor{kv: 3, log: position{seq: 4, n: 2}}, true},
		{"3.4.0", cursor{}, false},
		{"3.0.2", cursor{}, false},
		{"3.4.-1", cursor{}, false},
		{"3.4.2.1", cursor{}, false},
		{"3.x", cursor{}, false},
		{"3.", cursor{}, false},
		{".4", cursor{}, false},
		{"3..2", cursor{}, false},
	} {
		got, ok := parseCursor(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("parseCursor(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
		if ok && c.in != "3" && got.String() != c.in {
			t.Errorf("cursor %q prints as %q", c.in, got.String())
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"3", "3.4", "3.4.2", "3.4.0", "18446744073709551615.1.64", "3..", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := parseCursor(s)
		if !ok {
			return
		}
		if again, ok := parseCursor(c.String()); !ok || again != c {
			t.Fatalf("%q: %+v prints as %q, which reads as %+v, %v", s, c, c.String(), again, ok)
		}
	})
}

// BenchmarkSucceeded is the dispatcher's cost of logging a first-attempt
// success.
func BenchmarkSucceeded(b *testing.B) {
	l := testLog(b)
	d := record("sub_A", 0, herald.StatusSucceeded, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Succeeded(d); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// listAll pages through cloud acme's listing with f, following each page's
// cursor, and returns the ids in order; check, when not nil, sees each page.
func listAll(t *testing.T, l *Log, f herald.DeliveryFilter, check func(herald.DeliveryPage)) []string {
	t.Helper()
	var got []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the listing does not end")
		}
		page, err := l.List(context.Background(), "acme", f)
		if err != nil {
			t.Fatal(err)
		}
		if check != nil {
			check(page)
		}
		for _, d := range page.Deliveries {
			got = append(got, d.ID)
		}
		if f.Cursor = page.Cursor; f.Cursor == "" {
			return got
		}
	}
}

// checkFor waits for fn to return nil (poll.Until).
var checkFor = poll.Until
