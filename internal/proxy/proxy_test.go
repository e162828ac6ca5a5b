package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

var pathSeeds = []string{
	"/api/x", "/api/../admin", "/api/..%2fadmin", "/api/%2e%2e/admin", "/api/%252e%252e/admin", "/api/..%5cadmin",
	"/api/a/./b", "/api//evil.example", "/api/x%00", "/api/%2F", "/api/a%2Fb", "/api/100%25", "/api/caf%C3%A9",
	"/apix", "/api", "/api/a/..", "/api/...", "/api/..;/admin", "/api/.;x/y", "/api/a/..;jsessionid=1", "/api/a;v=1/b",
}

func TestRest(t *testing.T) {
	cases := map[string]string{ // input → rest, or "" for a refusal
		"/api/x":         "x",
		"/api/a/b?c":     "a/b",
		"/api/caf%C3%A9": "café",
		"/api/...":       "...",
		"/api/a;v=1/b":   "a;v=1/b",
	}
	for _, in := range pathSeeds {
		u, err := url.Parse(in)
		if err != nil {
			continue
		}
		rest, err := Rest(u, "/api/")
		if want, ok := cases[in]; ok {
			if err != nil || rest != want {
				t.Errorf("Rest(%q) = %q, %v; want %q", in, rest, err, want)
			}
		} else if err == nil {
			t.Errorf("Rest(%q) = %q, want a refusal", in, rest)
		}
	}
}

// FuzzRest checks BBA §6.1.3.6: an accepted path, joined to the upstream
// prefix and resolved once or twice as a lenient server might, stays below
// that prefix.
func FuzzRest(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		rest, err := Rest(u, "/api/")
		if err != nil {
			return
		}
		joined := "/upstream/" + rest
		for range 2 {
			if !strings.HasPrefix(path.Clean(joined)+"/", "/upstream/") {
				t.Fatalf("%q escapes: %q", raw, joined)
			}
			dec, err := url.PathUnescape(joined)
			if err != nil {
				break
			}
			joined = dec
		}
		if strings.ContainsAny(rest, "\\\x00") {
			t.Fatalf("%q kept a backslash or NUL: %q", raw, rest)
		}
	})
}
