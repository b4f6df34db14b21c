package api

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Failed authentication limits: each client address may fail
// DefaultAuthFailureBurst times in a row, then once per
// DefaultAuthFailureInterval; a failure beyond that is answered 429 with
// Retry-After instead of 401. Requests that authenticate are never
// limited.
const (
	DefaultAuthFailureBurst    = 20
	DefaultAuthFailureInterval = 6 * time.Second // 10 a minute
	// DefaultAuthFailureClients bounds how many client addresses are
	// tracked at once.
	DefaultAuthFailureClients = 10_000
)

// AuthLimit configures the limit on failed authentication. The zero value
// means the defaults.
type AuthLimit struct {
	// Burst is how many failures in a row a client may have before the
	// limit applies (default DefaultAuthFailureBurst). Negative: no limit.
	Burst int
	// Interval is how often one more failure is allowed once the burst is
	// spent (default DefaultAuthFailureInterval).
	Interval time.Duration
	// Clients bounds the addresses tracked (default
	// DefaultAuthFailureClients). When it is reached, addresses whose
	// allowance has refilled are forgotten first, then the least recently
	// seen.
	Clients int
}

func (l AuthLimit) withDefaults() AuthLimit {
	if l.Burst == 0 {
		l.Burst = DefaultAuthFailureBurst
	}
	if l.Interval <= 0 {
		l.Interval = DefaultAuthFailureInterval
	}
	if l.Clients <= 0 {
		l.Clients = DefaultAuthFailureClients
	}
	return l
}

// failureLimiter is a token bucket of failed authentications per client
// address: a mutex and a map, the buckets evicted when the map is full.
type failureLimiter struct {
	burst    float64
	interval time.Duration
	max      int
	now      func() time.Time

	mu      sync.Mutex
	clients map[netip.Prefix]*bucket
}

// bucket holds tokens as of last: a failure takes one.
type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureLimiter(l AuthLimit, now func() time.Time) *failureLimiter {
	if l.Burst < 0 {
		return nil
	}
	return &failureLimiter{
		burst: float64(l.Burst), interval: l.Interval, max: l.Clients, now: now,
		clients: map[netip.Prefix]*bucket{},
	}
}

// refill brings b's tokens up to now.
func (f *failureLimiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(f.burst, b.tokens+float64(el)/float64(f.interval))
		b.last = now
	}
}

// fail records a failed authentication from client. It reports whether
// the failure is within the limit; when not, retryAfter is how long until
// the next one is.
func (f *failureLimiter) fail(client netip.Prefix) (ok bool, retryAfter time.Duration) {
	if f == nil {
		return true, 0
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	b, found := f.clients[client]
	if !found {
		if len(f.clients) >= f.max {
			f.evict(now)
		}
		b = &bucket{tokens: f.burst, last: now}
		f.clients[client] = b
	}
	f.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) * float64(f.interval)))
	return false, wait
}

// evict makes room: it forgets every client whose bucket has refilled
// (forgetting it changes nothing), and if none has, the least recently
// seen one.
func (f *failureLimiter) evict(now time.Time) {
	var oldest netip.Prefix
	var oldestAt time.Time
	for p, b := range f.clients {
		f.refill(b, now)
		if b.tokens >= f.burst {
			delete(f.clients, p)
			continue
		}
		if oldestAt.IsZero() || b.last.Before(oldestAt) {
			oldest, oldestAt = p, b.last
		}
	}
	if len(f.clients) >= f.max {
		delete(f.clients, oldest)
	}
}

// tracked is the number of addresses held (for tests).
func (f *failureLimiter) tracked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.clients)
}

// clientKey is what the limit is kept by: the client's IPv4 address, or
// its IPv6 /64 (one host commonly holds a whole /64). The remote address
// is the TCP peer's; X-Forwarded-For is not trusted, so behind a proxy
// every client shares the proxy's allowance (which only ever delays
// failing requests).
func clientKey(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{} // one shared bucket for what cannot be read
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}
