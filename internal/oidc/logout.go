package oidc

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// backchannelEvent is the member a logout token's events claim must hold
// (OpenID Connect Back-Channel Logout 1.0 §2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutToken is a validated back-channel logout token.
type LogoutToken struct {
	Issuer  string
	Subject string
	SID     string
	JTI     string
	Expiry  time.Time
}

// VerifyLogoutToken validates a back-channel logout token per
// Back-Channel Logout 1.0 §2.6: signature by the issuer's keys (never alg
// none), iss, aud (untrusted extra audiences rejected, as for ID tokens),
// iat and exp, sub and/or sid, the events member, no nonce, and typ
// logout+jwt when a typ is present (§4.1 recommends it; it stops an ID
// token from being replayed as a logout token). Replay of jti is the
// caller's to check.
func (c *Client) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return nil, err
	}
	reject := func(format string, args ...any) (*LogoutToken, error) {
		return nil, fmt.Errorf("%w: logout token: "+format, append([]any{ErrRejected}, args...)...)
	}
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return reject("%v", err)
	}
	if len(jws.Signatures) != 1 {
		return reject("want exactly one signature")
	}
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); ok {
		if t := strings.ToLower(typ); t != "logout+jwt" && t != "application/logout+jwt" {
			return reject("typ %q is not logout+jwt", typ)
		}
	}
	vctx, keys := withKeyOutcome(ctx)
	lt, err := p.verifier.VerifyLogout(vctx, raw)
	if keys.unavailable != nil {
		// An unknown kid within the refetch interval, or the JWKS down: the
		// OP may retry (503), and a flood of such tokens costs the IdP one
		// JWKS fetch per interval.
		return nil, fmt.Errorf("%w: logout token: %w", ErrUnavailable, keys.unavailable)
	}
	if err != nil {
		return reject("%v", err)
	}
	if aud := c.untrustedAudience(lt.Audience); aud != "" {
		return reject("untrusted audience %q", aud)
	}
	now := c.cfg.Now()
	if lt.IssuedAt.IsZero() || lt.IssuedAt.After(now.Add(c.cfg.ClockSkew)) || lt.IssuedAt.Before(now.Add(-c.cfg.MaxIDTokenAge-c.cfg.ClockSkew)) {
		return reject("iat is missing or outside the accepted window")
	}
	var claims struct {
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := lt.Claims(&claims); err != nil {
		return reject("%v", err)
	}
	ev, ok := claims.Events[backchannelEvent]
	if !ok {
		return reject("events has no back-channel logout member")
	}
	var obj map[string]any
	if err := json.Unmarshal(ev, &obj); err != nil || obj == nil {
		return reject("the back-channel logout event is not a JSON object")
	}
	return &LogoutToken{Issuer: lt.Issuer, Subject: lt.Subject, SID: lt.SessionID, JTI: lt.TokenID, Expiry: lt.Expiry}, nil
}
