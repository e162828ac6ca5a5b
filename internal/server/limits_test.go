package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
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
