package dispatcher

import (
	"context"
	"net/url"
	"testing"
	"time"
)

func TestEndpointLimits(t *testing.T) {
	const per = 2
	fill := func(l *endpointLimits, url string) (n int, releases []func(time.Duration)) {
		for {
			r, ok := l.acquire(url)
			if !ok {
				return n, releases
			}
			n++
			releases = append(releases, r)
		}
	}
	t.Run("an unknown endpoint gets the configured bound", func(t *testing.T) {
		l := newEndpointLimits(per)
		if n, _ := fill(l, "http://a.example/x"); n != per {
			t.Errorf("%d slots, want %d", n, per)
		}
	})
	t.Run("endpoints are told apart by scheme, host and port, not path", func(t *testing.T) {
		l := newEndpointLimits(per)
		fill(l, "http://a.example/x")
		if _, ok := l.acquire("http://a.example/other"); ok {
			t.Error("another path of a full endpoint got a slot")
		}
		if _, ok := l.acquire("http://a.example:8080/x"); !ok {
			t.Error("another port was refused")
		}
	})
	t.Run("a fast endpoint gets four times the bound", func(t *testing.T) {
		l := newEndpointLimits(per)
		_, rs := fill(l, "http://fast.example/")
		for _, r := range rs {
			r(2 * time.Millisecond)
		}
		if n, _ := fill(l, "http://fast.example/"); n != per*fastFactor {
			t.Errorf("%d slots, want %d", n, per*fastFactor)
		}
	})
	t.Run("a slow endpoint keeps the bound", func(t *testing.T) {
		l := newEndpointLimits(per)
		_, rs := fill(l, "http://slow.example/")
		for _, r := range rs {
			r(2 * time.Second)
		}
		if n, _ := fill(l, "http://slow.example/"); n != per {
			t.Errorf("%d slots, want %d", n, per)
		}
	})
	t.Run("a busy endpoint's deferral grows with its oldest attempt, within bounds", func(t *testing.T) {
		l := newEndpointLimits(per)
		if d := l.busyDelay("http://new.example/", 10*time.Second); d < 100*time.Millisecond || d > 150*time.Millisecond {
			t.Errorf("deferral of an unknown endpoint %s, want 100-150ms", d)
		}
		_, rs := fill(l, "http://hang.example/")
		l.m[endpointKey("http://hang.example/")].started[0] = time.Now().Add(-4 * time.Second)
		if d := l.busyDelay("http://hang.example/", 10*time.Second); d < 4*time.Second || d > 6*time.Second {
			t.Errorf("deferral behind a 4 s old attempt %s, want 4-6s", d)
		}
		l.m[endpointKey("http://hang.example/")].started[0] = time.Now().Add(-time.Minute)
		if d := l.busyDelay("http://hang.example/", 10*time.Second); d > 15*time.Second {
			t.Errorf("deferral %s exceeds the attempt timeout plus jitter", d)
		}
		for _, r := range rs {
			r(time.Second)
		}
	})
	t.Run("a delivery waits for a fast endpoint's slot, not for a slow one's", func(t *testing.T) {
		ctx := context.Background()
		l := newEndpointLimits(per)
		_, rs := fill(l, "http://fast.example/")
		for _, r := range rs {
			r(2 * time.Millisecond)
		}
		_, rs = fill(l, "http://fast.example/")
		got := make(chan func(time.Duration))
		go func() {
			release, _ := l.acquireWait(ctx, "http://fast.example/", 10*time.Second)
			got <- release
		}()
		time.Sleep(10 * time.Millisecond)
		rs[0](2 * time.Millisecond) // one attempt ends: the waiting delivery takes its slot
		rs[0] = <-got
		if rs[0] == nil {
			t.Fatal("the waiting delivery did not get the freed slot")
		}
		if _, ok := l.acquireWait(ctx, "http://fast.example/", 20*time.Millisecond); ok {
			t.Error("a slot was granted while all were taken")
		}

		_, slow := fill(l, "http://slow.example/")
		start := time.Now()
		if _, ok := l.acquireWait(ctx, "http://slow.example/", 10*time.Second); ok || time.Since(start) > time.Second {
			t.Errorf("a full endpoint of unknown speed: granted %v after %s, want refused at once", ok, time.Since(start))
		}
		for _, r := range append(rs, slow...) {
			r(time.Millisecond)
		}
	})
}

// TestEndpointKey: the endpoint of a URL is its scheme, host and port, as
// net/url reads them, without user info, path, query or fragment.
func TestEndpointKey(t *testing.T) {
	for _, raw := range []string{
		"https://hooks.example.com/a/b?c=d#e", "http://127.0.0.1:8080/hook", "http://[::1]:9000",
		"https://user:pa@ss@host.example:8443/x", "http://host.example?q", "http://host.example#f",
		"https://UPPER.example/Path",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := endpointKey(raw), u.Scheme+"://"+u.Host; got != want {
			t.Errorf("endpointKey(%q) = %q, want %q", raw, got, want)
		}
	}
	if got := endpointKey("not a url"); got != "not a url" {
		t.Errorf("endpointKey of a non-URL = %q", got)
	}
}

func BenchmarkEndpointKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = endpointKey("https://hooks.example.com:8443/video/events?tenant=acme")
	}
}
