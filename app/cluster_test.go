package app_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/app"
	"github.com/herald-webhooks/herald/natsserver"
	"github.com/herald-webhooks/herald/streams"
)

// Bounds of TestClusterFailover, counted from the shutdown of the node that
// leads the deliveries stream and holds herald's NATS connection.
const (
	// failoverResume bounds the wait for the first delivery of an event
	// published after the shutdown began: new events flow again. A graceful
	// shutdown hands every Raft leadership to a peer first, so the new
	// leaders are there within a second; herald's client reconnects to
	// another node after its 250 ms reconnect wait (a publish whose answer
	// was lost is tried again after 2 s); and a pull request of the
	// dispatcher left on the lost node holds its consumer back until it
	// expires, 5 s after it was made (PullExpiry in dispatcher/stage.go).
	// Measured under -race: 15-100 ms, 2.1 s after a lost publish answer,
	// 5.1 s after a stale pull. The bound also covers a node that dies
	// without handing over, where followers wait out a Raft election
	// timeout (4-9 s in nats-server 2.15) before electing a leader.
	failoverResume = 10 * time.Second
	// failoverComplete bounds the wait until every event accepted is
	// delivered at least once. A message handed to herald just before or
	// during the shutdown and lost with the node comes back only when its
	// consumer's AckWait runs out: 30 s for the fan-out consumer
	// (dispatcher/fanout.go), 2 x AttemptTimeout + 10 s = 14 s for the
	// deliver consumer here (dispatcher/deliver.go). Measured: 2-4 s, 14 s
	// after a lost delivery message, 30 s after a lost event. One loss of
	// each after a failover of failoverResume is 54 s; the test checks that
	// sum against the consumers' configuration.
	failoverComplete = 60 * time.Second
)

// TestClusterFailover runs herald against a 3-node JetStream cluster with
// every stream and bucket at 3 replicas, publishes events at a steady rate
// and, while they are being delivered, shuts down the leader of the
// deliveries stream, which is also the node herald is connected to.
// Deliveries of events published after the shutdown began resume within
// failoverResume, and every event JetStream accepted is delivered within
// failoverComplete. Duplicates (attempts whose acknowledgement was lost with
// the node, sent again at AckWait) and the longest stretch without a
// receipt are logged, not asserted: at-least-once allows both.
func TestClusterFailover(t *testing.T) {
	nodes, err := natsserver.StartCluster(natsserver.Cluster{
		StoreDir: t.TempDir(),
		// Node departures make every peer warn; only errors are of interest,
		// except the one each peer logs every second while it redials the
		// node shut down on purpose.
		Logger: zerolog.New(withoutRouteRedials{zerolog.NewTestWriter(t)}).Level(zerolog.ErrorLevel).With().Timestamp().Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range nodes {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	urls := make([]string, len(nodes))
	for i, s := range nodes {
		urls[i] = s.ClientURL()
	}
	a := startApp(t, t.TempDir(), func(c *app.Config) {
		c.NATSURL = strings.Join(urls, ",")
		c.Streams.Replicas = 3
	})
	requireReplicas(t, a.JetStream(), 3)

	rc := newReceiver(t)
	sub := subscribe(t, a, "acme", map[string]any{"url": rc.URL, "events": []string{"encoding-complete"}})

	// Events f-0, f-1, ... published 100 a second, before and all through
	// the failover, until `after` more have been published once the
	// shutdown began; a publish that fails is tried again with the same id
	// until JetStream accepts it.
	const after = 200
	var published, limit atomic.Int64
	limit.Store(math.MaxInt64)
	t.Cleanup(func() { limit.Store(0) }) // if the test stops early
	// accepted[i] is when event i was accepted; read once done is closed.
	var accepted []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := int64(0); i < limit.Load(); i++ {
			<-tick.C
			publishPersistently(a, "acme", fmt.Sprintf("f-%d", i))
			accepted = append(accepted, time.Now())
			published.Add(1)
		}
	}()

	rc.waitN(t, 100, 30*time.Second)
	// Deliveries flow, so the dispatcher has made its consumers.
	requireAckWaitsWithin(t, a.JetStream(), failoverComplete-failoverResume)
	// The worst case: the node that leads the deliveries stream is the one
	// herald is connected to, so herald loses its connection and the stream
	// loses its leader at once.
	conn := a.JetStream().Conn().ConnectedServerName()
	leader := moveStreamLeader(t, a.JetStream().Conn(), nodes, streams.Deliveries, conn)
	killedAt := time.Now()
	// Events 0 to atKill-1 were accepted before the shutdown began, event
	// atKill may be under way; events from atKill+1 on are published after.
	atKill := published.Load()
	limit.Store(atKill + 1 + after)
	delivered := distinctEvents(rc.requests())
	leader.Shutdown()
	leader.WaitForShutdown()
	t.Logf("shut down %s, leader of %s and herald's NATS connection, with %d events accepted and %d delivered",
		leader.Name(), streams.Deliveries, atKill, delivered)

	deadline := killedAt.Add(failoverComplete)
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		t.Fatalf("%d events published %s after the shutdown, want %d", published.Load(), failoverComplete, atKill+1+after)
	}
	events := int(published.Load())
	checkFor(t, time.Until(deadline), 50*time.Millisecond, func() error {
		if got := distinctEvents(rc.requests()); got < events {
			return fmt.Errorf("%d of %d accepted events delivered", got, events)
		}
		return nil
	})
	// Attempts whose acknowledgement was lost come back at AckWait: wait
	// until the deliver consumer has nothing handed out or waiting, so that
	// the duplicates counted are all there are.
	cons, err := a.JetStream().Consumer(context.Background(), streams.Deliveries, streams.DeliverConsumer)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Until(deadline), 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending > 0 || info.NumPending > 0 {
			return fmt.Errorf("deliver consumer has %d deliveries unacknowledged and %d waiting", info.NumAckPending, info.NumPending)
		}
		return nil
	})

	index := make(map[string]int, events) // Webhook-Id -> event number
	for i := range events {
		index[herald.DeliveryID("acme", fmt.Sprintf("f-%d", i), sub)] = i
	}
	got := rc.requests()
	slices.SortFunc(got, func(x, y received) int { return x.At.Compare(y.At) })
	first := make(map[int]time.Time, events) // event number -> first receipt
	resumed, complete := time.Duration(-1), time.Duration(0)
	var late []string
	for _, r := range got {
		i, ok := index[r.Header.Get("Webhook-Id")]
		if !ok {
			t.Fatalf("request for an event never published: %s", r.Header.Get("Webhook-Id"))
		}
		if _, seen := first[i]; seen {
			continue
		}
		first[i] = r.At
		since := r.At.Sub(killedAt)
		if i > int(atKill) && resumed < 0 {
			resumed = since
		}
		complete = max(complete, since)
		if since > failoverResume {
			late = append(late, fmt.Sprintf("f-%d at %s", i, since.Round(time.Millisecond)))
		}
	}
	// The longest stretch without a receipt, from the last one before the
	// shutdown to the last one of all (duplicates included).
	gap, prev := time.Duration(0), killedAt
	for _, r := range got {
		if r.At.Before(killedAt) {
			prev = r.At
			continue
		}
		gap = max(gap, r.At.Sub(prev))
		prev = r.At
	}
	t.Logf("%d events accepted; from the shutdown: publishes accepted again after %s, new events delivered again after %s (bound %s), every event delivered after %s (bound %s); %d duplicates, longest gap without a receipt %s",
		events, accepted[atKill+1].Sub(killedAt).Round(time.Millisecond), resumed.Round(time.Millisecond), failoverResume,
		complete.Round(time.Millisecond), failoverComplete, len(got)-events, gap.Round(time.Millisecond))
	if len(late) > 0 {
		t.Logf("first delivered more than %s after the shutdown (a message lost with the node, back at its consumer's AckWait): %s",
			failoverResume, strings.Join(late, ", "))
	}
	if resumed > failoverResume {
		t.Errorf("events published after the shutdown delivered only %s after it, want at most %s", resumed, failoverResume)
	}
}

