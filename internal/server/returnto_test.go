package server

import (
	"net/url"
	"strings"
	"testing"
)

var openRedirectSeeds = []string{
	"/", "/a?b=c#d", "//evil.example", "/\\evil.example", "\\\\evil", "https:evil.example", "https://evil.example",
	"%2F%2Fevil.example", "/%2F%2Fevil", "/%5cevil", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x",
	"http://localhost:5173@evil.example", "http://localhost:5173.evil.example/", "/\t/evil", "/\n/evil", "///evil",
	"http://localhost:5173/ok", "HTTP://LOCALHOST:5173/", "/%", "/%zz", "http:/evil", "//localhost:5173",
}

func TestSafeReturnTo(t *testing.T) {
	front, _ := url.Parse("http://localhost:5173/app")
	ok := map[string]string{
		"/":                        "http://localhost:5173/",
		"/a?b=c#d":                 "http://localhost:5173/a?b=c#d",
		"http://localhost:5173/ok": "http://localhost:5173/ok",
	}
	for _, in := range openRedirectSeeds {
		got, accepted := SafeReturnTo(in, front)
		if want, good := ok[in]; good != accepted || got != want {
			t.Errorf("SafeReturnTo(%q) = %q, %v; want %q, %v", in, got, accepted, want, good)
		}
	}
	if got, accepted := SafeReturnTo("/x", nil); !accepted || got != "/x" {
		t.Errorf("without frontend: %q %v", got, accepted)
	}
	if _, accepted := SafeReturnTo("http://localhost:5173/x", nil); accepted {
		t.Error("absolute URL accepted without a frontend_url")
	}
}

// FuzzSafeReturnTo checks the invariant behind RFC 9700 §4.11.1: whatever
// the input, an accepted target stays on moat's origin or the frontend's.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range openRedirectSeeds {
		f.Add(s)
	}
	front, _ := url.Parse("http://localhost:5173/app")
	f.Fuzz(func(t *testing.T, in string) {
		for _, fr := range []*url.URL{nil, front} {
			got, ok := SafeReturnTo(in, fr)
			if !ok {
				continue
			}
			if strings.ContainsAny(got, "\\\t\n\r") {
				t.Fatalf("%q -> %q keeps a character browsers treat specially", in, got)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatalf("%q -> %q does not parse: %v", in, got, err)
			}
			if fr == nil {
				if u.Scheme != "" || u.Host != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") {
					t.Fatalf("%q -> %q leaves moat's origin", in, got)
				}
			} else if u.Scheme != fr.Scheme || u.Host != fr.Host || u.User != nil {
				t.Fatalf("%q -> %q leaves the frontend origin", in, got)
			}
		}
	})
}
