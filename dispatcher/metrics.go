package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events          *prometheus.CounterVec
	fanout          prometheus.Counter
	firsts          prometheus.Counter
	deliveries      *prometheus.CounterVec
	parked          prometheus.Counter
	ackPending      prometheus.Gauge
	backlog         *prometheus.GaugeVec
	waiting         prometheus.Gauge
	attemptDuration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_total",
			Help: "Events taken from the events stream, by outcome: fanned_out, or rejected (malformed, unknown type, invalid data).",
		}, []string{"outcome"}),
		fanout: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_fanout_deliveries_total",
			Help: "Deliveries created by fan-out: one per (event, matching subscription).",
		}),
		firsts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_fanout_first_attempts_total",
			Help: "First attempts made by fan-out itself, to endpoints known to answer fast that had a free slot, instead of through the deliveries stream.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_deliveries_total",
			Help: "Settled delivery messages, by outcome: succeeded, retry (a failed attempt with another scheduled), failed (gave up), dropped (subscription gone or disabled), superseded (a stale progress retry), deferred (endpoint at its concurrency limit, not an attempt), early (a retry handed over before its time, held until due), duplicate (already settled).",
		}, []string{"outcome"}),
		parked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_retries_parked_total",
			Help: "Retries due later than the park threshold, parked as JetStream message schedules.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_deliver_ack_pending",
			Help: "Delivery messages handed out and not yet settled, retries waiting on a NAK delay included (the deliver consumer's NumAckPending).",
		}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_retry_backlog",
			Help: "A subscription's deliveries not yet settled, by where they wait: consumer (for a worker or a NAK delay) or parked (a message schedule, until due). Refreshed every 15 s; the same on every dispatcher, so aggregate with max, not sum.",
		}, []string{"cloud", "subscription", "where"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_deliver_waiting",
			Help: "Delivery messages in the stream not yet handed to a dispatcher (the deliver consumer's NumPending).",
		}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_attempt_duration_seconds",
			Help:    "Duration of HTTP attempts, by answer class (2xx, 4xx, 5xx, …, or error for no answer).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"class"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.fanout, m.firsts, m.deliveries, m.parked, m.ackPending, m.backlog, m.waiting, m.attemptDuration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
