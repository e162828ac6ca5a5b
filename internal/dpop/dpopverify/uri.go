package dpopverify

import (
	"errors"
	"net/url"
	"strings"
)

// NormalizeURI returns u without query and fragment, normalised as
// RFC 3986 §6.2.2 and §6.2.3 say (RFC 9449 §4.3 asks servers to compare
// htu so): scheme and host in lower case, the scheme's default port
// dropped, an empty path as "/", percent-encodings of unreserved
// characters decoded and the others in upper case, dot segments removed.
// Only absolute http and https URIs without user information are accepted.
func NormalizeURI(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(p.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", errors.New("not an http(s) URI")
	}
	if p.User != nil || p.Opaque != "" || p.Host == "" {
		return "", errors.New("not an absolute URI with a host and no user information")
	}
	host, port := strings.ToLower(p.Hostname()), p.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	raw := p.EscapedPath()
	if raw == "" {
		raw = "/"
	}
	return scheme + "://" + host + removeDotSegments(normalizeEscapes(raw)), nil
}

// normalizeEscapes decodes %XX of unreserved characters and upper-cases
// the hex digits of the others (RFC 3986 §6.2.2.1, §6.2.2.2).
func normalizeEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b.WriteByte(s[i])
			continue
		}
		c := unhex(s[i+1])<<4 | unhex(s[i+2])
		if isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(s[i : i+3]))
		}
		i += 2
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path; unlike
// path.Clean it keeps empty segments ("//"), which are significant.
func removeDotSegments(p string) string {
	segs := strings.Split(p, "/")[1:]
	var out []string
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}