// requireAckWaitsWithin fails the test unless the AckWaits of the fan-out
// and deliver consumers add up to at most d: the longest an event can be
// held back by a message lost with a node, one loss in each.
func requireAckWaitsWithin(t *testing.T, js jetstream.JetStream, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sum time.Duration
	for _, c := range []struct{ stream, consumer string }{
		{streams.Events, streams.FanoutConsumer},
		{streams.Deliveries, streams.DeliverConsumer},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.consumer)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.consumer, err)
		}
		sum += cons.CachedInfo().Config.AckWait
	}
	if sum > d {
		t.Fatalf("fan-out and deliver consumers' AckWaits add up to %s, more than the %s the bounds allow for", sum, d)
	}
}

// withoutRouteRedials drops the error a cluster node logs every second while
// it redials a route to a node that was shut down.
type withoutRouteRedials struct{ zerolog.TestWriter }

func (w withoutRouteRedials) Write(p []byte) (int, error) {
	w.T.Helper()
	if bytes.Contains(p, []byte("Error trying to connect to route")) {
		return len(p), nil
	}
	return w.TestWriter.Write(p)
}

// requireReplicas fails the test unless every stream, herald's and its KV
// buckets', has replicas copies.
func requireReplicas(t *testing.T, js jetstream.JetStream, replicas int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos := js.ListStreams(ctx)
	n := 0
	for info := range infos.Info() {
		n++
		if got := info.Config.Replicas; got != replicas {
			t.Errorf("stream %s has %d replicas, want %d", info.Config.Name, got, replicas)
		}
	}
	if err := infos.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	if n == 0 {
		t.Fatal("no streams")
	}
	t.Logf("%d streams and buckets, each with %d replicas", n, replicas)
}

// moveStreamLeader makes the node named to lead stream (a leader
// step-down with a preferred successor) and returns it once it leads.
func moveStreamLeader(t *testing.T, nc *nats.Conn, nodes []*server.Server, stream, to string) *server.Server {
	t.Helper()
	var target *server.Server
	for _, s := range nodes {
		if s.Name() == to {
			target = s
		}
	}
	if target == nil {
		t.Fatalf("no node named %q", to)
	}
	req := []byte(fmt.Sprintf(`{"placement":{"preferred":%q}}`, to))
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if target.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return nil
		}
		msg, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 2*time.Second)
		if err != nil {
			return fmt.Errorf("step down %s: %w", stream, err)
		}
		return fmt.Errorf("%s does not lead %s yet (step-down answered %s)", to, stream, msg.Data)
	})
	return target
}
