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

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/tokencache"
)

// Source obtains a fresh client token; *oidc.Client is one.
type Source interface {
	ClientCredentials(ctx context.Context, scopes []string) (oidc.Tokens, error)
}

// Cache hands out client tokens. The zero value is not usable; use New.
type Cache struct {
	src     Source
	renewer *tokencache.Renewer

	mu     sync.Mutex
	tokens map[string]session.Tokens
}

// New returns a Cache renewing tokens skew before they expire.
func New(src Source, skew time.Duration, now func() time.Time) *Cache {
	return &Cache{src: src, renewer: tokencache.New(skew, now), tokens: map[string]session.Tokens{}}
}

// Token returns an access token for scopes. It asks the IdP only when the
// cached token is within skew of its expiry, one request per scope set at
// a time; if that request fails while the cached token has not expired,
// the cached one is returned (tokencache.Renewer).
func (c *Cache) Token(ctx context.Context, scopes []string) (string, error) {
	key := cacheKey(scopes)
	c.mu.Lock()
	t := c.tokens[key]
	c.mu.Unlock()
	if c.renewer.Fresh(t) {
		return t.AccessToken, nil
	}
	tok, err := c.renewer.Renew(ctx, key, t,
		func(ctx context.Context) (oidc.Tokens, error) {
			return c.src.ClientCredentials(ctx, slices.Clone(scopes))
		},
		func(nt session.Tokens) {
			c.mu.Lock()
			c.tokens[key] = nt
			c.mu.Unlock()
		})
	if err != nil {
		return "", fmt.Errorf("client token: %w", err)
	}
	return tok, nil
}

func cacheKey(scopes []string) string {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}
