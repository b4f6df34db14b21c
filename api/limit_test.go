package api

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	f := newFailureLimiter(AuthLimit{Burst: 2, Interval: time.Second, Clients: 100}.withDefaults(), clock)
	addr := func(i int) netip.Prefix {
		return clientKey(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255))
	}

	t.Run("a flood of addresses never holds more than the bound", func(t *testing.T) {
		for i := range 10_000 {
			f.fail(addr(i))
			if n := f.tracked(); n > 100 {
				t.Fatalf("tracking %d addresses, bound 100", n)
			}
		}
	})
	t.Run("refilled addresses are forgotten before busy ones", func(t *testing.T) {
		busy := clientKey("192.0.2.1:1")
		f.fail(busy)
		f.fail(busy)
		if ok, _ := f.fail(busy); ok {
			t.Fatal("the third failure of a burst of 2 passed")
		}
		// Everyone else refills; busy keeps failing so it never does.
		now = now.Add(10 * time.Second)
		for range 20 {
			f.fail(busy)
		}
		for i := range 5 {
			f.fail(addr(100_000 + i))
		}
		if ok, _ := f.fail(busy); ok {
			t.Error("a busy address was forgotten while idle ones were kept")
		}
	})
	t.Run("an idle address is forgotten once refilled", func(t *testing.T) {
		g := newFailureLimiter(AuthLimit{Burst: 1, Interval: time.Second, Clients: 2}.withDefaults(), clock)
		a, b, c := clientKey("192.0.2.1:1"), clientKey("192.0.2.2:1"), clientKey("192.0.2.3:1")
		g.fail(a)
		g.fail(b)
		now = now.Add(time.Hour)
		g.fail(c) // a and b refilled: both dropped
		if n := g.tracked(); n != 1 {
			t.Errorf("tracking %d, want 1", n)
		}
	})
}

func TestClientKey(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"203.0.113.9:1234", "203.0.113.9/32"},
		{"[::ffff:203.0.113.9]:1234", "203.0.113.9/32"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:443", "fe80::/64"},
		{"garbage", "invalid Prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			if got := clientKey(tt.remote).String(); got != tt.want {
				t.Errorf("clientKey(%q) = %s, want %s", tt.remote, got, tt.want)
			}
		})
	}
}
