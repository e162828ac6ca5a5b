package dpop

import (
	"net/http"
	"strings"
)

// NonceChallenged reports whether h (a 401 answer's headers) holds a DPoP
// challenge with error="use_dpop_nonce" (RFC 9449 §9): a resource server
// asking for a proof with its nonce. Other challenges in the same or other
// WWW-Authenticate fields are skipped.
func NonceChallenged(h http.Header) bool {
	for _, v := range h.Values("Www-Authenticate") {
		for _, c := range parseChallenges(v) {
			if strings.EqualFold(c.scheme, "DPoP") && c.params["error"] == "use_dpop_nonce" {
				return true
			}
		}
	}
	return false
}

// challenge is one auth-scheme and its auth-params (RFC 9110 §11.6.1).
type challenge struct {
	scheme string
	params map[string]string // names lower-cased; a repeated name keeps the first
}

// maxElements bounds the work on one hostile header field.
const maxElements = 64

// parseChallenges reads a WWW-Authenticate field value (RFC 9110 §11.6.1):
//
//	challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param = token BWS "=" BWS ( token / quoted-string )
//
// Challenges and their parameters are both comma-separated: an element
// that starts with a token and a space, or is a token alone, starts a new
// challenge; a name=value element is a parameter of the current one; a
// token68 is skipped, and so is anything malformed.
func parseChallenges(s string) []challenge {
	var out []challenge
	for i, e := range splitElements(s) {
		if i == maxElements {
			break
		}
		e = strings.Trim(e, " \t")
		if e == "" {
			continue
		}
		if name, val, ok := param(e); ok {
			if len(out) > 0 {
				if m := out[len(out)-1].params; !has(m, name) {
					m[name] = val
				}
			}
			continue
		}
		n := tokenLen(e)
		if n == 0 {
			continue // neither a scheme nor a parameter
		}
		c := challenge{scheme: e[:n], params: map[string]string{}}
		if rest := e[n:]; rest != "" {
			if rest[0] != ' ' {
				continue // "scheme/x": not a challenge
			}
			if name, val, ok := param(strings.TrimLeft(rest, " ")); ok {
				c.params[name] = val
			} // else a token68, or junk: the scheme alone counts
		}
		out = append(out, c)
	}
	return out
}

// splitElements splits s at the commas outside quoted strings.
func splitElements(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// param reads e as a whole auth-param: token BWS "=" BWS (token /
// quoted-string). The name is lower-cased, the value unquoted.
func param(e string) (name, val string, ok bool) {
	n := tokenLen(e)
	if n == 0 {
		return "", "", false
	}
	name, rest := strings.ToLower(e[:n]), strings.TrimLeft(e[n:], " \t")
	rest, ok = strings.CutPrefix(rest, "=")
	if !ok {
		return "", "", false
	}
	rest = strings.TrimLeft(rest, " \t")
	if m := tokenLen(rest); m > 0 && m == len(rest) {
		return name, rest, true
	}
	if val, ok := unquote(rest); ok {
		return name, val, true
	}
	return "", "", false
}

// unquote reads s as exactly one quoted-string (RFC 9110 §5.6.4).
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i == len(s)-1
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '\t' || c >= 0x20 && c != 0x7f && c != '\\':
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	return "", false // unterminated
}

// tokenLen is the length of the token (RFC 9110 §5.6.2) s starts with.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return i
		}
	}
	return len(s)
}

func has(m map[string]string, k string) bool { _, ok := m[k]; return ok }
