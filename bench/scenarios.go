package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/schemas"
	"github.com/herald-webhooks/herald/subscriptions"
)

var all = []scenario{
	{"throughput", "200,000 events to 1 subscription, published as fast as JetStream takes them; the baseline and herald alternately, best of 2 rounds each", throughput},
	{"ingest", "20,000 events published through the HTTP API by 32 clients, to 1 subscription", ingest},
	{"fanout", "1,000 events × 1,000 subscriptions of one cloud, on 1,000 endpoints", fanout},
	{"latency", "a steady 1,000 events/s for 30 s; herald and the baseline", latency},
	{"backlog", "a healthy endpoint at 200 events/s, alone and beside 10,000 deliveries waiting on retries plus 1,000 held by a hanging endpoint", backlog},
	{"tenants", "1,000 clouds × 10 subscriptions: cache memory, match cost, and 10 events per cloud", tenants},
	{"scale-out", "100,000 events through 1, then 2 `herald dispatch` processes against one NATS server", scaleOut},
}

const cloud = "bench"

func jsonSubscription(url string) map[string]any {
	return map[string]any{"url": url, "events": []string{"*"}, "format": "json"}
}

// measure records subs × events deliveries while publish sends the
// events, waits for all of them, and returns their figures with the
// processes' CPU time over the measurement and their peak RSS.
func measure(ctx context.Context, procs []*proc, rc *receivers, subs, events int, publish func(t0 time.Time) ([]time.Duration, error)) (Result, error) {
	before := make([]usage, len(procs))
	for i, p := range procs {
		before[i], _ = p.measure()
	}
	t0 := time.Now()
	rec := rc.record(subs, events, t0)
	sent, err := publish(t0)
	if err != nil {
		return Result{}, err
	}
	if err := rec.wait(10*time.Minute + time.Duration(subs*events)*time.Millisecond); err != nil {
		return Result{}, err
	}
	res := Result{Events: events, Deliveries: rec.got.Load(), Duplicates: rec.dups.Load()}
	for i, p := range procs {
		u, err := p.measure()
		if err == nil {
			res.CPU += u.cpu - before[i].cpu
			res.PeakRSS = max(res.PeakRSS, float64(u.peakRSS)/(1<<20))
		}
	}
	took := rec.last()
	res.Seconds = took.Seconds()
	res.PerSecond = float64(res.Deliveries) / took.Seconds()
	lat := rec.latencies(sent)
	res.P50, res.P99, res.P999 = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 0.999)
	return res, nil
}

// warmUp sends events to subs subscriptions (pub decides which event goes
// to which cloud) and waits for all of their deliveries: the subscriptions
// are live in the dispatcher and the connections are open.
func (r *runner) warmUp(ctx context.Context, rc *receivers, subs, events int, pub eventPublisher) error {
	var err error
	// A subscription reaches the dispatcher's cache through a KV watch,
	// milliseconds after the API answered, and later on a loaded machine:
	// an event fanned out before then does not go to it. A second round
	// covers a subscription the first one missed that way.
	for round := range 2 {
		if round == 1 {
			r.progress("warm-up: %v; once more", err)
		}
		rec := rc.record(subs, events, time.Now())
		// A tag of its own: the same id again would be a duplicate.
		if _, err = pub.burst(ctx, "warm"+strconv.FormatInt(time.Now().UnixNano(), 36), events, time.Now()); err != nil {
			return err
		}
		patience := 30*time.Second + time.Duration(subs*events)*15*time.Millisecond
		if round == 1 {
			patience *= 2
		}
		if err = rec.wait(patience); err == nil {
			return nil
		}
	}
	return err
}

