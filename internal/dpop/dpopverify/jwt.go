package dpopverify

import (
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTBinding is what a Resource Binding does with a JWT access token
// (RFC 9068) that the resource server verifies itself: it checks the
// signature against keys (the issuer's JWKS), iss and exp, and returns the
// token's cnf.jkt (RFC 9449 §6.1), "" when it has none.
func JWTBinding(token string, keys jose.JSONWebKeySet, issuer string, now time.Time) (string, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA})
	if err != nil {
		return "", fmt.Errorf("access token is not a JWT: %w", err)
	}
	var c struct {
		jwt.Claims
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := tok.Claims(keys, &c); err != nil {
		return "", fmt.Errorf("access token signature: %w", err)
	}
	if c.Expiry == nil {
		return "", fmt.Errorf("access token without exp")
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Time: now}, 0); err != nil {
		return "", fmt.Errorf("access token: %w", err)
	}
	return c.Cnf.JKT, nil
}
