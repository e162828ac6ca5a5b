package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/moat-bff/moat/internal/demo"
)

// runDemo is `moat demo`: a dev OpenID Provider, a recipe API and moat with
// a demo SPA, all on 127.0.0.1 (or the --frontend-origin's or --host's
// loopback host), until Ctrl-C.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := demo.DefaultOptions()
	fs := flag.NewFlagSet("moat demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: moat demo [flags]\n\nRuns a dev OpenID Provider, a recipe API and moat with a demo SPA on 127.0.0.1, until Ctrl-C.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&o.BFFPort, "bff-port", o.BFFPort, "port of moat, which serves the demo SPA")
	fs.IntVar(&o.IdPPort, "idp-port", o.IdPPort, "port of the demo OpenID Provider")
	fs.IntVar(&o.APIPort, "api-port", o.APIPort, "port of the demo recipe API")
	fs.IntVar(&o.AdminPort, "admin-port", o.AdminPort, "port of moat's admin listener (/metrics, /admin/sessions)")
	fs.StringVar(&o.FrontendOrigin, "frontend-origin", "", "origin of your own SPA dev server, e.g. http://localhost:5173 (becomes frontend_url and a CORS origin; its host becomes the demo's host)")
	fs.StringVar(&o.Host, "host", "", "host of the demo's URLs and listeners: 127.0.0.1 (default), localhost or ::1 (default: --frontend-origin's host)")
	fs.BoolVar(&o.IdPOnly, "idp-only", false, "run only the demo OpenID Provider and print its client credentials, for `moat serve` with your own config (needs --redirect-uri)")
	fs.Func("redirect-uri", "an extra redirect URI the demo client accepts: your moat's public_url + /auth/callback (repeatable)", func(v string) error {
		o.RedirectURIs = append(o.RedirectURIs, v)
		return nil
	})
	fs.Func("post-logout-redirect-uri", "an extra post_logout_redirect_uri the demo client accepts (repeatable; default: each --redirect-uri's origin + /)", func(v string) error {
		o.PostLogoutRedirectURIs = append(o.PostLogoutRedirectURIs, v)
		return nil
	})
	fs.StringVar(&o.CSRFMode, "csrf-mode", o.CSRFMode, "CSRF defence: header (X-CSRF: 1) or fetch-metadata")
	fs.StringVar(&o.ResourceAPI, "resource-api", "", "URL of your own API to proxy /resource/api/ to, instead of the recipe API")
	fs.DurationVar(&o.AccessTokenTTL, "access-token-ttl", o.AccessTokenTTL, "lifetime of the IdP's access tokens (short, so refreshes show)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	return demo.Run(ctx, o, stdout)
}
