package deliverylog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/natsserver/natstest"
)

func testLog(t *testing.T) *Log {
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

// flush waits until the asynchronous appends are stored.
func flush(t *testing.T, l *Log) {
	t.Helper()
	select {
	case <-l.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		t.Fatal("appends not acknowledged")
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
	}
	flush(t, l)

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
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the listing does not end")
		}
		page, err := l.List(ctx, "acme", herald.DeliveryFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Deliveries {
			got = append(got, d.ID)
		}
		if cursor = page.Cursor; cursor == "" {
			break
		}
	}
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
// success log is still found.
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
	for n := 1; n <= findChunk+10; n++ {
		if err := l.Succeeded(record("sub_B", n, herald.StatusSucceeded, t0)); err != nil {
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