// baselineRun measures the baseline process on its own receiver with
// publish (burst or paced).
func baselineRun(ctx context.Context, r *runner, events int, publish func(pub eventPublisher, t0 time.Time) ([]time.Duration, error)) (Result, error) {
	rc, err := newReceivers(1)
	if err != nil {
		return Result{}, err
	}
	defer rc.close()
	p, url, err := startBaseline(ctx, r.o, r.dir(), rc.url(0))
	if err != nil {
		return Result{}, err
	}
	defer p.stop()
	nc, err := nats.Connect(url)
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return Result{}, err
	}
	pub := rawPublisher(js, baselineSubject)
	if err := r.warmUp(ctx, rc, 1, 1, pub); err != nil {
		return Result{}, err
	}
	res, err := measure(ctx, []*proc{p}, rc, 1, events, func(t0 time.Time) ([]time.Duration, error) { return publish(pub, t0) })
	res.System = "baseline"
	return res, err
}

// startWithReceivers starts a herald (see startHerald) and endpoints
// receivers for it.
func startWithReceivers(ctx context.Context, r *runner, endpoints int, apiOnly bool) (*instance, *receivers, error) {
	rc, err := newReceivers(endpoints)
	if err != nil {
		return nil, nil, err
	}
	in, err := startHerald(ctx, r.o, r.dir(), apiOnly)
	if err != nil {
		rc.close()
		return nil, nil, err
	}
	return in, rc, nil
}

// oneSubscription starts a herald with one subscription on its own
// receiver, warmed up.
func oneSubscription(ctx context.Context, r *runner) (*instance, *receivers, eventPublisher, error) {
	in, rc, err := startWithReceivers(ctx, r, 1, false)
	if err != nil {
		return nil, nil, eventPublisher{}, err
	}
	pub := heraldPublisher(in.js, func(int) string { return cloud })
	err = in.subscribe(ctx, cloud, jsonSubscription(rc.url(0)))
	if err == nil {
		err = r.warmUp(ctx, rc, 1, 1, pub)
	}
	if err != nil {
		in.stop()
		rc.close()
		return nil, nil, eventPublisher{}, err
	}
	return in, rc, pub, nil
}

// throughputRounds is how many times throughput measures the baseline and
// herald, alternately: each reports its best round, so that a slow moment
// of a shared machine does not decide the ratio. Peak RSS is the largest of
// all rounds.
const throughputRounds = 2

func throughput(ctx context.Context, r *runner) ([]Result, error) {
	n := r.n(200_000, 100)
	var base, res Result
	for round := 1; round <= throughputRounds; round++ {
		r.progress("throughput: round %d of %d, baseline, %d events", round, throughputRounds, n)
		b, err := baselineRun(ctx, r, n, func(pub eventPublisher, t0 time.Time) ([]time.Duration, error) {
			return pub.burst(ctx, "t", n, t0)
		})
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		r.progress("throughput: round %d of %d, herald, %d events", round, throughputRounds, n)
		h, err := throughputHerald(ctx, r, n)
		if err != nil {
			return nil, err
		}
		r.progress("throughput: round %d: baseline %.0f/s, herald %.0f/s", round, b.PerSecond, h.PerSecond)
		base, res = bestRound(base, b), bestRound(res, h)
	}
	r.baseline = &base
	res.Ratio, res.Of = res.PerSecond/base.PerSecond, "of the baseline's deliveries/s"
	return []Result{base, res}, nil
}

// bestRound is the faster of two rounds, with the larger peak RSS of both.
func bestRound(a, b Result) Result {
	rss := max(a.PeakRSS, b.PeakRSS)
	if b.PerSecond > a.PerSecond {
		a = b
	}
	a.PeakRSS = rss
	return a
}

// throughputHerald is one herald round of throughput, in a herald of its
// own.
func throughputHerald(ctx context.Context, r *runner, n int) (Result, error) {
	in, rc, pub, err := oneSubscription(ctx, r)
	if err != nil {
		return Result{}, err
	}
	defer rc.close()
	defer in.stop()
	res, err := measure(ctx, []*proc{in.serve}, rc, 1, n, func(t0 time.Time) ([]time.Duration, error) {
		return pub.burst(ctx, "t", n, t0)
	})
	res.System = "herald"
	return res, err
}

