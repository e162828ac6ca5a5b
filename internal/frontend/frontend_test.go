package frontend

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	s, err := New([]string{"http://localhost:4001", "http://127.0.0.1:4001", "https://App.Example.com", "https://app.example.com:8443", "http://[::1]:80/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		want int // -1: none
	}{
		{"localhost:4001", 0},
		{"LOCALHOST:4001", 0},
		{"localhost", -1},
		{"localhost:4002", -1},
		{"127.0.0.1:4001", 1},
		{"127.0.0.1", -1},
		{"app.example.com", 2},
		{"APP.example.COM", 2},
		{"app.example.com:443", 2},
		{"app.example.com:8443", 3},
		{"app.example.com:80", -1},
		{"app.example.com.", -1}, // a different name to the cookie, too
		{"[::1]", 4},
		{"[::1]:80", 4},
		{"::1", -1},
		{"", -1},
		{"evil.example.com", -1},
		{"app.example.com@evil", -1},
	} {
		m, ok := s.Select(tc.host, "/")
		got := m.Index
		if !ok {
			got = -1
		}
		if got != tc.want {
			t.Errorf("Select(%q) = %d, want %d", tc.host, got, tc.want)
		}
	}
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		err  string
	}{
		{[]string{"https://a.example.com", "https://A.example.com/"}, "frontends[1].public_url: A.example.com is also frontends[0]'s host"},
		{[]string{"https://a.example.com", "https://a.example.com:443"}, "frontends[1].public_url"},
		{[]string{"http://localhost:80", "http://localhost"}, "frontends[1].public_url"},
		{[]string{"http://a", "https://b", "http://b:443"}, "frontends[2].public_url"},
		{[]string{"https://a.example.com", "http://a.example.com:8080"}, ""}, // other port
		// Host: a.example.com names both: the request does not say its scheme.
		{[]string{"https://a.example.com", "http://a.example.com"}, "frontends[1].public_url"},
		{[]string{"not a url"}, "frontends[0].public_url"},
	} {
		_, err := New(tc.urls)
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%q) = %v, want %q", tc.urls, err, tc.err)
		}
	}
}

// TestSelectPrefix: frontends that share a host are told apart by the
// longest prefix of the path that ends at a segment boundary.
func TestSelectPrefix(t *testing.T) {
	s, err := New([]string{"https://app.example.com/admin", "https://app.example.com", "https://app.example.com/admin/audit/", "http://localhost:4001/shop"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Prefixed() {
		t.Fatal("Prefixed() = false")
	}
	for _, tc := range []struct {
		host, path string
		want       int // -1: none
		prefix     string
	}{
		{"app.example.com", "/", 1, ""},
		{"app.example.com", "/api/items", 1, ""},
		{"app.example.com", "/admin", 0, "/admin"},
		{"app.example.com", "/admin/", 0, "/admin"},
		{"app.example.com", "/admin/api/users", 0, "/admin"},
		{"APP.example.com:443", "/admin/auth/login", 0, "/admin"},
		{"app.example.com", "/administrator", 1, ""},
		{"app.example.com", "/Admin/x", 1, ""},
		{"app.example.com", "/admin/audit", 2, "/admin/audit"},
		{"app.example.com", "/admin/audit/log", 2, "/admin/audit"},
		{"app.example.com", "/admin/auditor", 0, "/admin"},
		{"localhost:4001", "/shop/cart", 3, "/shop"},
		{"localhost:4001", "/shop", 3, "/shop"},
		{"localhost:4001", "/", -1, ""},
		{"localhost:4001", "/shopping", -1, ""},
		{"localhost:4001", "", -1, ""},
		{"evil.example.com", "/admin", -1, ""},
	} {
		m, ok := s.Select(tc.host, tc.path)
		if !ok {
			m.Index = -1
		}
		if m.Index != tc.want || m.Prefix != tc.prefix {
			t.Errorf("Select(%q, %q) = %+v, want %d %q", tc.host, tc.path, m, tc.want, tc.prefix)
		}
	}
	if s, _ := New([]string{"https://a.example.com", "https://b.example.com/"}); s.Prefixed() {
		t.Error("Prefixed() = true without a path")
	}
}

func TestCanonical(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b.c/": true, "/.well-known/x": true,
		"": false, "a": false, "//": false, "//a": false, "/a//b": false, "/a/./b": false,
		"/a/../b": false, "/..": false, "/a/..": false, "/a/.": false,
	} {
		if got := Canonical(p); got != want {
			t.Errorf("Canonical(%q) = %v, want %v", p, got, want)
		}
	}
}

func FuzzSelect(f *testing.F) {
	urls := []string{"https://app.example.com", "http://localhost:4001", "https://app.example.com/admin", "https://app.example.com/admin/x"}
	s, _ := New(urls)
	for _, h := range []string{"app.example.com", "LOCALHOST:4001", "[::1]", ""} {
		f.Add(h, "/admin/x/y")
	}
	f.Fuzz(func(t *testing.T, host, p string) {
		m, ok := s.Select(host, p)
		if !ok {
			return
		}
		u, _ := url.Parse(urls[m.Index])
		if !slices.Contains(Hosts(u), strings.ToLower(host)) || !Under(p, m.Prefix) || m.Prefix != strings.TrimSuffix(u.Path, "/") {
			t.Fatalf("Select(%q, %q) = %+v", host, p, m)
		}
		for i, raw := range urls { // no longer prefix of the same host matches
			v, _ := url.Parse(raw)
			if longer := v.Path; slices.Contains(Hosts(v), strings.ToLower(host)) && len(longer) > len(m.Prefix) && Under(p, longer) {
				t.Fatalf("Select(%q, %q) = %+v, but frontends[%d] at %s is longer", host, p, m, i, longer)
			}
		}
	})
}

// BenchmarkSelect is the selector's cost on every request of a moat with
// frontends: one map lookup, a lower-casing copy for a Host in capitals,
// and a prefix comparison per frontend mounted at that host.
//
//	go test -run '^$' -bench Select -benchmem ./internal/frontend/
func BenchmarkSelect(b *testing.B) {
	s, _ := New([]string{"https://shop.example.com", "https://staff.example.com", "http://localhost:4001", "https://shop.example.com/admin"})
	for _, tc := range []struct{ host, path string }{
		{"staff.example.com", "/api/items"},
		{"Staff.Example.com", "/api/items"},
		{"unknown.example.com", "/api/items"},
		{"shop.example.com", "/admin/api/items"}, // mounted: the longer prefix first
		{"shop.example.com", "/api/items"},       // the root, after /admin
	} {
		b.Run(tc.host+tc.path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Select(tc.host, tc.path)
			}
		})
	}
}
