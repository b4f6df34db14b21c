package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/publisher"
)

// BenchmarkBacklogIsolation measures a healthy endpoint's publish→receipt
// p99 at 200 events/s with no backlog, then again while N deliveries wait
// on retries to a dead endpoint (connection refused; initial retry delay
// 1 h, longer than building a million-retry backlog takes, so they wait
// rather than come due during the measurement) and 1,000 deliveries sit at an
// endpoint that never answers. It reports both p99s, their ratio, and the
// process's CPU seconds and RSS while the backlog waits (the embedded NATS
// server and the dispatcher share the process).
//
//	go test -run '^$' -bench BacklogIsolation -benchtime 1x -timeout 60m ./app/
//	HERALD_BENCH_BACKLOG=10000,200000,1000000 go test -run '^$' -bench BacklogIsolation -benchtime 1x -timeout 120m ./app/
func BenchmarkBacklogIsolation(b *testing.B) {
	sizes := []int{10_000}
	if v := os.Getenv("HERALD_BENCH_BACKLOG"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("HERALD_BENCH_BACKLOG: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("waiting=%d", n), func(b *testing.B) { benchBacklog(b, n) })
	}
}

func benchBacklog(b *testing.B, waiting int) {
	a := startApp(b, b.TempDir(), func(c *app.Config) {
		c.Dispatch.AttemptTimeout = 10 * time.Second
		c.Dispatch.MaxInFlight = 256
	})
	healthy := newLatencyReceiver(b)
	subscribe(b, a, "healthy", map[string]any{"url": healthy.URL, "events": []string{"*"}})

	base := measureHealthy(b, a, healthy, healthyEvents)

	// The dead endpoint: a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()
	subscribe(b, a, "dead", map[string]any{"url": deadURL, "events": []string{"*"},
		"retry": map[string]any{"strategy": "exponential", "initial_delay": "1h", "max_delay": "1h", "window": "24h"}})
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer func() { close(hang); hanging.Close() }()
	subscribe(b, a, "hanging", map[string]any{"url": hanging.URL, "events": []string{"*"}})

	start := time.Now()
	publishRaw(b, a, "dead", waiting)
	publishRaw(b, a, "hanging", 1000)
	// Wait until every dead delivery has failed once and is waiting.
	checkFor(b, 2*time.Hour, 500*time.Millisecond, func() error {
		if got := outcome(b, a, "retry"); got < float64(waiting) {
			return fmt.Errorf("%v of %d dead deliveries are waiting on a retry", got, waiting)
		}
		return nil
	})
	built := time.Since(start)

	cpu0 := cpuSeconds()
	loaded := measureHealthy(b, a, healthy, healthyEvents)
	cpu := cpuSeconds() - cpu0
	b.ReportMetric(float64(base.Microseconds()), "p99-idle-µs")
	b.ReportMetric(float64(loaded.Microseconds()), "p99-backlog-µs")
	b.ReportMetric(float64(loaded)/float64(base), "p99-ratio")
	b.ReportMetric(cpu/measureSeconds(healthyEvents), "cpu-cores")
	b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
	b.Logf("waiting=%d: backlog built in %s; parked %v; healthy p99 %s idle, %s with the backlog (×%.2f); %.2f cores busy while the backlog waits; RSS %d MiB",
		waiting, built.Round(time.Second), counter(b, a, "herald_retries_parked_total"), base, loaded, float64(loaded)/float64(base), cpu/measureSeconds(healthyEvents), rssBytes()>>20)
}

// The healthy endpoint gets healthyRate events/s for 15 s: long enough to
// live through the hanging endpoint's attempt timeouts and their retries.
const (
	healthyRate   = 200 // events/s
	healthyEvents = 3000
)

func measureSeconds(n int) float64 { return float64(n) / healthyRate }

// measureHealthy publishes n events at healthyRate to cloud "healthy" and
// returns the p99 publish→receipt latency.
func measureHealthy(b *testing.B, a *app.App, rc *latencyReceiver, n int) time.Duration {
	b.Helper()
	pub := a.Publisher()
	sent := make(map[string]time.Time, n)
	tick := time.NewTicker(time.Second / healthyRate)
	defer tick.Stop()
	rc.reset()
	for i := range n {
		<-tick.C
		id := fmt.Sprintf("h-%d-%d", time.Now().UnixNano(), i)
		sent[id] = time.Now()
		if _, err := pub.Publish(context.Background(), herald.Event{ID: id, Cloud: "healthy", Type: "encoding-complete",
			Data: json.RawMessage(`{"encoding_id":"` + id + `"}`)}); err != nil {
			b.Fatal(err)
		}
	}
	got := rc.wait(b, n)
	lat := make([]time.Duration, 0, n)
	for id, at := range got {
		lat = append(lat, at.Sub(sent[id]))
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// publishRaw publishes n valid events for cloud as fast as JetStream takes
// them (async), without the publisher's per-event validation.
func publishRaw(b *testing.B, a *app.App, cloud string, n int) {
	b.Helper()
	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2048))
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		ev := herald.Event{ID: fmt.Sprintf("%s-%d", cloud, i), OccurredAt: time.Now(), Data: json.RawMessage(`{"encoding_id":"e"}`)}
		body, _ := ev.Envelope()
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: herald.EventSubject(cloud, "encoding-complete"), Data: body},
			jetstream.WithMsgID(publisher.MsgID(cloud, ev.ID))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(10 * time.Minute):
		b.Fatal("async publishes not acknowledged")
	}
}

// latencyReceiver records when each event id arrived.
type latencyReceiver struct {
	*httptest.Server
	got chan [2]any
	m   map[string]time.Time
}

func newLatencyReceiver(b *testing.B) *latencyReceiver {
	rc := &latencyReceiver{got: make(chan [2]any, 100_000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		var body struct {
			EncodingID string `json:"encoding_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		rc.got <- [2]any{body.EncodingID, now}
	}))
	b.Cleanup(rc.Close)
	return rc
}

func (rc *latencyReceiver) reset() { rc.m = map[string]time.Time{} }

func (rc *latencyReceiver) wait(b *testing.B, n int) map[string]time.Time {
	timeout := time.After(5 * time.Minute)
	for len(rc.m) < n {
		select {
		case g := <-rc.got:
			if _, dup := rc.m[g[0].(string)]; !dup {
				rc.m[g[0].(string)] = g[1].(time.Time)
			}
		case <-timeout:
			b.Fatalf("%d of %d healthy notifications arrived", len(rc.m), n)
		}
	}
	return rc.m
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.Sys
	}
	var size, rss uint64
	_, _ = fmt.Sscan(string(b), &size, &rss)
	return rss * uint64(os.Getpagesize())
}
