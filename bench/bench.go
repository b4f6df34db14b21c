// Package bench is `herald bench`: it starts real herald processes (the
// binary itself, `herald serve` with its JetStream embedded on file
// storage, and `herald dispatch`), real HTTP receivers on loopback, and
// runs named scenarios against them, each beside a baseline where one
// makes sense: the bare pipeline a webhook service on JetStream cannot
// beat (publish → one pull consumer → HTTP POST → ack, in a process of its
// own), run in the same invocation on the same machine, so that every
// figure is also a ratio to what the machine can do.
//
// Each scenario starts fresh processes in a temporary directory, so that
// the peak RSS the kernel reports for the herald process (VmHWM) belongs
// to that scenario alone. CPU seconds are the herald processes' user and
// system time over the measured part.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options are a run's settings.
type Options struct {
	// Herald is the herald binary the processes run (the harness's own
	// executable when run as `herald bench`).
	Herald string
	// Scenarios to run, in order; empty runs all.
	Scenarios []string
	// Scale multiplies every scenario's size (events, subscriptions,
	// durations); 1 is the documented size.
	Scale float64
	// Dir holds the processes' data directories (default: a temporary
	// directory, removed afterwards).
	Dir string
	// Progress, if set, gets a line as each part of a scenario starts.
	Progress io.Writer
}

// Result is one system's figures in one scenario.
type Result struct {
	Scenario string `json:"scenario"`
	System   string `json:"system"` // "herald", "baseline", or a variant such as "herald, 2 dispatchers"
	Events   int    `json:"events"`
	// Deliveries that arrived (distinct), and repeated receipts.
	Deliveries int64 `json:"deliveries"`
	Duplicates int64 `json:"duplicates"`
	// Seconds from the first publish to the last receipt.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"deliveries_per_second"`
	// Publish→receipt latency of every delivery, in milliseconds.
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	// PeakRSS of the herald process (the largest one, with several), MiB.
	PeakRSS float64 `json:"peak_rss_mib"`
	// CPU seconds of the herald processes over the measurement.
	CPU float64 `json:"cpu_seconds"`
	// Ratio compares this result with another (Of says which figure).
	Ratio float64 `json:"ratio,omitempty"`
	Of    string  `json:"ratio_of,omitempty"`
	// Extra holds a scenario's own figures.
	Extra map[string]float64 `json:"extra,omitempty"`
}

// scenario runs one named measurement and returns its results.
type scenario struct {
	name string
	what string
	run  func(ctx context.Context, r *runner) ([]Result, error)
}

// Scenarios are the scenario names, in the order they run by default.
func Scenarios() []string {
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.name
	}
	return names
}

// Describe is a line per scenario: its name and what it measures.
func Describe() string {
	var b strings.Builder
	for _, s := range all {
		fmt.Fprintf(&b, "  %-11s %s\n", s.name, s.what)
	}
	return b.String()
}

// Run runs the scenarios and calls report with each result as it comes.
func Run(ctx context.Context, o Options, report func(Result)) error {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Herald == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Herald = exe
	}
	todo := all
	if len(o.Scenarios) > 0 {
		todo = nil
		for _, name := range o.Scenarios {
			i := slices.IndexFunc(all, func(s scenario) bool { return s.name == name })
			if i < 0 {
				return fmt.Errorf("unknown scenario %q; the scenarios are %s", name, strings.Join(Scenarios(), ", "))
			}
			todo = append(todo, all[i])
		}
	}
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "herald-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	r := &runner{o: o}
	for _, s := range todo {
		r.progress("%s: %s", s.name, s.what)
		results, err := s.run(ctx, r)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		for _, res := range results {
			res.Scenario = s.name
			report(res)
		}
	}
	return nil
}

// runner carries what scenarios share: the options, fresh directories,
// and the throughput baseline once measured (fanout compares with it).
type runner struct {
	o        Options
	dirs     int
	baseline *Result
}

func (r *runner) progress(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", args...)
	}
}

// dir is a new, empty data directory.
func (r *runner) dir() string {
	r.dirs++
	d := fmt.Sprintf("%s/%d", r.o.Dir, r.dirs)
	_ = os.MkdirAll(d, 0o700)
	return d
}

// n scales a size, never below min.
func (r *runner) n(size, minimum int) int {
	return max(minimum, int(math.Round(float64(size)*r.o.Scale)))
}

// Line is res as one summary line.
func Line(res Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-24s %8d deliveries %9.0f/s  p50 %7.2f ms  p99 %8.2f ms  p99.9 %8.2f ms  RSS %5.0f MiB  CPU %6.1f s",
		res.Scenario, res.System, res.Deliveries, res.PerSecond, res.P50, res.P99, res.P999, res.PeakRSS, res.CPU)
	if res.Duplicates > 0 {
		fmt.Fprintf(&b, "  %d duplicates", res.Duplicates)
	}
	if res.Of != "" {
		fmt.Fprintf(&b, "  ×%.2f %s", res.Ratio, res.Of)
	}
	keys := make([]string, 0, len(res.Extra))
	for k := range res.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s=%s", k, trim(res.Extra[k]))
	}
	return b.String()
}

func trim(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.3g", f)
}

// JSON is results as the document `herald bench --json` prints.
func JSON(results []Result, o Options, started time.Time) ([]byte, error) {
	host, _ := os.Hostname()
	return json.MarshalIndent(struct {
		Started time.Time `json:"started"`
		Host    string    `json:"host"`
		CPUs    int       `json:"cpus"`
		Scale   float64   `json:"scale"`
		Results []Result  `json:"results"`
	}{started, host, runtime.NumCPU(), o.Scale, results}, "", "  ")
}
