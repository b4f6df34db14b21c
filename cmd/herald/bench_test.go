package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/herald-webhooks/herald/bench"
)

// TestBenchShortForm runs `herald bench` through the real binary with
// every scenario at a hundredth of its size: each starts its processes,
// delivers every event and reports figures that add up.
func TestBenchShortForm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dozen processes")
	}
	bin, err := buildHerald()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "bench", "--scale", "0.01", "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("herald bench: %v\n%s", err, stderr.String())
	}
	t.Logf("summary:\n%s", stderr.String())
	var doc struct {
		Scale   float64
		Results []bench.Result
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout.String())
	}
	seen := map[string]int{}
	for _, r := range doc.Results {
		seen[r.Scenario]++
		if r.Deliveries <= 0 || r.PerSecond <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.P999 < r.P99 {
			t.Errorf("%s/%s: implausible figures %+v", r.Scenario, r.System, r)
		}
		if r.PeakRSS <= 0 || r.CPU < 0 {
			t.Errorf("%s/%s: no process figures: RSS %v MiB, CPU %v s", r.Scenario, r.System, r.PeakRSS, r.CPU)
		}
	}
	for _, s := range bench.Scenarios() {
		if seen[s] == 0 {
			t.Errorf("no result for scenario %s", s)
		}
	}
	for _, s := range []string{"throughput", "latency", "backlog", "scale-out"} {
		if seen[s] != 2 {
			t.Errorf("scenario %s: %d results, want 2 (herald and what it is compared with)", s, seen[s])
		}
	}
}
