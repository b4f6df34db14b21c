package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

// BenchmarkPublishToReceipt measures one notification's trip at rest: the
// Go publisher stores the event, fan-out matches it, the dispatcher POSTs it
// to a loopback receiver. It reports the median and p99 over b.N trips,
// one at a time.
//
//	go test -run '^$' -bench PublishToReceipt -benchtime 100x ./app/
func BenchmarkPublishToReceipt(b *testing.B) {
	a := startApp(b, b.TempDir())
	got := make(chan time.Time, 1)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- time.Now()
	}))
	defer rc.Close()
	subscribe(b, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
	pub := a.Publisher()
	data := json.RawMessage(`{"video_id":"v1","status":"success","encoding_ids":["a","b"]}`)
	// Warm up connections and caches.
	if _, err := pub.Publish(context.Background(), herald.Event{Cloud: "acme", Type: "video-created", Data: data}); err != nil {
		b.Fatal(err)
	}
	<-got
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := pub.Publish(context.Background(), herald.Event{Cloud: "acme", Type: "video-created", Data: data}); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-got:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no notification within 10s")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
