package dispatcher

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWorkersReuseAndStop: functions run at once on as many goroutines as
// needed; a later function runs on an idle one rather than a new one; stop
// lets the idle goroutines go.
func TestWorkersReuseAndStop(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(time.Minute)
	release := make(chan struct{})
	var started, done sync.WaitGroup
	for range 20 {
		started.Add(1)
		done.Add(1)
		w.run(func() { started.Done(); <-release; done.Done() })
	}
	started.Wait() // all 20 run at once: none waited for another
	close(release)
	done.Wait()
	peak := runtime.NumGoroutine()
	if peak-before < 20 {
		t.Fatalf("%d goroutines for 20 functions at once", peak-before)
	}
	var again sync.WaitGroup
	for range 10 { // one after the other: each finds an idle goroutine
		again.Add(1)
		w.run(again.Done)
		again.Wait()
	}
	if n := runtime.NumGoroutine(); n > peak {
		t.Errorf("goroutines grew from %d to %d running on idle workers", peak, n)
	}
	w.stop()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left after stop, %d before", n, before)
	}
	ran := make(chan struct{})
	w.run(func() { close(ran) }) // still works after stop
	<-ran
}

// TestWorkersIdleExit: an idle goroutine exits after the idle time.
func TestWorkersIdleExit(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(20 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	w.run(wg.Done)
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left after the idle time, %d before", n, before)
	}
}
