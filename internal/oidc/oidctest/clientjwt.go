package oidctest

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// verifyClientJWT applies what a client assertion (RFC 7523 §3) and a
// request object (RFC 9101 §6) have in common: one of algs, the typ header
// when typ is set, a signature by one of keys, iss the client, aud one of
// aud, exp present and not passed, and a jti. extra receive the payload
// too. Callers add their own limits, then spend the jti.
func (p *Provider) verifyClientJWT(raw string, keys *jose.JSONWebKeySet, algs []jose.SignatureAlgorithm, typ string, aud []string, extra ...any) (jwt.Claims, error) {
	var c jwt.Claims
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return c, fmt.Errorf("parse: %w", err)
	}
	if got, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); typ != "" && got != typ {
		return c, fmt.Errorf("typ %q", got)
	}
	if err := tok.Claims(keys, append([]any{&c}, extra...)...); err != nil {
		return c, fmt.Errorf("signature: %w", err)
	}
	switch {
	case c.Issuer != p.ClientID:
		return c, fmt.Errorf("iss %q", c.Issuer)
	case !containsAny(c.Audience, aud):
		return c, fmt.Errorf("aud %q", c.Audience)
	case c.Expiry == nil:
		return c, errors.New("exp missing")
	case c.Expiry.Time().Before(time.Now()):
		return c, errors.New("expired")
	case c.ID == "":
		return c, errors.New("no jti")
	}
	return c, nil
}

func containsAny(have jwt.Audience, want []string) bool {
	for _, a := range want {
		if have.Contains(a) {
			return true
		}
	}
	return false
}

// spendJTI refuses a jti seen before in any JWT the client signed, and
// remembers it.
func (p *Provider) spendJTI(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seenJTI[id] {
		return errors.New("replayed jti")
	}
	p.seenJTI[id] = true
	return nil
}
