package dispatcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herald-webhooks/herald/egress"
)

// client is the HTTP client of every attempt: connections kept alive and
// pooled per endpoint (Go's default of 2 idle connections per host makes
// them churn), redirects never followed, no proxy from the environment, and
// unless private targets are allowed, egress.Control on the address actually
// dialled so that DNS cannot point herald at an internal service.
type client struct {
	http *http.Client
	// rt is http's transport. Attempts go straight to it: herald never
	// follows a redirect (a 3xx is a failed attempt), and Client.Do copies
	// every request's headers in case it has to.
	rt http.RoundTripper
}

// newClient returns a client that keeps up to perHost idle connections to
// one endpoint and idle in total (the least recently used is closed
// beyond that).
func newClient(timeout time.Duration, perHost, idle int, allowPrivate bool) *client {
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = egress.Control
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(timeout, 5*time.Second),
		ExpectContinueTimeout: time.Second,
		// Herald keeps the first kilobyte of an answer as it came; asking
		// for gzip would cost a header map per attempt and a decompressor
		// per compressed answer.
		DisableCompression: true,
		TLSClientConfig:    &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &client{rt: tr, http: &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is a failed attempt
		},
	}}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// describeTransportError turns a failed round trip into a short sentence.
func describeTransportError(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, egress.ErrForbidden):
		return egress.ErrForbidden
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer within %s", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET):
		return errors.New("connection reset")
	}
	return err
}

// endpointLimits bounds concurrent attempts per endpoint (scheme, host and
// port of the URL) and keeps a moving average of each endpoint's attempt
// duration, so a deferred delivery comes back about when a slot frees up.
//
// The bound adapts: an endpoint whose attempts average under fastEndpoint
// may have fastFactor times the configured concurrency in flight, since
// it frees its slots quickly; one that is slow, unknown or hanging (its
// average grows as its attempts time out) keeps the configured bound, so it
// holds at most its share of the workers.
type endpointLimits struct {
	per int
	mu  sync.Mutex
	m   map[string]*endpointState
}

type endpointState struct {
	started []time.Time   // start of each attempt in flight
	avg     time.Duration // exponentially weighted attempt duration
	// freed wakes one delivery waiting for a slot (acquireWait) when an
	// attempt ends: a signal, not a broadcast, so a release wakes one
	// waiter rather than all of them.
	freed chan struct{}
}

// An endpoint answering faster than fastEndpoint on average may have
// fastFactor times the configured concurrency.
const (
	fastEndpoint = 50 * time.Millisecond
	fastFactor   = 4
)

func newEndpointLimits(per int) *endpointLimits {
	return &endpointLimits{per: per, m: map[string]*endpointState{}}
}

// endpointKey is scheme://host[:port] of rawURL: a substring of it when
// there is no user info, so the per-attempt lookups allocate nothing.
func endpointKey(rawURL string) string {
	i := strings.Index(rawURL, "://")
	if i <= 0 {
		return rawURL
	}
	rest := rawURL[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		return rawURL[:i+3] + rest[at+1:end]
	}
	return rawURL[:i+3+end]
}

// acquire takes a slot for rawURL's endpoint, or reports false when all of
// its slots are taken. release gives the slot back with the attempt's
// duration.
func (l *endpointLimits) acquire(rawURL string) (release func(time.Duration), ok bool) {
	release, _ = l.try(rawURL)
	return release, release != nil
}

// acquireWait is acquire that waits up to patience for a slot of an
// endpoint answering faster than fastEndpoint, instead of giving up at
// once: such an endpoint frees a slot within milliseconds, while a delivery
// handed back to JetStream costs a NAK and a redelivery. With one fast
// endpoint taking all the traffic, the messages pulled beyond its slots
// would otherwise go round that loop again and again. A slow, unknown or
// hanging endpoint is refused at once, as by acquire, so waiting on it
// never holds a worker.
func (l *endpointLimits) acquireWait(ctx context.Context, rawURL string, patience time.Duration) (release func(time.Duration), ok bool) {
	var timer *time.Timer
	for {
		release, freed := l.try(rawURL)
		if release != nil || freed == nil {
			if timer != nil {
				timer.Stop()
			}
			return release, release != nil
		}
		if timer == nil {
			timer = time.NewTimer(patience)
		}
		select {
		case <-freed:
		case <-timer.C:
			return nil, false
		case <-ctx.Done():
			timer.Stop()
			return nil, false
		}
	}
}

// fast reports whether rawURL's endpoint answers faster than fastEndpoint
// on average; an endpoint never tried is not known to.
func (l *endpointLimits) fast(rawURL string) bool {
	key := endpointKey(rawURL)
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[key]
	return st != nil && st.avg > 0 && st.avg < fastEndpoint
}

// try takes a slot, or returns the channel that signals a freed slot when
// the endpoint is fast and full (nil when it is not fast).
func (l *endpointLimits) try(rawURL string) (release func(time.Duration), freed <-chan struct{}) {
	key := endpointKey(rawURL)
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[key]
	if st == nil {
		st = &endpointState{freed: make(chan struct{}, 1)}
		l.m[key] = st
	}
	limit := l.per
	if st.avg > 0 && st.avg < fastEndpoint {
		limit *= fastFactor
	}
	if len(st.started) >= limit {
		if limit > l.per {
			return nil, st.freed
		}
		return nil, nil
	}
	start := time.Now()
	st.started = append(st.started, start)
	if len(st.started) < limit {
		// Two releases may have left one wake-up: pass it on to the next
		// waiter while slots remain.
		select {
		case st.freed <- struct{}{}:
		default:
		}
	}
	return func(took time.Duration) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if i := slices.Index(st.started, start); i >= 0 {
			st.started = slices.Delete(st.started, i, i+1)
		}
		if st.avg == 0 {
			st.avg = took
		} else {
			st.avg += (took - st.avg) / 8
		}
		select {
		case st.freed <- struct{}{}:
		default: // a wake-up is pending already
		}
		if len(st.started) == 0 && st.avg < 100*time.Microsecond {
			delete(l.m, key) // forget idle, very fast endpoints; others keep their average
		}
	}, nil
}

// busyDelay is how long a delivery to a busy endpoint waits before it is
// offered again: twice the endpoint's average attempt, or how long its
// oldest attempt in flight has run if that is longer (an endpoint that
// hangs has no finished attempts to average yet), between 100 ms and the
// attempt timeout, with jitter so deferred deliveries do not return in a
// herd. Each deferral is a redelivery, which JetStream serves before fresh
// messages: deferring too eagerly would slow every other endpoint.
func (l *endpointLimits) busyDelay(rawURL string, timeout time.Duration) time.Duration {
	l.mu.Lock()
	var est time.Duration
	if st := l.m[endpointKey(rawURL)]; st != nil {
		est = 2 * st.avg
		if len(st.started) > 0 {
			est = max(est, time.Since(st.started[0]))
		}
	}
	l.mu.Unlock()
	d := min(max(est, 100*time.Millisecond), timeout)
	return d + rand.N(d/2+1)
}
