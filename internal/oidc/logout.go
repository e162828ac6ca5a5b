package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
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
	// Expiry is the token's exp; for a legacy token without one, the end of
	// its iat window, until which moat would accept it (so its jti mark
	// must last as long).
	Expiry time.Time
}

// VerifyLogoutToken validates a back-channel logout token per
// Back-Channel Logout 1.0 §2.6: signature by the issuer's keys (never alg
// none), iss, aud (untrusted extra audiences rejected, as for ID tokens),
// iat and exp, sub and/or sid, the events member, no nonce, and typ
// logout+jwt when a typ is present (§4.1 recommends it; it stops an ID
// token from being replayed as a logout token). Replay of jti is the
// caller's to check.
//
// With Config.LegacyLogoutTokens, tokens of the drafts before the final
// version are accepted too: typ JWT, and no exp (which the drafts did not
// have), the iat window bounding such a token's life instead. Ory Hydra
// 2.x sends these. The events member and the absence of nonce still tell
// a logout token from an ID token.
func (c *Client) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return nil, err
	}
	reject := func(format string, args ...any) (*LogoutToken, error) {
		return nil, fmt.Errorf("%w: logout token: "+format, append([]any{ErrRejected}, args...)...)
	}
	const legacyHint = " (Ory Hydra 2.x and other providers built on the drafts of Back-Channel Logout before 2022 send such tokens; oidc.insecure_legacy_logout_tokens accepts them)"
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return reject("%v", err)
	}
	if len(jws.Signatures) != 1 {
		return reject("want exactly one signature")
	}
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); ok {
		switch t := strings.ToLower(typ); {
		case t == "logout+jwt" || t == "application/logout+jwt":
		case t == "jwt" && c.cfg.LegacyLogoutTokens:
		case t == "jwt":
			return reject("typ %q is not logout+jwt%s", typ, legacyHint)
		default:
			return reject("typ %q is not logout+jwt", typ)
		}
	}
	// Whether exp is present only picks the verifier; every claim is
	// checked on the verified payload.
	var shape struct {
		Exp json.RawMessage `json:"exp"`
	}
	json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &shape)
	if shape.Exp == nil && !c.cfg.LegacyLogoutTokens {
		return reject("no exp%s", legacyHint)
	}
	vctx, keys := withKeyOutcome(ctx)
	var lt *gooidc.LogoutToken
	var claimsOf func(any) error // the verified payload's claims
	if shape.Exp == nil {
		lt, claimsOf, err = verifyLogoutWithoutExp(vctx, p.noExpVerifier, raw)
	} else if lt, err = p.verifier.VerifyLogout(vctx, raw); err == nil {
		claimsOf = lt.Claims
	}
	if keys.unavailable != nil {
		// The JWKS cannot be fetched: an outage (503). A kid missing from
		// a JWKS fetched within the interval (keys.unknownKid) comes from
		// anyone who can POST: a token moat cannot verify is a bad request
		// (§2.8, 400), and a flood of them costs the IdP one JWKS fetch per
		// interval. A key the OP rotated in those seconds is refused too;
		// OPs do not retry a 503 either (oidc-provider sends once).
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
	if err := claimsOf(&claims); err != nil {
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
	exp := lt.Expiry
	if exp.IsZero() {
		exp = lt.IssuedAt.Add(c.cfg.MaxIDTokenAge + c.cfg.ClockSkew)
	}
	return &LogoutToken{Issuer: lt.Issuer, Subject: lt.Subject, SID: lt.SessionID, JTI: lt.TokenID, Expiry: exp}, nil
}

// verifyLogoutWithoutExp is go-oidc's VerifyLogout for a token without
// exp: v (go-oidc's ID token verifier without its exp check) verifies the
// signature, iss and aud; the logout token's own rules follow, as
// VerifyLogout applies them. It returns the verified payload's Claims too.
func verifyLogoutWithoutExp(ctx context.Context, v *gooidc.IDTokenVerifier, raw string) (*gooidc.LogoutToken, func(any) error, error) {
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	var cl struct {
		Exp    json.RawMessage            `json:"exp"`
		Nonce  json.RawMessage            `json:"nonce"`
		JTI    string                     `json:"jti"`
		SID    string                     `json:"sid"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := idt.Claims(&cl); err != nil {
		return nil, nil, err
	}
	var bad string
	switch {
	case cl.Exp != nil:
		bad = "exp present" // the caller saw none unverified
	case cl.Events[backchannelEvent] == nil:
		bad = "events has no back-channel logout member"
	case cl.Nonce != nil:
		bad = "a logout token must not contain a nonce"
	case cl.JTI == "":
		bad = "no jti"
	case idt.Subject == "" && cl.SID == "":
		bad = "neither sub nor sid"
	}
	if bad != "" {
		return nil, nil, errors.New(bad)
	}
	lt := &gooidc.LogoutToken{Issuer: idt.Issuer, Subject: idt.Subject, Audience: idt.Audience,
		IssuedAt: idt.IssuedAt, SessionID: cl.SID, TokenID: cl.JTI}
	return lt, idt.Claims, nil
}
