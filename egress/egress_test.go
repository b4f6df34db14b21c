package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-webhooks/herald/egress"
)

func TestForbidden(t *testing.T) {
	tests := []struct {
		addr      string
		forbidden bool
	}{
		// IPv4 that herald refuses.
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"100.64.0.1", true},
		{"100.127.255.254", true},
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"169.254.169.254", true},
		{"169.254.0.1", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.0.0.8", true},
		{"192.0.2.1", true},
		{"192.88.99.1", true},
		{"192.168.1.1", true},
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"198.51.100.7", true},
		{"203.0.113.7", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		// IPv6 that herald refuses.
		{"::", true},
		{"::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fc00::1", true},
		{"fd12:3456:789a::1", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"ff0e::1", true},
		{"100::1", true},
		{"2001:db8::1", true},
		{"2001:2::1", true},
		{"2001:10::1", true},
		{"3fff::1", true},
		{"5f00::1", true},
		{"64:ff9b:1::1", true},
		// IPv6 forms that embed a forbidden IPv4 address.
		{"::ffff:127.0.0.1", true},
		{"::ffff:7f00:1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:10.0.0.1", true},
		{"::127.0.0.1", true},
		{"::8.8.8.8", true}, // IPv4-compatible addresses are deprecated: all refused
		{"::ffff:0:127.0.0.1", true},
		{"::ffff:0:10.1.2.3", true},
		{"64:ff9b::127.0.0.1", true},
		{"64:ff9b::a9fe:a9fe", true},
		{"64:ff9b::10.0.0.1", true},
		{"2002:7f00:1::", true},
		{"2002:a9fe:a9fe::1", true},
		{"2002:c0a8:101::1", true},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true}, // Teredo (client 192.0.2.45 obfuscated)
		{"2001::1", true},
		// Public addresses that herald delivers to.
		{"1.1.1.1", false},
		{"8.8.8.8", false},
		{"93.184.216.34", false},
		{"100.63.255.255", false},
		{"100.128.0.0", false},
		{"172.15.255.255", false},
		{"172.32.0.0", false},
		{"192.0.1.1", false},
		{"198.17.255.255", false},
		{"223.255.255.255", false},
		{"::ffff:8.8.8.8", false},
		{"::ffff:0:8.8.8.8", false},
		{"64:ff9b::8.8.8.8", false},
		{"2002:808:808::1", false},
		{"2606:4700:4700::1111", false},
		{"2a00:1450:4001:80b::200e", false},
		{"2001:4860:4860::8888", false},
	}
	for _, tt := range tests {
		name := tt.addr + " is allowed"
		if tt.forbidden {
			name = tt.addr + " is refused"
		}
		t.Run(name, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.addr)
			if got := egress.Forbidden(ip); got != tt.forbidden {
				t.Errorf("Forbidden(%s) = %v, want %v", tt.addr, got, tt.forbidden)
			}
		})
	}
	t.Run("the zero Addr is refused", func(t *testing.T) {
		if !egress.Forbidden(netip.Addr{}) {
			t.Error("Forbidden(Addr{}) = false")
		}
	})
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url  string
		want error // with private targets refused
		// wantAllowed is the answer with private targets allowed.
		wantAllowed error
	}{
		{"https://example.com/hook", nil, nil},
		{"https://example.com:8443/hook", nil, nil},
		{"http://93.184.216.34/", nil, nil},
		{"http://[2606:4700:4700::1111]:8080/", nil, nil},
		{"https://1.example/", nil, nil},
		{"https://example.com./", nil, nil},
		{"https://a1/", nil, nil},
		{"https://x.0xg/", nil, nil}, // not a number: "0xg" is not hex

		{"http://127.0.0.1/", egress.ErrForbidden, nil},
		{"http://127.0.0.1:8080/x", egress.ErrForbidden, nil},
		{"http://10.1.2.3/", egress.ErrForbidden, nil},
		{"http://169.254.169.254/latest/meta-data/", egress.ErrForbidden, nil},
		{"http://0.0.0.0/", egress.ErrForbidden, nil},
		{"http://[::1]/", egress.ErrForbidden, nil},
		{"http://[::]/", egress.ErrForbidden, nil},
		{"http://[::ffff:127.0.0.1]/", egress.ErrForbidden, nil},
		{"http://[::ffff:7f00:1]/", egress.ErrForbidden, nil},
		{"http://[::ffff:a9fe:a9fe]/", egress.ErrForbidden, nil},
		{"http://[fe80::1%25eth0]/", egress.ErrForbidden, nil},
		{"http://[64:ff9b::7f00:1]/", egress.ErrForbidden, nil},
		{"http://[2002:7f00:1::]/", egress.ErrForbidden, nil},
		{"http://localhost/", egress.ErrForbidden, nil},
		{"http://LOCALHOST.:3000/", egress.ErrForbidden, nil},
		{"http://api.localhost/", egress.ErrForbidden, nil},

		// Numbers that are not dotted quads: refused in every mode.
		{"http://0x7f.1/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://0x7f000001/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://2130706433/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://017700000001/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://127.1/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://127.0.1/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://0177.0.0.1/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://127.000.000.001/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://127.0.0.1./", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://1.2.3.4.5/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://0/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://example.0x10/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://8.8.8.8.8/", egress.ErrNumericHost, egress.ErrNumericHost},
		{"http://0x/", egress.ErrNumericHost, egress.ErrNumericHost},
	}
	for _, tt := range tests {
		for _, allow := range []bool{false, true} {
			want := tt.want
			if allow {
				want = tt.wantAllowed
			}
			outcome := "passes"
			if want != nil {
				outcome = "is refused"
			}
			t.Run(tt.url+" "+outcome+" with private "+map[bool]string{false: "refused", true: "allowed"}[allow], func(t *testing.T) {
				err := egress.CheckURL(tt.url, allow)
				if want == nil && err != nil || want != nil && !errors.Is(err, want) {
					t.Fatalf("CheckURL = %v, want %v", err, want)
				}
			})
		}
	}
}

