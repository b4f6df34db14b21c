package dispatcher

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// stage consumes one durable consumer with at most workers messages being
// handled at once. The client-side buffer is kept at the worker count
// unless set otherwise: the AckWait clock starts when the server hands a
// message over, so a deep buffer would expire work before it starts
// (nats.go #1929).
type stage struct {
	name    string
	workers int
	buffer  int // messages pulled ahead; default workers
	log     zerolog.Logger
	handle  func(ctx context.Context, msg jetstream.Msg)
	pool    *workers // runs handle

	grace    time.Duration // how long stop waits for handlers before cancelling them
	slots    chan struct{}
	wg       sync.WaitGroup
	stopping atomic.Bool
	cc       jetstream.ConsumeContext
	// ctx is handed to handlers; it is cancelled only when stop gives up
	// waiting for them.
	ctx    context.Context
	cancel context.CancelFunc
}

// newStage returns a stage whose handlers each hold one of slots, a
// semaphore the stage may share: its capacity is the worker count.
func newStage(name string, slots chan struct{}, pool *workers, grace time.Duration, log zerolog.Logger, handle func(context.Context, jetstream.Msg)) *stage {
	ctx, cancel := context.WithCancel(context.Background())
	return &stage{
		name: name, workers: cap(slots), buffer: cap(slots), pool: pool, grace: grace, handle: handle,
		log:   log.With().Str("stage", name).Logger(),
		slots: slots,
		ctx:   ctx, cancel: cancel,
	}
}

// consumeHeartbeat is how often the server confirms an idle pull request;
// see start.
const consumeHeartbeat = 500 * time.Millisecond // the least nats.go allows

func (s *stage) start(cons jetstream.Consumer) error {
	cc, err := cons.Consume(s.onMsg,
		jetstream.PullMaxMessages(max(s.buffer, 1)),
		// Re-pull every 5 s instead of 30: after the client reconnects to
		// another node, a pull request left on the lost one would otherwise
		// hold deliveries back until it expires (measured: 12-29 s pauses in
		// a cluster failover with 30 s, about 1 s with 5 s).
		jetstream.PullExpiry(5*time.Second),
		// nats.go skips its next pull when the message that should trigger
		// it is handled while the previous pull request is still being
		// written (checkPending's fetchInProgress test in jetstream/pull.go),
		// and then waits for two missed heartbeats before it pulls again: 5 s
		// without deliveries with the default heartbeat, seen under heavy
		// publish load. The least heartbeat nats.go allows makes that 1 s;
		// a deeper buffer (fan-out's) makes the window rarer, as every
		// message pulled ahead must be handled inside it.
		jetstream.PullHeartbeat(consumeHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			lvl := zerolog.WarnLevel
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				lvl = zerolog.DebugLevel // recovered: a new pull is on its way
			}
			s.log.WithLevel(lvl).Err(err).Msg("consume")
		}))
	if err != nil {
		return err
	}
	s.cc = cc
	return nil
}

// onMsg runs on the consumer's delivery goroutine: it waits for a free
// worker slot (backpressure on the pull) and hands the message over.
func (s *stage) onMsg(msg jetstream.Msg) {
	if s.stopping.Load() {
		_ = msg.Nak() // not started: back to the stream at once, for another dispatcher
		return
	}
	s.slots <- struct{}{}
	s.wg.Add(1)
	s.pool.run(func() {
		defer func() { <-s.slots; s.wg.Done() }()
		s.handle(s.ctx, msg)
	})
}

// stop stops pulling, hands back buffered messages, and waits for handlers
// to finish; after s.grace they are cancelled.
func (s *stage) stop() {
	s.stopping.Store(true)
	if s.cc != nil {
		s.cc.Drain()
		select {
		case <-s.cc.Closed():
		case <-time.After(5 * time.Second):
			s.cc.Stop()
		}
	}
	waitOrCancel(&s.wg, s.grace, s.cancel, func() {
		s.log.Warn().Msg("handlers still running at shutdown; cancelling them (their messages will be redelivered)")
	})
}

// waitOrCancel waits for wg; once grace has passed it calls giveUp and
// cancel, and waits on. cancel is called in any case before it returns.
func waitOrCancel(wg *sync.WaitGroup, grace time.Duration, cancel context.CancelFunc, giveUp func()) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		giveUp()
		cancel()
		<-done
	}
	cancel()
}
