package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/moat-bff/moat/internal/demo"
)

// runDemo is `moat demo`: a dev OpenID Provider, a recipe API and moat with
// a demo SPA, all on 127.0.0.1, until Ctrl-C.
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
	fs.StringVar(&o.FrontendOrigin, "frontend-origin", "", "origin of your own SPA dev server, e.g. http://127.0.0.1:5173 (becomes frontend_url and a CORS origin)")
	fs.StringVar(&o.CSRFMode, "csrf-mode", o.CSRFMode, "CSRF defence: header (X-CSRF: 1) or fetch-metadata")
	fs.StringVar(&o.ResourceAPI, "resource-api", "", "URL of your own API to proxy /resource/api/ to, instead of the recipe API")
	fs.DurationVar(&o.AccessTokenTTL, "access-token-ttl", o.AccessTokenTTL, "lifetime of the IdP's access tokens (short, so refreshes show)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	return demo.Run(ctx, o, stdout)
}
