package clientauth

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
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
	if r.Method != http.MethodPost || !isForm(r.Header.Get("Content-Type")) || r.Body == nil {
		return t.base().RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("client assertion: request body: %w", err)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	aud := t.Audience
	if aud == "" {
		aud = (&url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host, Path: r.URL.Path}).String()
	}
	assertion, err := t.Keys.Assertion(t.ClientID, aud, now())
	if err != nil {
		return nil, err
	}
	form.Del("client_secret")
	form.Set("client_id", t.ClientID)
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", assertion)
	enc := form.Encode()
	out := r.Clone(r.Context())
	out.Header.Del("Authorization")
	out.Body = io.NopCloser(bytes.NewReader([]byte(enc)))
	out.ContentLength = int64(len(enc))
	out.Header.Set("Content-Length", strconv.Itoa(len(enc)))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte(enc))), nil }
	return t.base().RoundTrip(out)
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

func isForm(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}
