package config

import "strings"

// PostLogoutRedirect is the post_logout_redirect_uri moat sends at logout
// (RP-Initiated Logout 1.0 §2): oidc.post_logout_redirect_url, or by
// default frontend_url, or public_url + "/", so that logout lands the user
// back in the app rather than on the IdP's "signed out" page. It must be
// registered at the IdP; `moat check` prints it.
func (c *Config) PostLogoutRedirect() string {
	switch {
	case c.OIDC.PostLogoutRedirectURL != "":
		return c.OIDC.PostLogoutRedirectURL
	case c.FrontendURL != "":
		return c.FrontendURL
	}
	return strings.TrimRight(c.PublicURL, "/") + "/"
}

// RedirectURI is the OAuth redirect_uri: public_url + /auth/callback.
func (c *Config) RedirectURI() string {
	return MustURL(c.PublicURL).JoinPath("/auth/callback").String()
}
