package main

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/docker/go-units"
	"github.com/rs/zerolog"
)

// memorySize is a size in bytes read from text such as "110MiB", "512m" or
// "2g" (binary units, case-insensitive, "b" optional); "0" turns the
// setting off.
type memorySize int64

// Decode implements envconfig.Decoder.
func (m *memorySize) Decode(v string) error {
	n, err := units.RAMInBytes(v)
	if err != nil {
		return err
	}
	*m = memorySize(n)
	return nil
}

// String prints the size the way it is written in configuration.
func (m memorySize) String() string { return units.BytesSize(float64(m)) }

// memoryOverhead is what the runtime holds besides the heap (goroutine
// stacks, its own structures), counted by the memory limit.
const memoryOverhead = 16 << 20

// memoryLimit is the soft limit that keeps the process at target while its
// live heap allows, and within 1.5 times the live heap (plus the runtime's
// own memory) after that: it never asks the collector to run more often
// than that, however much herald holds.
func memoryLimit(target, live uint64) uint64 {
	return max(target, live+live/2+memoryOverhead)
}

// tuneMemory holds herald's memory near target (HERALD_MEMORY_TARGET) with
// the Go runtime's soft memory limit, raised as the live heap grows so that
// garbage collection never has to run back to back. Go's default lets the
// heap reach twice the live data before it collects; most of herald's live
// data is the embedded NATS server's block buffers and dedupe ids, so a
// burst would otherwise double a resident size that a smaller headroom
// keeps at no measurable CPU cost. An operator who set GOMEMLIMIT or GOGC
// keeps control: herald then changes nothing. It returns when ctx ends.
func tuneMemory(ctx context.Context, target memorySize, log zerolog.Logger) {
	if target <= 0 {
		return
	}
	if os.Getenv("GOMEMLIMIT") != "" || os.Getenv("GOGC") != "" {
		log.Info().Msg("GOMEMLIMIT or GOGC is set: HERALD_MEMORY_TARGET is not applied")
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var limit uint64
	apply := func() {
		metrics.Read(sample)
		var live uint64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		next := memoryLimit(uint64(target), live)
		// Move only on a change of 1/16 or more: each call is cheap, but
		// there is no point chasing every collection.
		if d := int64(next) - int64(limit); limit == 0 || d > int64(limit/16) || -d > int64(limit/16) {
			limit = next
			debug.SetMemoryLimit(int64(limit))
		}
	}
	apply()
	defer debug.SetMemoryLimit(math.MaxInt64) // no limit, Go's default
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}
