package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/moat-bff/moat/internal/dpop"
)

// ErrNoDPoPKey: Config.DPoP is on and a login or refresh came without the
// session's DPoP key, as for a session from before oidc.dpop was turned
// on. No request is sent: its tokens would come back unbound.
var ErrNoDPoPKey = errors.New("oidc: oidc.dpop is on but the session has no DPoP key")

// needKey refuses a login or refresh without its DPoP key when
// Config.DPoP is on, so no request goes out unbound by mistake.
func (c *Client) needKey(key *dpop.Key) error {
	if c.cfg.DPoP && key == nil {
		return ErrNoDPoPKey
	}
	return nil
}

// dpopTransport wraps base (nil: http.DefaultTransport) to send each
// request with a proof by key, and accessToken as Authorization: DPoP when
// not "" (RFC 9449 §7.1), handling the IdP's nonces (§8).
func (c *Client) dpopTransport(base http.RoundTripper, key *dpop.Key, accessToken string) http.RoundTripper {
	return &dpop.Transport{
		Base:   base,
		Sender: func(*http.Request) (*dpop.Key, string) { return key, accessToken },
		Nonces: &c.nonces,
		Now:    c.cfg.Now,
	}
}

// signedCtx is the context for an x/oauth2 token request: with key, every
// request carries a proof (RFC 9449 §5); extra parameters are added to the
// form.
func (c *Client) signedCtx(ctx context.Context, key *dpop.Key, extra url.Values) context.Context {
	if key == nil && extra == nil {
		return c.clientCtx(ctx)
	}
	return c.clientCtxVia(ctx, func(base http.RoundTripper) http.RoundTripper {
		if extra != nil {
			base = addForm{base, extra}
		}
		if key != nil {
			base = c.dpopTransport(base, key, "")
		}
		return base
	})
}

// dpopMismatch reports a provider that says which proof algorithms it
// accepts and leaves out ES256, the one moat signs with: every login would
// fail.
func (c *Client) dpopMismatch(meta Metadata) string {
	if !c.cfg.DPoP || c.fapi2() || len(meta.DPoPSigningAlgs) == 0 || slices.Contains(meta.DPoPSigningAlgs, dpop.Algorithm) {
		return ""
	}
	return fmt.Sprintf("oidc.dpop: the provider's dpop_signing_alg_values_supported %q lacks %s, the algorithm of moat's DPoP proofs (RFC 9449 §5.1), so every login would fail; enable ES256 for DPoP at the provider, or remove oidc.dpop", meta.DPoPSigningAlgs, dpop.Algorithm)
}
