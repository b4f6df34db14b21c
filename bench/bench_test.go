package bench

import (
	"strings"
	"testing"
	"time"
)

func TestRecording(t *testing.T) {
	t0 := time.Now()
	rec := (&receivers{}).record(2, 3, t0)
	rec.add(0, 0, t0.Add(5*time.Millisecond))
	rec.add(0, 0, t0.Add(9*time.Millisecond)) // a duplicate keeps the first receipt
	rec.add(1, 2, t0.Add(7*time.Millisecond))
	rec.add(2, 0, t0) // no such subscription
	rec.add(0, 3, t0) // no such event
	rec.add(-1, -1, t0)
	if got, dups, stray := rec.got.Load(), rec.dups.Load(), rec.stray.Load(); got != 2 || dups != 1 || stray != 3 {
		t.Errorf("got %d, dups %d, stray %d; want 2, 1, 3", got, dups, stray)
	}
	if err := rec.wait(10 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "2 of 6") {
		t.Errorf("wait with 2 of 6 arrived: %v", err)
	}
	if last := rec.last(); last != 7*time.Millisecond {
		t.Errorf("last receipt %s, want 7ms", last)
	}
	sent := []time.Duration{time.Millisecond, 0, 2 * time.Millisecond}
	lat := rec.latencies(sent)
	if len(lat) != 2 || lat[0] != 4*time.Millisecond || lat[1] != 5*time.Millisecond {
		t.Errorf("latencies %v, want [4ms 5ms]", lat)
	}
	for _, s := range []int{0, 1} {
		for n := range 3 {
			rec.add(s, n, t0)
		}
	}
	if err := rec.wait(time.Second); err != nil {
		t.Errorf("all arrived: %v", err)
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := range 1000 {
		d = append(d, time.Duration(i+1)*time.Millisecond)
	}
	for q, want := range map[float64]float64{0.5: 501, 0.99: 991, 0.999: 1000, 1: 1000} {
		if got := quantile(d, q); got != want {
			t.Errorf("quantile %v = %v ms, want %v", q, got, want)
		}
	}
	if got := quantile(nil, 0.99); got != 0 {
		t.Errorf("quantile of nothing = %v", got)
	}
}

func TestLine(t *testing.T) {
	line := Line(Result{Scenario: "throughput", System: "herald", Deliveries: 10, PerSecond: 5, Ratio: 0.5, Of: "of the baseline", Extra: map[string]float64{"b": 2, "a": 1.5}})
	for _, want := range []string{"throughput", "herald", "×0.50 of the baseline", "a=1.5  b=2"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

func TestUnknownScenario(t *testing.T) {
	err := Run(t.Context(), Options{Herald: "/nonexistent", Scenarios: []string{"speed"}}, func(Result) {})
	if err == nil || !strings.Contains(err.Error(), `unknown scenario "speed"`) || !strings.Contains(err.Error(), "throughput") {
		t.Errorf("error %v, want one naming the scenario and the known ones", err)
	}
}
