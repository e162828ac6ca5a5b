package session

import (
	"sync"

	"github.com/moat-bff/moat/internal/dpop"
)

// keyMemo parses a session's DPoP key once for every copy of it that the
// cache hands out: each proxied request signs with it, and parsing derives
// the public key again.
type keyMemo struct {
	once sync.Once
	raw  []byte // the bytes parsed; a replaced key is parsed anew
	key  *dpop.Key
	err  error
}

// DPoPKey returns the session's DPoP key, or nil when it has none (oidc.dpop
// off, or a session from before it was turned on).
func (l *Loaded) DPoPKey() (*dpop.Key, error) {
	if len(l.DPoP) == 0 {
		return nil, nil
	}
	if memo := l.key; memo != nil && sameBytes(memo.raw, l.DPoP) {
		memo.once.Do(func() { memo.key, memo.err = dpop.ParseKey(memo.raw) })
		return memo.key, memo.err
	}
	return dpop.ParseKey(l.DPoP)
}
