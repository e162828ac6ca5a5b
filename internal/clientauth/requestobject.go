package clientauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// RequestObjectType is the typ header of a request object (RFC 9101
// §10.8), so it cannot be mistaken for another JWT the same key signs,
// such as a client assertion.
const RequestObjectType = "oauth-authz-req+jwt"

// RequestObjectLifetime bounds a request object: it is verified when the
// IdP receives it (at PAR, or when the browser arrives at the authorization
// endpoint), seconds after signing; FAPI 2.0 allows at most 60 minutes.
const RequestObjectLifetime = 5 * time.Minute

// RequestObject signs the authorization request params into a request
// object (RFC 9101 §4, OIDC Core §6.1) for clientID and the IdP's issuer
// aud: iss is the client, nbf and iat now, exp after
// RequestObjectLifetime, a fresh jti, and every parameter as a claim
// (max_age as a number, OIDC Core §6.1; a repeated one as an array).
func (ks *Keys) RequestObject(clientID, aud string, params url.Values, now time.Time) (string, error) {
	k := ks.keys[0]
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k},
		(&jose.SignerOptions{}).WithType(RequestObjectType))
	if err != nil {
		return "", fmt.Errorf("request object: %w", err)
	}
	claims := map[string]any{}
	for name, vs := range params {
		switch len(vs) {
		case 0:
			continue
		case 1:
			claims[name] = vs[0]
		default:
			claims[name] = vs // resource (RFC 8707 §2) may repeat: a JSON array
		}
		if name == "max_age" {
			n, err := strconv.Atoi(vs[0])
			if err != nil {
				return "", fmt.Errorf("request object: max_age %q is not a number", vs[0])
			}
			claims[name] = n
		}
	}
	var jti [16]byte
	rand.Read(jti[:])
	std := jwt.Claims{
		Issuer: clientID, Audience: jwt.Audience{aud},
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		Expiry: jwt.NewNumericDate(now.Add(RequestObjectLifetime)),
	}
	// The registered claims last: a parameter named iss, aud or exp must
	// not replace them.
	return jwt.Signed(signer).Claims(claims).Claims(std).Serialize()
}
