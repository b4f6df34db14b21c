// Package egress decides which network addresses herald may deliver to.
// Customers choose their endpoint URLs; without this guard a URL (or a DNS
// name that resolves, or later rebinds) pointing at loopback, a private
// network or a cloud metadata service would let one tenant probe herald's
// own network.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrForbidden: the endpoint resolved to an address herald refuses.
var ErrForbidden = errors.New("refused to connect to a private, loopback or link-local address (set HERALD_ALLOW_PRIVATE_TARGETS=true to allow)")

// Control is a net.Dialer Control hook: it runs after name resolution, on
// the address about to be dialled, so a name that resolves (or rebinds) to
// a forbidden address is refused too.
func Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbidden, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || Forbidden(ip) {
		return fmt.Errorf("%w: %s", ErrForbidden, host)
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
