package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
)

func testLimits(t testing.TB, trusted ...string) *limits {
	cfg := &config.Config{}
	cfg.Server.TrustedProxies = trusted
	return newLimits(cfg, nil)
}

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name, remote, xff string
		trusted           []string
		want              string
	}{
		{"IPv4 peer", "192.0.2.7:4711", "", nil, "192.0.2.7"},
		{"IPv6 peer", "[2001:db8::1]:443", "", nil, "2001:db8::1"},
		{"IPv6 peer, long form", "[2001:0db8:0:0:0:0:0:1]:443", "", nil, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:192.0.2.7]:80", "", nil, "192.0.2.7"},
		{"untrusted peer's header ignored", "192.0.2.7:1", "203.0.113.9", nil, "192.0.2.7"},
		{"trusted proxy: last hop", "127.0.0.1:1", "6.6.6.6, 203.0.113.9", []string{"127.0.0.0/8"}, "203.0.113.9"},
		{"trusted chain skipped", "127.0.0.1:1", "203.0.113.9, 10.0.0.2", []string{"127.0.0.0/8", "10.0.0.0/8"}, "203.0.113.9"},
		{"garbled hop stops the walk", "127.0.0.1:1", "203.0.113.9, nonsense", []string{"127.0.0.0/8"}, "127.0.0.1"},
		{"only trusted hops", "127.0.0.1:1", "10.0.0.2", []string{"127.0.0.0/8", "10.0.0.0/8"}, "10.0.0.2"},
		{"not an address", "pipe", "", nil, "pipe"},
		{"IPv4 hop with a port", "127.0.0.1:1", "6.6.6.6, 203.0.113.9:5678", []string{"127.0.0.0/8"}, "203.0.113.9"},
		{"IPv6 hop with a port", "127.0.0.1:1", "[2001:db8::1]:443", []string{"127.0.0.0/8"}, "2001:db8::1"},
		{"bracketed IPv6 hop", "127.0.0.1:1", "[2001:db8::1]", []string{"127.0.0.0/8"}, "2001:db8::1"},
		{"trusted hop with a port skipped", "127.0.0.1:1", "203.0.113.9, 10.0.0.2:8080", []string{"127.0.0.0/8", "10.0.0.0/8"}, "203.0.113.9"},
		{"trusted IPv6 hop with a port skipped", "127.0.0.1:1", "203.0.113.9:1, [::1]:8080", []string{"127.0.0.0/8", "::1/128"}, "203.0.113.9"},
		{"mapped hop with a port", "127.0.0.1:1", "[::ffff:203.0.113.9]:80", []string{"127.0.0.0/8"}, "203.0.113.9"},
		{"zoned hop with a port", "127.0.0.1:1", "[fe80::1%eth0]:80", []string{"127.0.0.0/8"}, "fe80::1"},
		{"bare IPv6 is no address:port", "127.0.0.1:1", "2001:db8::1:443", []string{"127.0.0.0/8"}, "2001:db8::1:443"},
		{"empty port stops the walk", "127.0.0.1:1", "203.0.113.9:", []string{"127.0.0.0/8"}, "127.0.0.1"},
		{"port out of range stops the walk", "127.0.0.1:1", "203.0.113.9:70000", []string{"127.0.0.0/8"}, "127.0.0.1"},
		{"non-numeric port stops the walk", "127.0.0.1:1", "[2001:db8::1]:x", []string{"127.0.0.0/8"}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := testLimits(t, tc.trusted...).clientIP(r); got != tc.want {
				t.Errorf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzClientIP: whatever the peer address and X-Forwarded-For, the answer
// is the peer's address unless the peer is trusted, and always an
// address in netip's canonical text (or the peer's text when that is no
// address at all, as for a test's pipe).
func FuzzClientIP(f *testing.F) {
	f.Add("192.0.2.7:4711", "203.0.113.9")
	f.Add("127.0.0.1:1", "6.6.6.6, 203.0.113.9")
	f.Add("[::ffff:127.0.0.1]:1", "2001:db8::1,10.0.0.2")
	f.Add("[fe80::1%eth0]:1", " , ,")
	f.Add("1.2.3.4:", "1.2.3.4")
	f.Add("127.0.0.1:1", "203.0.113.9:5678, [2001:db8::1]:443, 10.0.0.2:80")
	f.Add("127.0.0.1:1", "[::ffff:10.0.0.1]:1,[fe80::1%eth0]")
	untrusted, trusting := testLimits(f), testLimits(f, "127.0.0.0/8", "10.0.0.0/8", "::1/128")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		peer, err := netip.ParseAddrPort(remote)
		got := untrusted.clientIP(r)
		if err != nil {
			if got != remote {
				t.Fatalf("clientIP(%q) = %q, want the peer's text", remote, got)
			}
			return
		}
		if want := peer.Addr().Unmap().String(); got != want {
			t.Fatalf("untrusted peer %q: clientIP = %q, want %q", remote, got, want)
		}
		got = trusting.clientIP(r)
		ip, err := netip.ParseAddr(got)
		if err != nil || ip.String() != got {
			t.Fatalf("clientIP(%q, %q) = %q: not a canonical address", remote, xff, got)
		}
		if !trusting.isTrusted(peer.Addr().Unmap()) && got != peer.Addr().Unmap().String() {
			t.Fatalf("untrusted peer %q believed: %q", remote, got)
		}
	})
}

// FuzzParseHop: an X-Forwarded-For entry is accepted only as an address,
// with or without a port; the result is an unzoned, unmapped address that
// is exactly what the entry names.
func FuzzParseHop(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:443", "[2001:db8::1]",
		"2001:db8::1", "[::ffff:192.0.2.1]:8080", "[fe80::1%eth0]:1", "1.2.3.4:", "[1.2.3.4]", "[]", "[:]:1", "unknown"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, ok := ParseHop(s)
		if !ok {
			if _, err := netip.ParseAddr(s); err == nil {
				t.Fatalf("ParseHop(%q) refused an address", s)
			}
			if _, err := netip.ParseAddrPort(s); err == nil {
				t.Fatalf("ParseHop(%q) refused an address with a port", s)
			}
			return
		}
		if !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
			t.Fatalf("ParseHop(%q) = %v: not an unzoned, unmapped address", s, ip)
		}
		var want netip.Addr
		if a, err := netip.ParseAddr(s); err == nil {
			want = a
		} else if ap, err := netip.ParseAddrPort(s); err == nil {
			want = ap.Addr()
		} else if ap, err := netip.ParseAddrPort(s + ":0"); err == nil && strings.HasSuffix(s, "]") {
			want = ap.Addr()
		} else {
			t.Fatalf("ParseHop(%q) = %v accepted what netip refuses", s, ip)
		}
		if want = want.Unmap().WithZone(""); ip != want {
			t.Fatalf("ParseHop(%q) = %v, want %v", s, ip, want)
		}
	})
}

func TestRateLimitKey(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		ip, want string
	}{
		{64, "192.0.2.7", "192.0.2.7"},
		{64, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{64, "2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{64, "fe80::1%eth0", "fe80::/64"},
		{56, "2001:db8:1:2ff::1", "2001:db8:1:200::/56"},
		{128, "2001:db8::1", "2001:db8::1"},
		{64, "pipe", "pipe"},
	} {
		l := testLimits(t)
		l.v6bits = tc.bits
		want := tc.want
		if p, err := netip.ParsePrefix(want); err == nil {
			b := p.Addr().As16()
			want = string(b[:])
		}
		if got := l.key(tc.ip); got != want {
			t.Errorf("/%d key(%q) = %q, want %q", tc.bits, tc.ip, got, tc.want)
		}
	}
}

// BenchmarkRateLimitKey is the per-request cost of keying a client: none
// for IPv4, one parse and one 16-byte string for IPv6.
func BenchmarkRateLimitKey(b *testing.B) {
	l := testLimits(b)
	l.v6bits = 64
	for _, ip := range []string{"203.0.113.9", "2001:db8:1:2:3:4:5:6"} {
		b.Run(ip, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = l.key(ip)
			}
		})
	}
}
