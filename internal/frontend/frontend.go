// Package frontend picks which of several frontends (config frontends[])
// a request is for: by the Host header (RFC 9110 §7.2), then by the
// longest path prefix when frontends share a host. A frontend's public_url
// is its origin and, optionally, the path it is mounted at: the OAuth
// redirect_uri is bound to both. Its session cookie stays __Host- with
// Path=/ (RFC 6265bis §4.1.3.2), so frontends that share an origin are
// told apart by cookie name, not by path.
package frontend

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Selector maps Host header values and paths to frontends, by index.
type Selector struct {
	hosts    map[string][]mount // longest prefix first
	prefixed bool
}

type mount struct {
	prefix string
	index  int
}

// Match is the frontend a request is for.
type Match struct {
	Index int
	// Prefix is the path the frontend is mounted at ("" at the root),
	// which the frontend's own handlers do not see.
	Prefix string
}

// segment is what a prefix's path segments may hold: RFC 3986 §2.3
// unreserved characters, which have one spelling escaped or not.
var segment = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

// Prefix returns the mount path of a public_url: its path without the
// trailing slash, "" for an origin. A path must be a plain one (unreserved
// characters, no dot segments, no query or fragment): it is compared with
// request paths as written.
func Prefix(u *url.URL) (string, error) {
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("%q: a public_url has no query or fragment", u.String())
	}
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if p == "" {
		return "", nil
	}
	for _, s := range strings.Split(p[1:], "/") {
		if !segment.MatchString(s) || s == "." || s == ".." {
			return "", fmt.Errorf("path %q: each segment may hold only A-Z, a-z, 0-9 and . _ ~ -, and none may be empty, . or .., e.g. /admin", p)
		}
	}
	return p, nil
}

// New returns the Selector for frontends at publicURLs (absolute URLs,
// already validated), in order. Two frontends at one host, port and path
// are an error naming both: a request could not tell them apart.
func New(publicURLs []string) (*Selector, error) {
	s := &Selector{hosts: make(map[string][]mount, 2*len(publicURLs))}
	for i, raw := range publicURLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("frontends[%d].public_url: %q is not an absolute URL", i, raw)
		}
		prefix, err := Prefix(u)
		if err != nil {
			return nil, fmt.Errorf("frontends[%d].public_url: %w", i, err)
		}
		s.prefixed = s.prefixed || prefix != ""
		for _, h := range Hosts(u) {
			if j := slices.IndexFunc(s.hosts[h], func(m mount) bool { return m.prefix == prefix }); j >= 0 {
				return nil, fmt.Errorf("frontends[%d].public_url: %s%s is also frontends[%d]'s host and path; each frontend needs its own host, port or path", i, u.Host, prefix, s.hosts[h][j].index)
			}
			s.hosts[h] = append(s.hosts[h], mount{prefix, i})
			slices.SortStableFunc(s.hosts[h], func(a, b mount) int { return len(b.prefix) - len(a.prefix) })
		}
	}
	return s, nil
}

// Hosts lists the Host header values that name u's origin, lower case: its
// host and port, and its bare host when the port is the scheme's default
// (browsers then omit it, RFC 9110 §7.2).
func Hosts(u *url.URL) []string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if port == "" {
		port = def
	}
	withPort := net.JoinHostPort(host, port)
	if port != def {
		return []string{withPort}
	}
	bare := host
	if strings.Contains(host, ":") {
		bare = "[" + host + "]"
	}
	return []string{bare, withPort}
}

// Prefixed reports whether a frontend is mounted at a path: requests must
// then have canonical paths (Canonical) before they are matched.
func (s *Selector) Prefixed() bool { return s.prefixed }

// Serves reports whether a frontend is at host, at some path.
func (s *Selector) Serves(host string) bool {
	_, ok := s.hosts[host]
	if !ok {
		_, ok = s.hosts[strings.ToLower(host)]
	}
	return ok
}

// Select returns the frontend that host (a request's Host header, matched
// case-insensitively) and urlPath (case-sensitive) name: the longest
// prefix that ends at a segment boundary.
func (s *Selector) Select(host, urlPath string) (Match, bool) {
	mounts, ok := s.hosts[host]
	if !ok {
		if lower := strings.ToLower(host); lower != host {
			mounts = s.hosts[lower]
		}
	}
	for _, m := range mounts {
		if Under(urlPath, m.prefix) {
			return Match{m.index, m.prefix}, true
		}
	}
	return Match{}, false
}

// Under reports whether p is prefix or below it, segment by segment:
// /admin-old is not under /admin.
func Under(p, prefix string) bool {
	rest, ok := strings.CutPrefix(p, prefix)
	return ok && (rest == "" || rest[0] == '/')
}

// Canonical reports whether p is a path with no dot segments and no empty
// ones (a trailing slash aside), as browsers send: only then does its
// prefix say which frontend a server that cleans paths would serve.
func Canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	return c == p || c != "/" && c+"/" == p
}
