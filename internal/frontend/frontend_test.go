package frontend

import (
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
		got, ok := s.Select(tc.host)
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

func FuzzSelect(f *testing.F) {
	s, _ := New([]string{"https://app.example.com", "http://localhost:4001"})
	for _, h := range []string{"app.example.com", "LOCALHOST:4001", "[::1]", ""} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		i, ok := s.Select(host)
		if ok && strings.ToLower(host) != []string{"app.example.com", "localhost:4001"}[i] && strings.ToLower(host) != "app.example.com:443" {
			t.Fatalf("Select(%q) = %d", host, i)
		}
	})
}

// BenchmarkSelect is the selector's cost on every request of a moat with
// frontends: one map lookup, and a lower-casing copy for a Host in
// capitals.
//
//	go test -run '^$' -bench Select -benchmem ./internal/frontend/
func BenchmarkSelect(b *testing.B) {
	s, _ := New([]string{"https://shop.example.com", "https://staff.example.com", "http://localhost:4001"})
	for _, host := range []string{"staff.example.com", "Staff.Example.com", "unknown.example.com"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Select(host)
			}
		})
	}
}
