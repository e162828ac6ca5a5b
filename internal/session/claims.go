package session

import (
	"encoding/json"
	"sync"
)

// claimsMemo decodes a session's claims once for every copy of it that the
// cache hands out: per-route rules read them on each request, and decoding
// JSON costs thirty times more than judging the rules.
type claimsMemo struct {
	once sync.Once
	raw  json.RawMessage // the bytes decoded; a changed Claims is decoded anew
	m    map[string]any
	err  error
}

// ClaimsMap returns the session's claims decoded. The map may be shared
// between requests: callers must not change it.
func (l *Loaded) ClaimsMap() (map[string]any, error) {
	if memo := l.memo; memo != nil && sameBytes(memo.raw, l.Claims) {
		memo.once.Do(func() { memo.m, memo.err = decodeClaims(memo.raw) })
		return memo.m, memo.err
	}
	return decodeClaims(l.Claims)
}

func decodeClaims(raw json.RawMessage) (map[string]any, error) {
	m := map[string]any{}
	if len(raw) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// sameBytes reports whether a and b are the same slice of the same array,
// not merely equal: a session whose Claims were replaced must not be
// judged by the old ones.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
