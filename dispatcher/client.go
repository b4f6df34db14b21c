package dispatcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
}

func newClient(timeout time.Duration, perHost int, allowPrivate bool) *client {
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = egress.Control
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(timeout, 5*time.Second),
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &client{http: &http.Client{
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
// port of the URL).
type endpointLimits struct {
	per int
	mu  sync.Mutex
	n   map[string]int
}

func newEndpointLimits(per int) *endpointLimits {
	return &endpointLimits{per: per, n: map[string]int{}}
}

// acquire takes a slot for rawURL's endpoint, or reports false when all of
// its slots are taken. release gives the slot back.
func (l *endpointLimits) acquire(rawURL string) (release func(), ok bool) {
	key := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		key = u.Scheme + "://" + u.Host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.per {
		return nil, false
	}
	l.n[key]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.n[key]--; l.n[key] <= 0 {
			delete(l.n, key)
		}
	}, true
}
