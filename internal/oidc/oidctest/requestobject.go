package oidctest

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// RequireRequestObjects makes the provider advertise signed request
// objects (JAR, RFC 9101) and accept authorization requests, pushed or by
// value, only as a request object signed by one of keys.
func (p *Provider) RequireRequestObjects(keys jose.JSONWebKeySet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requestKeys = &keys
	if p.seenJTI == nil {
		p.seenJTI = map[string]bool{}
	}
}

// RequestObjectError returns why the provider last refused a request
// object, or "".
func (p *Provider) RequestObjectError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requestObjErr
}

func (p *Provider) requestObjectsRequired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requestKeys != nil
}

func (p *Provider) refuseRequestObject(why string) {
	p.mu.Lock()
	p.requestObjErr = why
	p.mu.Unlock()
}

// registered are the claims of a request object that are not
// authorization parameters.
var registered = map[string]bool{"iss": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true, "sub": true}

// verifyRequestObject applies RFC 9101 §6 and the FAPI 2.0 limits to raw:
// typ oauth-authz-req+jwt (§10.8), a signature by a registered key, iss
// the client, aud the issuer, nbf and exp present with at most 60 minutes
// between them, not expired, a jti never seen, client_id the client, no
// nested request or request_uri. outside, for a request by value, are the
// query parameters beside it: each must equal the request object's value
// (OIDC Core §6.1). It returns the request object's parameters.
func (p *Provider) verifyRequestObject(raw string, outside url.Values) (url.Values, error) {
	fail := func(format string, args ...any) (url.Values, error) {
		why := fmt.Sprintf(format, args...)
		p.refuseRequestObject(why)
		return nil, errors.New(why)
	}
	if raw == "" {
		return fail("no request object")
	}
	p.mu.Lock()
	keys := p.requestKeys
	p.mu.Unlock()
	if keys == nil {
		return fail("no client keys registered for request objects")
	}
	var all map[string]any
	std, err := p.verifyClientJWT(raw, keys, []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.EdDSA},
		"oauth-authz-req+jwt", []string{p.Issuer}, &all)
	switch {
	case err != nil:
		return fail("%v", err)
	case std.NotBefore == nil:
		return fail("nbf missing")
	case std.NotBefore.Time().After(time.Now().Add(time.Minute)):
		return fail("not yet valid")
	case std.Expiry.Time().Sub(std.NotBefore.Time()) > time.Hour:
		return fail("lifetime over 60 minutes")
	}
	params := url.Values{}
	for k, v := range all {
		if registered[k] {
			continue
		}
		switch v := v.(type) {
		case string:
			params.Set(k, v)
		case float64:
			params.Set(k, strconv.FormatFloat(v, 'f', -1, 64))
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return fail("claim %s holds a %T", k, e)
				}
				params.Add(k, s)
			}
		default:
			return fail("claim %s is a %T", k, v)
		}
	}
	switch {
	case params.Has("request") || params.Has("request_uri"):
		return fail("nested request or request_uri")
	case params.Get("client_id") != p.ClientID:
		return fail("client_id %q", params.Get("client_id"))
	}
	for k, vs := range outside {
		if k != "request" && !slices.Equal(vs, params[k]) {
			return fail("%s outside the request object differs", k)
		}
	}
	if err := p.spendJTI(std.ID); err != nil {
		return fail("%v", err)
	}
	return params, nil
}
