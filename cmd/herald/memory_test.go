package main

import "testing"

func TestMemorySize(t *testing.T) {
	for in, want := range map[string]memorySize{"110MiB": 110 << 20, "512m": 512 << 20, "2g": 2 << 30, "0": 0, "1048576": 1 << 20} {
		var m memorySize
		if err := m.Decode(in); err != nil || m != want {
			t.Errorf("%q: %d (%v), want %d", in, m, err, want)
		}
	}
	for _, in := range []string{"lots", "-5m", "12parsecs", ""} {
		var m memorySize
		if err := m.Decode(in); err == nil {
			t.Errorf("%q accepted as %d", in, m)
		}
	}
}

// TestMemoryLimit: the target while the live heap leaves room, then 1.5
// times the live heap and the runtime's own memory, never less.
func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ target, live, want uint64 }{
		{110 * mib, 0, 110 * mib},
		{110 * mib, 60 * mib, 110 * mib},
		{110 * mib, 62 * mib, 110 * mib},
		{110 * mib, 64 * mib, 112 * mib},
		{110 * mib, 1000 * mib, 1516 * mib},
	} {
		if got := memoryLimit(c.target, c.live); got != c.want {
			t.Errorf("target %d MiB, live %d MiB: limit %d MiB, want %d", c.target/mib, c.live/mib, got/mib, c.want/mib)
		}
	}
}