// TestControlRefusesLoopback dials an httptest server on 127.0.0.1 through
// a client whose dialer runs Control, as the dispatcher's does.
func TestControlRefusesLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a request reached the loopback server")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	dialer := &net.Dialer{Timeout: time.Second, Control: egress.Control}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil}}
	// localhost resolves through the system resolver: the address dialled
	// is what is checked, not the name.
	for _, host := range []string{"127.0.0.1", "localhost", "[::ffff:127.0.0.1]"} {
		t.Run(host+" is refused at connect", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+host+":"+port+"/", nil)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("the request went through")
			}
			if !errors.Is(err, egress.ErrForbidden) {
				t.Fatalf("error %v, want ErrForbidden", err)
			}
		})
	}
}

func TestControl(t *testing.T) {
	tests := []struct {
		address string
		ok      bool
	}{
		{"93.184.216.34:443", true},
		{"[2606:4700:4700::1111]:443", true},
		{"127.0.0.1:80", false},
		{"[::1]:80", false},
		{"[fe80::1%eth0]:80", false},
		{"169.254.169.254:80", false},
		{"not-an-address", false},
		{"example.com:80", false}, // Control only ever sees addresses
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			err := egress.Control("tcp", tt.address, nil)
			if tt.ok != (err == nil) {
				t.Fatalf("Control(%q) = %v, want ok %v", tt.address, err, tt.ok)
			}
			if err != nil && !errors.Is(err, egress.ErrForbidden) {
				t.Fatalf("error %v does not wrap ErrForbidden", err)
			}
		})
	}
}

// referenceV4 lists, independently of egress, the IPv4 ranges herald must
// refuse.
var referenceV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"), netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.88.99.0/24"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("224.0.0.0/3"), // multicast, reserved, broadcast
}

