package dispatcher

import (
	"sync"
	"time"
)

// workers runs functions on goroutines that outlive them. A goroutine that
// finished one function waits a while for the next instead of exiting, so
// the stack it grew (an HTTP attempt, a schema validation) serves the next
// one too: a goroutine per message started with a small stack and copied it
// two or three times, about 8 % of the CPU at full throughput.
//
// It bounds nothing: callers hold a slot before they call run, and there are
// never more goroutines than functions running at once plus the idle ones,
// which exit after idle or at stop.
type workers struct {
	idle     time.Duration
	work     chan func()
	quit     chan struct{}
	stopOnce sync.Once
}

func newWorkers(idle time.Duration) *workers {
	return &workers{idle: idle, work: make(chan func()), quit: make(chan struct{})}
}

// run runs f on an idle goroutine, or on a new one if none is idle.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		f()
		f = nil // not kept alive while idle
		t.Reset(w.idle)
		select {
		case f = <-w.work:
		case <-t.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop makes the idle goroutines exit; those running finish their function
// first. run still works after stop, on a goroutine that exits after f.
func (w *workers) stop() { w.stopOnce.Do(func() { close(w.quit) }) }
