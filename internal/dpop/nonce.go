package dpop

import (
	"net/url"
	"strings"
	"sync"
)

// maxNonceLen bounds a server nonce moat keeps and echoes: RFC 9449 sets
// no limit, but a nonce is an opaque token, not a payload.
const maxNonceLen = 512

// ValidNonce reports whether v may be used as a server nonce: 1*NQCHAR
// (RFC 9449 §8.1: printable ASCII without space, '"' and '\') and at most
// maxNonceLen long. Anything else from a server is ignored.
func ValidNonce(v string) bool {
	if v == "" || len(v) > maxNonceLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// maxOrigins bounds the servers whose nonce is remembered: they are the
// IdP's endpoints and the configured upstreams, a handful.
const maxOrigins = 256

// Nonces remembers the latest nonce each server gave (RFC 9449 §8.2, §9),
// by origin, in memory: a replica learns a server's nonce from its first
// answer, and a stale one costs one retry.
type Nonces struct {
	mu sync.Mutex
	m  map[string]string
}

// Get returns the nonce last seen from origin, or "".
func (n *Nonces) Get(origin string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[origin]
}

// Set remembers nonce for origin if it is valid.
func (n *Nonces) Set(origin, nonce string) {
	if !ValidNonce(nonce) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]string{}
	}
	if _, ok := n.m[origin]; !ok && len(n.m) >= maxOrigins {
		clear(n.m) // more servers than any configuration names: start over
	}
	n.m[origin] = nonce
}

// Origin is the key Nonces keeps a server's nonce under: scheme and host.
func Origin(u *url.URL) string { return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) }
