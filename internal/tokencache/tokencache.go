// Package tokencache is the renewal rule moat's per-replica caches of
// access tokens it obtains for itself share (client credentials in
// internal/clienttoken, token exchange in internal/exchange): a cached
// token is used until it is within the refresh skew of its expiry
// (session.Tokens.Fresh); then one request per key at a time asks the IdP,
// and if that fails while the cached token has not expired, the cached
// token is used rather than failing the caller. Where the tokens live is
// the caller's business.
package tokencache

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
)

// DefaultLifetime is assumed for a token whose response states no
// expires_in (RFC 6749 §5.1 makes it optional): it is renewed that often
// rather than kept forever.
const DefaultLifetime = 5 * time.Minute

// Renewer applies the rule. The zero value is not usable; use New.
type Renewer struct {
	skew  time.Duration
	now   func() time.Time
	group singleflight.Group
}

// New returns a Renewer renewing tokens skew before they expire; now nil
// is time.Now.
func New(skew time.Duration, now func() time.Time) *Renewer {
	if now == nil {
		now = time.Now
	}
	return &Renewer{skew: skew, now: now}
}

// Fresh reports whether cached can be handed out without asking the IdP.
// It is apart from Renew so that a cache hit builds no closures.
func (r *Renewer) Fresh(cached session.Tokens) bool { return cached.Fresh(r.now(), r.skew) }

// Renew asks the IdP with fetch, one call per key at a time: concurrent
// callers with the same key share its answer. fetch runs without the
// caller's cancellation, so that a caller giving up does not fail the
// others; keep stores the new token. If fetch fails while cached (zero if
// none) has not expired, Renew returns cached's access token.
func (r *Renewer) Renew(ctx context.Context, key string, cached session.Tokens,
	fetch func(context.Context) (oidc.Tokens, error), keep func(session.Tokens)) (string, error) {
	ch := r.group.DoChan(key, func() (any, error) {
		nt, err := fetch(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
		got := r.now()
		if nt.Expiry.IsZero() {
			nt.Expiry = got.Add(DefaultLifetime)
		}
		keep(session.Tokens{AccessToken: nt.AccessToken, Expiry: nt.Expiry, Obtained: got})
		return nt.AccessToken, nil
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.Err == nil {
			return res.Val.(string), nil
		}
		if cached.AccessToken != "" && r.now().Before(cached.Expiry) {
			return cached.AccessToken, nil // still valid: the IdP's hiccup costs nobody a request
		}
		return "", res.Err
	}
}
