// Package clienttoken keeps the access tokens moat obtains for itself with
// the client credentials grant (RFC 6749 §4.4), for routes with token:
// client or user_or_client. Each set of scopes has one token per replica,
// renewed before it expires by one request at a time; callers meanwhile
// keep using the current token while it is still valid.
package clienttoken

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
)

// Source obtains a fresh client token; *oidc.Client is one.
type Source interface {
	ClientCredentials(ctx context.Context, scopes []string) (oidc.Tokens, error)
}

// Cache hands out client tokens. The zero value is not usable; use New.
type Cache struct {
	src  Source
	skew time.Duration
	now  func() time.Time

	mu     sync.Mutex
	tokens map[string]session.Tokens
	group  singleflight.Group
}

// DefaultLifetime is assumed for a token whose response states no
// expires_in: it is renewed that often rather than kept forever.
const DefaultLifetime = 5 * time.Minute

// New returns a Cache renewing tokens skew before they expire.
func New(src Source, skew time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{src: src, skew: skew, now: now, tokens: map[string]session.Tokens{}}
}

// Token returns an access token for scopes. It asks the IdP only when the
// cached token is within skew of its expiry, one request per scope set at
// a time; if that request fails while the cached token has not expired,
// the cached one is returned.
func (c *Cache) Token(ctx context.Context, scopes []string) (string, error) {
	key := cacheKey(scopes)
	now := c.now()
	c.mu.Lock()
	t, ok := c.tokens[key]
	c.mu.Unlock()
	if ok && t.Fresh(now, c.skew) {
		return t.AccessToken, nil
	}
	ch := c.group.DoChan(key, func() (any, error) {
		nt, err := c.src.ClientCredentials(context.WithoutCancel(ctx), slices.Clone(scopes))
		if err != nil {
			return nil, err
		}
		got := c.now()
		if nt.Expiry.IsZero() {
			nt.Expiry = got.Add(DefaultLifetime)
		}
		c.mu.Lock()
		c.tokens[key] = session.Tokens{AccessToken: nt.AccessToken, Expiry: nt.Expiry, Obtained: got}
		c.mu.Unlock()
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
			return t.AccessToken, nil // still valid: the IdP's hiccup costs nobody a request
		}
		return "", fmt.Errorf("client token: %w", res.Err)
	}
}

func cacheKey(scopes []string) string {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}
