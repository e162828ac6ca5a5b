package demo

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/moat-bff/moat/internal/demo/idp"
)

// checkRedirectURIs checks --redirect-uri and --post-logout-redirect-uri
// and derives the post-logout URIs (each redirect URI's origin + /) when
// none are given.
func (o *Options) checkRedirectURIs() []error {
	var errs []error
	if o.IdPOnly && len(o.RedirectURIs) == 0 {
		errs = append(errs, fmt.Errorf("--idp-only needs --redirect-uri: your moat's public_url + /auth/callback, e.g. --redirect-uri http://127.0.0.1:8080/auth/callback"))
	}
	derive := len(o.PostLogoutRedirectURIs) == 0
	for _, set := range []struct {
		flag string
		uris []string
	}{{"--redirect-uri", o.RedirectURIs}, {"--post-logout-redirect-uri", o.PostLogoutRedirectURIs}} {
		for _, raw := range set.uris {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.User != nil {
				errs = append(errs, fmt.Errorf("%s %q: give an absolute http(s) URL without a fragment, e.g. http://127.0.0.1:8080/auth/callback", set.flag, raw))
				continue
			}
			if derive && set.flag == "--redirect-uri" {
				o.PostLogoutRedirectURIs = append(o.PostLogoutRedirectURIs, u.Scheme+"://"+u.Host+"/")
			}
		}
	}
	return errs
}

// printIdPBanner tells an operator how to point their own moat at the IdP.
func (s *System) printIdPBanner(w io.Writer) {
	public := "http://127.0.0.1:8080"
	for _, r := range s.RedirectURIs {
		if u, err := url.Parse(r); err == nil && strings.HasSuffix(u.Path, "/auth/callback") {
			public = u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/auth/callback")
			break
		}
	}
	fmt.Fprintf(w, `
moat demo --idp-only: the demo OpenID Provider alone. DEVELOPMENT ONLY: plain http,
in-memory state, a fixed password.

  issuer                    %s
  client_id                 %s
  client_secret             %s
  redirect URIs             %s
  post-logout redirect URIs %s
  user                      username %q, password %q

A moat.yaml that logs in against it:

  listen: %s
  public_url: %s
  oidc:
    issuer: %s
    client_id: %s
    client_secret: %s
  session:
    store: memory

Press Ctrl-C to stop.

`, s.IssuerURL, ClientID, s.ClientSecret, strings.Join(s.RedirectURIs, " "), strings.Join(s.PostLogoutRedirectURIs, " "),
		idp.DemoUser.Username, idp.DemoUser.Password,
		strings.TrimPrefix(public, "http://"), public, s.IssuerURL, ClientID, s.ClientSecret)
}
