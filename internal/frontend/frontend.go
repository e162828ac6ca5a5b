// Package frontend picks which of several frontends (config frontends[])
// a request is for, by the Host header (RFC 9110 §7.2). Each frontend has
// exactly one origin, its public_url: the OAuth redirect_uri and the
// host-only __Host- session cookie are bound to it, so a frontend could
// not log anyone in on a second host anyway.
package frontend

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Selector maps Host header values to frontends, by index.
type Selector struct {
	hosts map[string]int
}

// New returns the Selector for frontends at publicURLs (absolute URLs,
// already validated), in order. Two frontends at one host and port are an
// error naming both: a request could not tell them apart.
func New(publicURLs []string) (*Selector, error) {
	s := &Selector{hosts: make(map[string]int, 2*len(publicURLs))}
	for i, raw := range publicURLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("frontends[%d].public_url: %q is not an absolute URL", i, raw)
		}
		for _, h := range Hosts(u) {
			if j, dup := s.hosts[h]; dup {
				return nil, fmt.Errorf("frontends[%d].public_url: %s is also frontends[%d]'s host; each frontend needs its own host or port", i, u.Host, j)
			}
			s.hosts[h] = i
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

// Select returns the index of the frontend that host (a request's Host
// header) names, matched case-insensitively, and whether there is one.
func (s *Selector) Select(host string) (int, bool) {
	if i, ok := s.hosts[host]; ok {
		return i, true
	}
	lower := strings.ToLower(host)
	if lower == host {
		return 0, false
	}
	i, ok := s.hosts[lower]
	return i, ok
}
