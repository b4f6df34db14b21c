package dispatcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// client is the HTTP client of every attempt: connections kept alive and
// pooled per endpoint (Go's default of 2 idle connections per host makes
// them churn), redirects never followed, no proxy from the environment, and
// unless private targets are allowed, a check of the address actually
// dialled so that DNS cannot point herald at an internal service.
type client struct {
	http *http.Client
}

func newClient(timeout time.Duration, perHost int, allowPrivate bool) *client {
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = guardDial
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

// errForbiddenTarget: the endpoint resolved to an address herald refuses.
var errForbiddenTarget = errors.New("refused to connect to a private, loopback or link-local address (set HERALD_ALLOW_PRIVATE_TARGETS=true to allow)")

// guardDial is a net.Dialer Control hook: it runs after name resolution,
// on the address about to be dialled.
func guardDial(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", errForbiddenTarget, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || Forbidden(ip) {
		return fmt.Errorf("%w: %s", errForbiddenTarget, host)
	}
	return nil
}

var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this" network
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// Forbidden reports whether ip is an address herald refuses to deliver to
// unless private targets are allowed: loopback, private (RFC 1918, RFC
// 4193), link-local (169.254.0.0/16 with the cloud metadata service, fe80::/10),
// CGNAT, multicast, unspecified, reserved, and the IPv6 forms that embed
// such an IPv4 address (mapped, compatible, NAT64, 6to4).
func Forbidden(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case b[0] == 0 && b[1] == 0 && allZero(b[2:12]): // IPv4-compatible ::a.b.c.d
			return Forbidden(netip.AddrFrom4([4]byte(b[12:16])))
		case netip.MustParsePrefix("64:ff9b::/96").Contains(ip), netip.MustParsePrefix("64:ff9b:1::/48").Contains(ip): // NAT64
			return Forbidden(netip.AddrFrom4([4]byte(b[12:16])))
		case b[0] == 0x20 && b[1] == 0x02: // 6to4 2002:a.b.c.d::/48
			return Forbidden(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return false
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// describeTransportError turns a failed round trip into a short sentence.
func describeTransportError(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, errForbiddenTarget):
		return errForbiddenTarget
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