func ingest(ctx context.Context, r *runner) ([]Result, error) {
	n := r.n(20_000, 100)
	in, rc, _, err := oneSubscription(ctx, r)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	defer in.stop()
	var accepted time.Duration
	res, err := measure(ctx, []*proc{in.serve}, rc, 1, n, func(t0 time.Time) ([]time.Duration, error) {
		sent := make([]time.Duration, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					sent[i] = time.Since(t0)
					if err := in.publishHTTP(ctx, "i-"+strconv.Itoa(i), eventData(i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		accepted = time.Since(t0)
		close(errs)
		return sent, <-errs
	})
	if err != nil {
		return nil, err
	}
	res.System = "herald, HTTP publish"
	res.Extra = map[string]float64{"accepted_per_second": float64(n) / accepted.Seconds()}
	return []Result{res}, nil
}

// publishHTTP publishes event id through POST /v1/clouds/bench/events.
func (in *instance) publishHTTP(ctx context.Context, id string, data []byte) error {
	return in.post(ctx, "/v1/clouds/"+cloud+"/events",
		map[string]any{"id": id, "type": eventType, "data": json.RawMessage(data)}, http.StatusAccepted)
}

func fanout(ctx context.Context, r *runner) ([]Result, error) {
	subs, events := r.n(1000, 2), r.n(1000, 10)
	in, rc, err := startWithReceivers(ctx, r, subs, false)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	defer in.stop()
	r.progress("fanout: %d subscriptions", subs)
	if err := in.subscribeAll(ctx, subs, func(int) string { return cloud }, func(i int) map[string]any { return jsonSubscription(rc.url(i)) }); err != nil {
		return nil, err
	}
	pub := heraldPublisher(in.js, func(int) string { return cloud })
	if err := r.warmUp(ctx, rc, subs, 1, pub); err != nil {
		return nil, err
	}
	r.progress("fanout: %d events", events)
	res, err := measure(ctx, []*proc{in.serve}, rc, subs, events, func(t0 time.Time) ([]time.Duration, error) {
		return pub.burst(ctx, "f", events, t0)
	})
	if err != nil {
		return nil, err
	}
	res.System = "herald"
	if r.baseline != nil {
		res.Ratio, res.Of = res.PerSecond/r.baseline.PerSecond, "of the baseline's deliveries/s (throughput)"
	}
	return []Result{res}, nil
}

func latency(ctx context.Context, r *runner) ([]Result, error) {
	const rate = 1000
	n := r.n(30*rate, rate)
	r.progress("latency: baseline, %d events at %d/s", n, rate)
	base, err := baselineRun(ctx, r, n, func(pub eventPublisher, t0 time.Time) ([]time.Duration, error) {
		return pub.paced(ctx, "l", n, rate, t0)
	})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	r.progress("latency: herald, %d events at %d/s", n, rate)
	in, rc, pub, err := oneSubscription(ctx, r)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	defer in.stop()
	res, err := measure(ctx, []*proc{in.serve}, rc, 1, n, func(t0 time.Time) ([]time.Duration, error) {
		return pub.paced(ctx, "l", n, rate, t0)
	})
	if err != nil {
		return nil, err
	}
	res.System = "herald"
	res.Ratio, res.Of = res.P99/base.P99, "of the baseline's p99"
	return []Result{base, res}, nil
}

func backlog(ctx context.Context, r *runner) ([]Result, error) {
	const rate = 200
	n, waiting, held := r.n(15*rate, rate), r.n(10_000, 10), r.n(1000, 10)
	in, rc, pub, err := oneSubscription(ctx, r)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	defer in.stop()
	healthy := func(tag string) (Result, error) {
		return measure(ctx, []*proc{in.serve}, rc, 1, n, func(t0 time.Time) ([]time.Duration, error) {
			return pub.paced(ctx, tag, n, rate, t0)
		})
	}
	r.progress("backlog: healthy endpoint alone, %d events at %d/s", n, rate)
	idle, err := healthy("idle")
	if err != nil {
		return nil, err
	}
	idle.System = "herald, no backlog"

	// The dead endpoint refuses connections; its retries wait an hour, so
	// they are all waiting while the healthy endpoint is measured.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dead := "http://" + ln.Addr().String() + "/dead"
	ln.Close()
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-hang:
		case <-req.Context().Done():
		}
	}))
	defer func() { close(hang); hanging.Close() }()
	for cl, sub := range map[string]map[string]any{
		"dead": {"url": dead, "events": []string{"*"}, "retry": map[string]any{
			"strategy": "exponential", "initial_delay": "1h", "max_delay": "1h", "window": "24h"}},
		"hanging": jsonSubscription(hanging.URL),
	} {
		if err := in.subscribe(ctx, cl, sub); err != nil {
			return nil, err
		}
	}
	r.progress("backlog: %d deliveries to a dead endpoint, %d to a hanging one", waiting, held)
	// The subscriptions reach the dispatcher through a KV watch: give it a
	// moment before their events come.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if _, err := heraldPublisher(in.js, func(int) string { return "dead" }).burst(ctx, "d", waiting, start); err != nil {
		return nil, err
	}
	if _, err := heraldPublisher(in.js, func(int) string { return "hanging" }).burst(ctx, "h", held, start); err != nil {
		return nil, err
	}
	for {
		retries, err := in.metric(ctx, `herald_deliveries_total{outcome="retry"}`)
		if err != nil {
			return nil, err
		}
		if retries >= float64(waiting) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return nil, fmt.Errorf("%v of %d dead deliveries waiting on a retry after 30 minutes", retries, waiting)
		}
		time.Sleep(250 * time.Millisecond)
	}
	built := time.Since(start)
	r.progress("backlog: healthy endpoint beside the backlog (built in %s)", built.Round(time.Millisecond))
	loaded, err := healthy("loaded")
	if err != nil {
		return nil, err
	}
	loaded.System = "herald, with backlog"
	loaded.Ratio, loaded.Of = loaded.P99/idle.P99, "of the p99 without backlog"
	parked, _ := in.metric(ctx, "herald_retries_parked_total")
	loaded.Extra = map[string]float64{"waiting": float64(waiting), "held": float64(held), "parked": parked, "build_seconds": built.Seconds()}
	return []Result{idle, loaded}, nil
}

