package proxy

import (
	"log/slog"
	"net/url"
	"path"
	"strings"
	"testing"
)

// matchSeeds are route-confusion attempts against overlapping prefixes.
var matchSeeds = []string{
	"/api/admin/x", "/api/admin", "/api/adminx/y", "/api/x/../admin/y", "/api/x/%2e%2e/admin/y", "/api/x/..%2Fadmin/y",
	"/api/./admin/y", "/api/%61dmin/y", "/api/admin%2F..%2Fx", "/api/admin/..", "/api/admin/%2e%2e/%2e%2e/x",
	"/public/../api/admin/x", "/public/%2e%2e/api/x", "/public/..%5capi/x", "//api/admin/x", "/api//admin/x",
	"/API/admin/x", "/api/admin;x/y", "/api/admin/%252e%252e/x", "/public/x%00/../../api/admin",
}

// FuzzRouteMatch checks that routing and forwarding agree (BBA §6.1.3.6):
// the longest matching prefix wins; for any path the table forwards, the
// path as a lenient server would resolve it (cleaned, percent-decoded once
// or twice) selects the same route, so no path reaches one route's
// upstream while naming another route; and the forwarded path stays below
// the route's upstream path.
func FuzzRouteMatch(f *testing.F) {
	for _, s := range append(pathSeeds, matchSeeds...) {
		f.Add(s)
	}
	mustURL := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	table := New([]Route{
		{Prefix: "/api/", Upstream: mustURL("http://a.invalid/v1/")},
		{Prefix: "/api/admin/", Upstream: mustURL("http://b.invalid/internal/admin/")},
		{Prefix: "/public/", Upstream: mustURL("http://c.invalid/")},
	}, Options{Logger: slog.New(slog.DiscardHandler)})
	defer table.CloseIdleConnections()

	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		rt, _, ok := table.Match(u.Path)
		if !ok {
			return
		}
		for _, other := range table.Routes() {
			if strings.HasPrefix(u.Path, other.Prefix) && len(other.Prefix) > len(rt.Prefix) {
				t.Fatalf("%q matched %s, but %s is longer", raw, rt.Prefix, other.Prefix)
			}
		}
		rest, err := Rest(u, rt.Prefix)
		if err != nil {
			return
		}
		resolved := u.Path
		for range 3 {
			if r2, _, ok := table.Match(cleanKeepSlash(resolved)); !ok || r2 != rt {
				t.Fatalf("%q forwarded by %s, but resolves to %q", raw, rt.Prefix, cleanKeepSlash(resolved))
			}
			if dec, err := url.PathUnescape(resolved); err == nil {
				resolved = dec
			}
		}
		forwarded := rt.Upstream.Path + rest
		for range 2 {
			if !strings.HasPrefix(cleanKeepSlash(forwarded), rt.Upstream.Path) && cleanKeepSlash(forwarded)+"/" != rt.Upstream.Path {
				t.Fatalf("%q forwarded to %q, outside %s", raw, forwarded, rt.Upstream.Path)
			}
			dec, err := url.PathUnescape(forwarded)
			if err != nil {
				break
			}
			forwarded = dec
		}
	})
}

func cleanKeepSlash(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