func refForbidden(v4 [4]byte) bool {
	ip := netip.AddrFrom4(v4)
	for _, p := range referenceV4 {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// FuzzForbidden: for every IPv4 address, Forbidden agrees with the
// reference list, and so does every IPv6 form that embeds it (mapped,
// translated, NAT64, 6to4); IPv4-compatible and Teredo forms are always
// refused. An arbitrary 16-byte address never panics and a forbidden one
// stays forbidden whatever its zone.
func FuzzForbidden(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "8.8.8.8", "169.254.169.254", "100.64.0.0", "255.255.255.255", "0.0.0.0"} {
		a := netip.MustParseAddr(s).As4()
		f.Add(a[:], []byte("0123456789abcdef"))
	}
	f.Fuzz(func(t *testing.T, v4b, v6b []byte) {
		if len(v4b) < 4 {
			return
		}
		v4 := [4]byte(v4b[:4])
		want := refForbidden(v4)
		forms := map[string]netip.Addr{
			"plain":      netip.AddrFrom4(v4),
			"mapped":     netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}),
			"translated": netip.AddrFrom16([16]byte{8: 0xff, 9: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}),
			"nat64":      netip.AddrFrom16([16]byte{0: 0, 1: 0x64, 2: 0xff, 3: 0x9b, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}),
			"6to4":       netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: v4[0], 3: v4[1], 4: v4[2], 5: v4[3], 15: 1}),
		}
		for name, ip := range forms {
			if got := egress.Forbidden(ip); got != want {
				t.Errorf("%s form %s: Forbidden = %v, want %v", name, ip, got, want)
			}
		}
		always := map[string]netip.Addr{
			"compatible": netip.AddrFrom16([16]byte{12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}),
			"teredo":     netip.AddrFrom16([16]byte{0: 0x20, 1: 0x01, 4: v4[0], 5: v4[1], 6: v4[2], 7: v4[3], 12: ^v4[0], 13: ^v4[1], 14: ^v4[2], 15: ^v4[3]}),
		}
		for name, ip := range always {
			if !egress.Forbidden(ip) {
				t.Errorf("%s form %s is allowed", name, ip)
			}
		}
		if len(v6b) >= 16 {
			ip := netip.AddrFrom16([16]byte(v6b[:16]))
			got := egress.Forbidden(ip)
			if got != egress.Forbidden(ip.WithZone("eth0")) {
				t.Errorf("%s: a zone changes the verdict", ip)
			}
			if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
				if !got {
					t.Errorf("%s is allowed", ip)
				}
			}
			// Control agrees with Forbidden on what it is handed.
			cerr := egress.Control("tcp", net.JoinHostPort(ip.String(), "443"), nil)
			if (cerr != nil) != got {
				t.Errorf("Control(%s) = %v, Forbidden = %v", ip, cerr, got)
			}
		}
	})
}

// browserIPv4 parses host as the WHATWG URL standard (and C's inet_aton)
// does: 1 to 4 dot-separated parts, each decimal, 0-prefixed octal or
// 0x-prefixed hex, the last filling the remaining bytes.
func browserIPv4(host string) (netip.Addr, bool) {
	host = strings.TrimSuffix(host, ".")
	parts := strings.Split(host, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	var nums []uint64
	for _, p := range parts {
		base := 10
		switch lp := strings.ToLower(p); {
		case strings.HasPrefix(lp, "0x"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		if p == "" {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(p, base, 64)
		if err != nil {
			return netip.Addr{}, false
		}
		nums = append(nums, n)
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
		v |= n << (24 - 8*i)
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// FuzzURLGuard: CheckURL never panics; with private targets refused, no
// URL passes whose host any parser (netip, net.ParseIP, a browser's IPv4
// reading) takes for a forbidden address, nor a local host name; with
// them allowed, it only ever refuses numeric hosts.
func FuzzURLGuard(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1/", "http://0x7f.1/", "http://2130706433/", "http://[::ffff:127.0.0.1]/",
		"http://localhost/", "https://example.com/", "http://[fe80::1%25en0]:80/", "http://0177.0.0.1/",
		"http://169.254.169.254/", "http://1.1.1.1/", "http://[::1]/", "http://127.1./", "http://a.b.0x1/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		strict := egress.CheckURL(raw, false)
		lax := egress.CheckURL(raw, true)
		if lax != nil && !errors.Is(lax, egress.ErrNumericHost) {
			t.Fatalf("with private allowed, CheckURL(%q) = %v", raw, lax)
		}
		if strict != nil && !errors.Is(strict, egress.ErrNumericHost) && !errors.Is(strict, egress.ErrForbidden) {
			t.Fatalf("CheckURL(%q) = %v wraps neither documented error", raw, strict)
		}
		if lax != nil && strict == nil {
			t.Fatalf("CheckURL(%q) refuses with private allowed only", raw)
		}
		u, err := url.Parse(raw)
		if err != nil || strict != nil {
			return
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); err == nil && egress.Forbidden(ip) {
			t.Fatalf("CheckURL(%q) passed forbidden literal %s", raw, ip)
		}
		if ip := net.ParseIP(host); ip != nil {
			if a, _ := netip.AddrFromSlice(ip); egress.Forbidden(a) {
				t.Fatalf("CheckURL(%q) passed forbidden literal %s (net.ParseIP)", raw, ip)
			}
		}
		if ip, ok := browserIPv4(host); ok && egress.Forbidden(ip) {
			t.Fatalf("CheckURL(%q) passed %q, which a browser reads as %s", raw, host, ip)
		}
		if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
			t.Fatalf("CheckURL(%q) passed a local host name", raw)
		}
	})
}
