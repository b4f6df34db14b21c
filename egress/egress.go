// Package egress decides which network addresses herald may deliver to.
// Customers choose their endpoint URLs; without this guard a URL (or a DNS
// name that resolves, or later rebinds) pointing at loopback, a private
// network or a cloud metadata service would let one tenant probe herald's
// own network.
//
// Two checks use the same list of forbidden addresses (Forbidden):
//
//   - Control, a net.Dialer Control hook, on the address actually dialled,
//     after name resolution. This is the one that counts: DNS rebinding and
//     names that resolve to private addresses cannot slip past it.
//   - CheckURL, when a subscription is stored: a URL whose host is an IP
//     literal herald would refuse, or localhost, is refused at once with a
//     clear answer instead of failing every delivery later. Hosts written
//     as odd numbers (0x7f.1, 2130706433, 127.1, 0177.0.0.1), which
//     browsers and C resolvers read as IPv4 addresses and Go does not, are
//     refused as invalid in every mode.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrForbidden: the endpoint resolved to an address herald refuses.
var ErrForbidden = errors.New("refused to connect to a private, loopback or link-local address (set HERALD_ALLOW_PRIVATE_TARGETS=true to allow)")

// ErrNumericHost: a URL's host is a number that is not a dotted-quad IPv4
// address (0x7f.1, 2130706433, 127.1, 0177.0.0.1, 1.2.3.4.5). Browsers and
// C resolvers read such hosts as IPv4 addresses in ways Go does not; herald
// refuses them rather than guess.
var ErrNumericHost = errors.New("host is a number but not a dotted-quad IPv4 address such as 203.0.113.7")

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

// forbiddenPrefixes are the ranges, beyond what netip.Addr's predicates
// name (loopback, RFC 1918 and RFC 4193 private, link-local, multicast,
// unspecified), that are not globally reachable unicast (IANA's
// special-purpose registries) and so have no business receiving webhooks.
var forbiddenPrefixes = []netip.Prefix{
	// IPv4.
	netip.MustParsePrefix("0.0.0.0/8"),       // "this" network (0.0.0.0 dials the local host)
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255 broadcast
	// IPv6.
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215): the operator's own network
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001::/32"),      // Teredo: embeds an obfuscated IPv4 address
	netip.MustParsePrefix("2001:2::/48"),    // benchmarking
	netip.MustParsePrefix("2001:10::/28"),   // ORCHID (deprecated)
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("3fff::/20"),      // documentation (RFC 9637)
	netip.MustParsePrefix("5f00::/16"),      // segment routing SIDs (RFC 9602)
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated, still routed inside some sites)
}

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64 prefix: ::a.b.c.d reaches IPv4 a.b.c.d
	sixToFour  = netip.MustParsePrefix("2002::/16")    // 6to4: 2002:AABB:CCDD::/48 is IPv4 AA.BB.CC.DD's network
	translated = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// Forbidden reports whether ip is an address herald refuses to deliver to
// unless private targets are allowed: loopback, private (RFC 1918, RFC
// 4193), link-local (169.254.0.0/16 with the cloud metadata service
// 169.254.169.254, fe80::/10), CGNAT, multicast, unspecified, broadcast,
// reserved and documentation ranges, site-local fec0::/10, Teredo, and the
// IPv6 forms that embed a forbidden IPv4 address: mapped (::ffff:a.b.c.d),
// compatible (::a.b.c.d), translated (::ffff:0:a.b.c.d), NAT64
// (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::). The zero Addr is
// forbidden.
func Forbidden(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
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
		case allZero(b[:12]): // IPv4-compatible ::a.b.c.d (deprecated), and :: and ::1 again
			return true
		case translated.Contains(ip), nat64.Contains(ip):
			return Forbidden(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
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

// CheckURL checks a subscription URL's host before it is stored. It
// refuses, wrapping ErrNumericHost, a host written as a number that is not
// a dotted-quad IPv4 address, whatever allowPrivate says. Unless
// allowPrivate, it also refuses, wrapping ErrForbidden, a host that is an
// IP literal Forbidden refuses (in any spelling netip or net.ParseIP
// accepts, zones included) or a name of the local host (localhost,
// *.localhost). Other names pass: they are checked when dialled, by
// Control. A URL that does not parse passes too; validating its shape is
// the caller's job.
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	return CheckHost(u.Hostname(), allowPrivate)
}

// CheckHost is CheckURL on a URL's host name (without port or brackets).
func CheckHost(host string, allowPrivate bool) error {
	if ip, ok := parseLiteral(host); ok {
		if !allowPrivate && Forbidden(ip) {
			return fmt.Errorf("%w: %s", ErrForbidden, ip.WithZone(""))
		}
		return nil
	}
	if endsInNumber(host) {
		return ErrNumericHost
	}
	if !allowPrivate && isLocalhost(host) {
		return fmt.Errorf("%w: %s", ErrForbidden, "localhost")
	}
	return nil
}

// parseLiteral reads host as an IP address the way Go's dialer would: netip
// (which takes zones), or net.ParseIP.
func parseLiteral(host string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, true
	}
	if ip := net.ParseIP(host); ip != nil {
		a, ok := netip.AddrFromSlice(ip)
		return a, ok
	}
	return netip.Addr{}, false
}

// endsInNumber reports whether host's last label (ignoring one trailing
// dot) is a number, decimal or 0x-hexadecimal: the WHATWG URL standard's
// test for a host that browsers then parse as an IPv4 address. A host that
// ends in a number and is not a plain dotted quad is ambiguous.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if hex, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// isLocalhost reports whether host names the local host (RFC 6761):
// localhost or a name under .localhost, in any case, with or without a
// trailing dot.
func isLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}
