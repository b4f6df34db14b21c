package app_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-webhooks/herald/app"
)

// BenchmarkThroughput drains 20,000 events published to one subscription
// as fast as JetStream takes them, with and without success records in the
// delivery log, and reports deliveries per second.
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./app/
func BenchmarkThroughput(b *testing.B) {
	for _, c := range []struct {
		name string
		skip bool
	}{{"log=all", false}, {"log=failures-only", true}} {
		b.Run(c.name, func(b *testing.B) {
			const n = 20_000
			a := startApp(b, b.TempDir(), func(cfg *app.Config) { cfg.Dispatch.SkipSuccessLog = c.skip })
			var got atomic.Int64
			done := make(chan struct{})
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got.Add(1) == n {
					close(done)
				}
			}))
			defer rc.Close()
			subscribe(b, a, "acme", map[string]any{"url": rc.URL, "events": []string{"*"}})
			b.ResetTimer()
			start := time.Now()
			publishRaw(b, a, "acme", n)
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("%d of %d delivered", got.Load(), n)
			}
			took := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/took.Seconds(), "deliveries/s")
			b.Logf("%s: %d deliveries in %s = %.0f/s", c.name, n, took.Round(time.Millisecond), float64(n)/took.Seconds())
		})
	}
}
