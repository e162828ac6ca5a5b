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

	"golang.org/x/sync/singleflight"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
)

// Source exchanges tokens; *oidc.Client is one.
type Source interface {
	TokenExchange(ctx context.Context, subjectToken string, req oidc.ExchangeRequest) (oidc.Tokens, error)
}

// DefaultLifetime is assumed for an exchanged token whose response states
// no expires_in: it is exchanged again that often rather than kept forever.
const DefaultLifetime = 5 * time.Minute

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

	mu    sync.Mutex
	lru   *list.List // of *entry, most recent first
	byKey map[key]*list.Element
	group singleflight.Group
}

// New returns a Cache.
func New(o Options) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return &Cache{o: o, lru: list.New(), byKey: map[key]*list.Element{}}
}

// Token returns an access token for req, exchanged from subjectToken, the
// access token of the session named by sessionKey. It asks the IdP only
// when no cached token for this (session, subject token, target) is more
// than the skew from expiry; if that fails while the cached one has not
// expired, the cached one is returned.
func (c *Cache) Token(ctx context.Context, sessionKey, subjectToken string, req oidc.ExchangeRequest) (string, error) {
	k := cacheKey(sessionKey, subjectToken, req)
	now := c.o.Now()
	t, ok := c.get(k)
	if ok && t.Fresh(now, c.o.Skew) {
		return t.AccessToken, nil
	}
	return c.exchange(ctx, k, t, ok, now, subjectToken, req)
}

// exchange asks the IdP, once per key at a time; t is the token kept under
// k, if ok.
func (c *Cache) exchange(ctx context.Context, k key, t session.Tokens, ok bool, now time.Time, subjectToken string, req oidc.ExchangeRequest) (string, error) {
	ch := c.group.DoChan(string(k[:]), func() (any, error) {
		nt, err := c.o.Source.TokenExchange(context.WithoutCancel(ctx), subjectToken, req)
		if err != nil {
			return nil, err
		}
		got := c.o.Now()
		if nt.Expiry.IsZero() {
			nt.Expiry = got.Add(DefaultLifetime)
		}
		c.put(k, session.Tokens{AccessToken: nt.AccessToken, Expiry: nt.Expiry, Obtained: got})
		return nt.AccessToken, nil
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.Err == nil {
			return res.Val.(string), nil
		}
		if ok && now.Before(t.Expiry) {
			return t.AccessToken, nil
		}
		return "", fmt.Errorf("token exchange: %w", res.Err)
	}
}

// Len is the number of tokens kept.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *Cache) get(k key) (session.Tokens, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return session.Tokens{}, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*entry).tok, true
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
