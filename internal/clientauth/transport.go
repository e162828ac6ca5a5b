package clientauth

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/moat-bff/moat/internal/formpost"
)

// Transport adds client authentication by assertion to every form POST
// sent through it: the token endpoint (code, refresh, client credentials),
// PAR and revocation are all the form POSTs moat sends an IdP. It removes
// any other client authentication (Basic header, client_secret) and sets
// client_id, client_assertion_type and a fresh client_assertion.
type Transport struct {
	Base     http.RoundTripper // nil: http.DefaultTransport
	Keys     *Keys
	ClientID string
	// Audience is the assertion's aud: the IdP's issuer identifier; ""
	// uses the URL the request goes to (the token endpoint, for IdPs that
	// accept only that; RFC 9126 §2 lets a PAR endpoint accept its own).
	Audience string
	Now      func() time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	aud := t.Audience
	if aud == "" {
		aud = (&url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host, Path: r.URL.Path}).String()
	}
	out, err := formpost.Edit(r, func(form url.Values) error {
		assertion, err := t.Keys.Assertion(t.ClientID, aud, now())
		if err != nil {
			return err
		}
		form.Del("client_secret")
		form.Set("client_id", t.ClientID)
		form.Set("client_assertion_type", AssertionType)
		form.Set("client_assertion", assertion)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client assertion: %w", err)
	}
	if out != r {
		out.Header.Del("Authorization")
	}
	return t.base().RoundTrip(out)
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}
