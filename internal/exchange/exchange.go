// Package exchange keeps the access tokens moat obtains by exchanging a
// session's access token for one meant for a single upstream (RFC 8693
// token exchange), for routes with token_exchange. Tokens live in memory,
// per replica, in a bounded LRU: each is keyed by a hash of the session,
// the subject token and the target, so a refreshed user token gets a fresh
// exchange and a token for one target never serves another. One exchange
// per key runs at a time.
package exchange

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/tokencache"
)

// Source exchanges tokens; *oidc.Client is one.
type Source interface {
	TokenExchange(ctx context.Context, subjectToken string, req oidc.ExchangeRequest) (oidc.Tokens, error)
}

// DefaultMaxEntries bounds the cache when Options.MaxEntries is 0.
const DefaultMaxEntries = 10000

// Options configures a Cache.
type Options struct {
	Source Source
	// Skew: tokens expiring within it are exchanged again first.
	Skew time.Duration
	// MaxEntries bounds the tokens kept; the least recently used go first.
	MaxEntries int
	Now        func() time.Time
}

type key [sha256.Size]byte

type entry struct {
	k   key
	tok session.Tokens
}

// Cache hands out exchanged tokens. The zero value is not usable; use New.
type Cache struct {
	o Options

	renewer *tokencache.Renewer

	mu    sync.Mutex
	lru   *list.List // of *entry, most recent first
	byKey map[key]*list.Element
}

// New returns a Cache.
func New(o Options) *Cache {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return &Cache{o: o, renewer: tokencache.New(o.Skew, o.Now), lru: list.New(), byKey: map[key]*list.Element{}}
}

// Token returns an access token for req, exchanged from subjectToken, the
// access token of the session named by sessionKey. It asks the IdP only
// when no cached token for this (session, subject token, target) is more
// than the skew from expiry; if that fails while the cached one has not
// expired, the cached one is returned (tokencache.Renewer).
func (c *Cache) Token(ctx context.Context, sessionKey, subjectToken string, req oidc.ExchangeRequest) (string, error) {
	k := cacheKey(sessionKey, subjectToken, req)
	t := c.get(k)
	if c.renewer.Fresh(t) {
		return t.AccessToken, nil
	}
	return c.renew(ctx, k, t, subjectToken, req)
}

// renew is Token's miss path, apart so that a hit moves nothing to the
// heap; t is the token kept under k, or zero.
func (c *Cache) renew(ctx context.Context, k key, t session.Tokens, subjectToken string, req oidc.ExchangeRequest) (string, error) {
	tok, err := c.renewer.Renew(ctx, string(k[:]), t,
		func(ctx context.Context) (oidc.Tokens, error) {
			return c.o.Source.TokenExchange(ctx, subjectToken, req)
		},
		func(nt session.Tokens) { c.put(k, nt) })
	if err != nil {
		return "", fmt.Errorf("token exchange: %w", err)
	}
	return tok, nil
}

// Len is the number of tokens kept.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// get returns the token kept under k, or the zero Tokens.
func (c *Cache) get(k key) session.Tokens {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return session.Tokens{}
	}
	c.lru.MoveToFront(el)
	return el.Value.(*entry).tok
}

func (c *Cache) put(k key, t session.Tokens) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		el.Value.(*entry).tok = t
		c.lru.MoveToFront(el)
		return
	}
	c.byKey[k] = c.lru.PushFront(&entry{k: k, tok: t})
	for c.lru.Len() > c.o.MaxEntries {
		c.remove(c.lru.Back())
	}
}

func (c *Cache) remove(el *list.Element) {
	delete(c.byKey, el.Value.(*entry).k)
	c.lru.Remove(el)
}

// cacheKey hashes everything that decides which token is right, each part
// length-prefixed so that no two inputs collide; the subject token itself
// is never kept.
func cacheKey(sessionKey, subjectToken string, req oidc.ExchangeRequest) key {
	scope := req.Scope
	if !slices.IsSorted(scope) {
		scope = slices.Sorted(slices.Values(scope))
	}
	var stack [512]byte
	b := stack[:0]
	part := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	part(sessionKey)
	part(subjectToken)
	part(req.Audience)
	part(req.Resource)
	for i, s := range scope {
		if i == 0 || s != scope[i-1] {
			part(s)
		}
	}
	return sha256.Sum256(b)
}