// metric reads one sample from herald's /metrics; series is its name with
// labels as the exposition format writes them.
func (in *instance) metric(ctx context.Context, series string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", in.apiURL+"/metrics", nil)
	resp, err := in.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

func tenants(ctx context.Context, r *runner) ([]Result, error) {
	const perCloud, eventsPerCloud = 10, 10
	clouds := r.n(1000, 2)
	events := clouds * eventsPerCloud
	in, rc, err := startWithReceivers(ctx, r, perCloud, false)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	defer in.stop()
	cloudOf := func(i int) string { return "tenant-" + strconv.Itoa(i%clouds) }
	r.progress("tenants: %d clouds × %d subscriptions", clouds, perCloud)
	start := time.Now()
	// Subscription i is the (i/clouds)-th of cloud i%clouds; its receiver
	// path is that rank, so (rank, event) names each delivery.
	if err := in.subscribeAll(ctx, clouds*perCloud, cloudOf, func(i int) map[string]any { return jsonSubscription(rc.url(i / clouds)) }); err != nil {
		return nil, err
	}
	created := time.Since(start)
	cacheBytes, matchNs, err := measureCache(ctx, in.js, clouds, perCloud)
	if err != nil {
		return nil, err
	}
	pub := heraldPublisher(in.js, cloudOf)
	// One warm-up event per cloud: every subscription is live.
	if err := r.warmUp(ctx, rc, perCloud, clouds, pub); err != nil {
		return nil, err
	}
	r.progress("tenants: %d events, %d per cloud", events, events/clouds)
	res, err := measure(ctx, []*proc{in.serve}, rc, perCloud, events, func(t0 time.Time) ([]time.Duration, error) {
		return pub.burst(ctx, "e", events, t0)
	})
	if err != nil {
		return nil, err
	}
	res.System = "herald"
	res.Extra = map[string]float64{
		"subscriptions":      float64(clouds * perCloud),
		"create_per_second":  float64(clouds*perCloud) / created.Seconds(),
		"cache_mib":          float64(cacheBytes) / (1 << 20),
		"match_ns_per_event": matchNs,
	}
	return []Result{res}, nil
}

// measureCache loads herald's subscription cache from the bucket the
// processes use, in this process where its heap can be weighed, and times
// Match over events of every cloud.
func measureCache(ctx context.Context, js jetstream.JetStream, clouds, perCloud int) (bytes uint64, nsPerMatch float64, err error) {
	reg, err := schemas.New("")
	if err != nil {
		return 0, 0, err
	}
	store, err := subscriptions.Open(ctx, subscriptions.Config{JetStream: js, Types: reg, AllowPrivateTargets: true})
	if err != nil {
		return 0, 0, err
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	cache := store.NewCache(zerolog.Nop(), 0)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = cache.Run(cctx) }()
	select {
	case <-cache.Ready():
	case <-time.After(2 * time.Minute):
		return 0, 0, fmt.Errorf("the subscription cache did not load within 2 minutes")
	}
	if got := cache.Len(); got < clouds*perCloud {
		return 0, 0, fmt.Errorf("the cache holds %d subscriptions, want %d", got, clouds*perCloud)
	}
	after := heap()
	data := eventData(1)
	names := make([]string, clouds)
	for i := range names {
		names[i] = "tenant-" + strconv.Itoa(i)
	}
	const rounds = 200_000
	buf := make([]*herald.Subscription, 0, perCloud)
	start := time.Now()
	for i := range rounds {
		buf = cache.Match(names[i%clouds], eventType, data, buf[:0])
		if len(buf) != perCloud {
			return 0, 0, fmt.Errorf("%s matched %d subscriptions, want %d", names[i%clouds], len(buf), perCloud)
		}
	}
	took := time.Since(start)
	return after - min(before, after), float64(took.Nanoseconds()) / rounds, nil
}

func scaleOut(ctx context.Context, r *runner) ([]Result, error) {
	n := r.n(100_000, 100)
	in, rc, err := startWithReceivers(ctx, r, 1, true)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	defer in.stop()
	if err := in.subscribe(ctx, cloud, jsonSubscription(rc.url(0))); err != nil {
		return nil, err
	}
	pub := heraldPublisher(in.js, func(int) string { return cloud })
	var out []Result
	for k := 1; k <= 2; k++ {
		for len(in.dispatch) < k {
			if _, err := in.addDispatcher(ctx, r.o, r.dir()); err != nil {
				return nil, err
			}
		}
		if err := r.warmUp(ctx, rc, 1, 1, pub); err != nil {
			return nil, err
		}
		r.progress("scale-out: %d events through %d dispatcher processes", n, k)
		procs := append([]*proc{in.serve}, in.dispatch...)
		res, err := measure(ctx, procs, rc, 1, n, func(t0 time.Time) ([]time.Duration, error) {
			return pub.burst(ctx, "s"+strconv.Itoa(k), n, t0)
		})
		if err != nil {
			return nil, err
		}
		res.System = fmt.Sprintf("herald, %d dispatch", k)
		res.Extra = map[string]float64{}
		for i, p := range procs {
			if u, err := p.measure(); err == nil {
				name := "dispatch" + strconv.Itoa(i) + "_rss_mib"
				if i == 0 {
					name = "serve_rss_mib"
				}
				res.Extra[name] = float64(u.peakRSS) / (1 << 20)
			}
		}
		if k == 2 {
			res.Ratio, res.Of = res.PerSecond/out[0].PerSecond, "of 1 dispatcher's deliveries/s"
		}
		out = append(out, res)
	}
	return out, nil
}
