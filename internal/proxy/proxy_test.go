package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

var pathSeeds = []string{
	"/api/x", "/api/../admin", "/api/..%2fadmin", "/api/%2e%2e/admin", "/api/%252e%252e/admin", "/api/..%5cadmin",
	"/api/a/./b", "/api//evil.example", "/api/x%00", "/api/%2F", "/api/a%2Fb", "/api/100%25", "/api/caf%C3%A9",
	"/apix", "/api", "/api/a/..", "/api/...", "/api/..;/admin", "/api/.;x/y", "/api/a/..;jsessionid=1", "/api/a;v=1/b",
	// Read as dot segments after trimming or NFKC normalisation, or not UTF-8.
	"/api/..%20/admin", "/api/%20../admin", "/api/..%09/admin", "/api/.%0A./admin", "/api/..%0D/admin", "/api/..%7F/admin",
	"/api/..%E2%80%8B/admin", "/api/%EF%BB%BF../admin", "/api/..%C2%A0/admin", "/api/..%C2%AD/admin",
	"/api/%EF%BC%8E%EF%BC%8E/admin", "/api/%EF%BC%8E/admin", "/api/%E2%80%A5/admin", "/api/%EF%B9%92%EF%B9%92/admin",
	"/api/%EF%BC%8E%EF%BC%8E%EF%BC%9Bx/admin", "/api/..%EF%BC%8F..%EF%BC%8Fadmin", "/api/x%EF%BC%BCy",
	"/api/%C0%AE%C0%AE/admin", "/api/%C0%AF", "/api/%E0%80%AE%E0%80%AE/admin", "/api/%FF", "/api/caf%E9",
	// Allowed: look-alikes that no normalisation makes a dot segment.
	"/api/%E2%80%A6", "/api/a%20b", "/api/%EF%BC%A1", "/api/.x.", "/api/x%09",
}

func TestRest(t *testing.T) {
	cases := map[string]string{ // input → rest, or "" for a refusal
		"/api/x":         "x",
		"/api/a/b?c":     "a/b",
		"/api/caf%C3%A9": "café",
		"/api/...":       "...",
		"/api/a;v=1/b":   "a;v=1/b",
		"/api/%E2%80%A6": "…", // NFKC "...", not a dot segment
		"/api/a%20b":     "a b",
		"/api/%EF%BC%A1": "Ａ",
		"/api/.x.":       ".x.",
		"/api/x%09":      "x\t",
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

// FuzzRestNormalised: an accepted path is valid UTF-8, and stays below the
// upstream prefix for a server that, before resolving dot segments, removes
// whitespace, control and format characters from each segment and applies
// NFKC (a Unicode-normalising server), once or after one more decoding.
func FuzzRestNormalised(f *testing.F) {
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
		if !utf8.ValidString(rest) {
			t.Fatalf("%q accepted with invalid UTF-8: %q", raw, rest)
		}
		lenient := func(p string) string {
			segs := strings.Split(p, "/")
			for i, s := range segs {
				s = strings.Map(dropInvisible, norm.NFKC.String(strings.Map(dropInvisible, s)))
				s, _, _ = strings.Cut(s, ";")
				segs[i] = s
			}
			return strings.Join(segs, "/")
		}
		joined := "/upstream/" + rest
		for range 2 {
			if n := lenient(joined); !strings.HasPrefix(path.Clean(strings.ReplaceAll(n, "\\", "/"))+"/", "/upstream/") {
				t.Fatalf("%q escapes once normalised: %q → %q", raw, joined, n)
			}
			dec, err := url.PathUnescape(joined)
			if err != nil {
				break
			}
			joined = dec
		}
	})
}
