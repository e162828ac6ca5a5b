package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/moat-bff/moat/internal/frontend"
)

// Frontend is one of several SPAs a moat serves (frontends:), each at its
// own origin (public_url) with its own OIDC client, routes, CORS, CSRF and
// SPA settings. Sessions, keys, limits, admin, metrics and listeners are
// shared, top-level keys. Its keys mean what the top-level keys of the same
// name mean without frontends.
type Frontend struct {
	// Name labels the frontend in logs, metrics and the admin API, and
	// names its session cookie (__Host-Http-moat-NAME).
	Name        string  `yaml:"name"`
	PublicURL   string  `yaml:"public_url"`
	FrontendURL string  `yaml:"frontend_url"`
	OIDC        OIDC    `yaml:"oidc"`
	Routes      []Route `yaml:"routes"`
	CORS        CORS    `yaml:"cors"`
	CSRF        CSRF    `yaml:"csrf"`
	SPA         SPA     `yaml:"spa"`
}

// frontend returns c's own frontend keys; setFrontend sets them.
func (c *Config) frontend() Frontend {
	return Frontend{Name: c.Name, PublicURL: c.PublicURL, FrontendURL: c.FrontendURL, OIDC: c.OIDC, Routes: c.Routes, CORS: c.CORS, CSRF: c.CSRF, SPA: c.SPA}
}

func (c *Config) setFrontend(f Frontend) {
	c.Name, c.PublicURL, c.FrontendURL, c.OIDC, c.Routes, c.CORS, c.CSRF, c.SPA = f.Name, f.PublicURL, f.FrontendURL, f.OIDC, f.Routes, f.CORS, f.CSRF, f.SPA
}

// frontendName is what a frontends[].name may be: short, and safe in a
// cookie name, a metric label and a store index.
var frontendName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// appKeys are the top-level keys that are per frontend.
var appKeys = slices.DeleteFunc(knownKeys(reflect.TypeFor[Frontend]()), func(k string) bool { return k == "name" })

func isAppKey(key string) bool {
	return slices.ContainsFunc(appKeys, func(k string) bool { return under(key, k) })
}

// Views returns the configuration as each frontend sees it: the shared
// keys with the frontend's own. Without frontends it is c alone.
func (c *Config) Views() []*Config {
	if len(c.Frontends) == 0 {
		return []*Config{c}
	}
	out := make([]*Config, len(c.Frontends))
	for i, f := range c.Frontends {
		v := *c
		v.setFrontend(f)
		v.Frontends = nil
		out[i] = &v
	}
	return out
}

// validateFrontends checks frontends: each frontend's own keys (as its
// view sees them, named frontends[i].key), its name, that no two share a
// host, and that nothing per frontend is set at the top level beside them.
// It returns the errors of the shared keys from shared, dropping those
// about the (empty) top-level frontend keys.
func (c *Config) validateFrontends(shared error) error {
	var errs []error
	for _, e := range flatten(shared) {
		if !isAppKey(keyOf(e)) {
			errs = append(errs, e)
		}
	}
	top := &Config{}
	top.setFrontend(c.frontend())
	for _, k := range Diff(&Config{}, top) {
		errs = append(errs, fmt.Errorf("%s: is a frontend's key, set at the top level beside frontends; move it under each frontends[i] that needs it", k))
	}
	names := map[string]int{}
	var urls []string
	views := c.Views()
	for i, v := range views {
		key := fmt.Sprintf("frontends[%d]", i)
		switch j, dup := names[v.Name]; {
		case v.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: is required: a short label such as app or admin ([a-z0-9-], at most 32)", key))
		case !frontendName.MatchString(v.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q may hold only a-z, 0-9 and -, start with a letter or digit, and be at most 32 long", key, v.Name))
		case dup:
			errs = append(errs, fmt.Errorf("%s.name: %q is also frontends[%d].name", key, v.Name, j))
		}
		names[v.Name] = i
		for _, e := range flatten(v.validate(true)) {
			if isAppKey(keyOf(e)) {
				errs = append(errs, errors.New(key+"."+e.Error()))
			}
		}
		urls = append(urls, v.PublicURL)
	}
	if slices.ContainsFunc(errs, func(e error) bool { return strings.HasSuffix(keyOf(e), ".public_url") }) {
		return errors.Join(errs...)
	}
	if _, err := frontend.New(urls); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, shadowed(views)...)...)
}

// shadowed returns an error for each frontend mounted at a path where
// another frontend of its origin, mounted higher up, serves moat's own
// endpoints or a route: the deeper frontend would take those requests.
func shadowed(views []*Config) []error {
	type mount struct {
		hosts  []string
		prefix string
	}
	mounts := make([]mount, len(views))
	for i, v := range views {
		u := MustURL(v.PublicURL)
		p, _ := frontend.Prefix(u)
		mounts[i] = mount{frontend.Hosts(u), p}
	}
	overlap := func(a, b string) bool { return frontend.Under(a, b) || frontend.Under(b, a) }
	var errs []error
	for i, b := range mounts {
		for j, a := range mounts {
			if i == j || len(a.prefix) >= len(b.prefix) || !frontend.Under(b.prefix, a.prefix) ||
				!slices.ContainsFunc(a.hosts, func(h string) bool { return slices.Contains(b.hosts, h) }) {
				continue
			}
			rel := b.prefix[len(a.prefix):]
			for _, r := range reservedPrefixes {
				if overlap(rel, strings.TrimSuffix(r, "/")) {
					errs = append(errs, fmt.Errorf("frontends[%d].public_url: path %s would take frontends[%d]'s %s, which moat serves itself; choose another path", i, b.prefix, j, a.prefix+r))
				}
			}
			for k, rt := range views[j].Routes {
				if overlap(rel, strings.TrimSuffix(rt.Prefix, "/")) {
					errs = append(errs, fmt.Errorf("frontends[%d].public_url: path %s overlaps frontends[%d].routes[%d].prefix %s; one frontend would take the other's requests: choose another path or route prefix", i, b.prefix, j, k, rt.Prefix))
				}
			}
		}
	}
	return errs
}

// sharedOrigins warns of frontends mounted at paths of one origin: the
// browser's same-origin policy does not separate paths, so each SPA's
// scripts can call the other's API with the other's cookie (which is
// __Host- and so Path=/). Only separate origins isolate them from each
// other's script; moat still never accepts one's cookie for the other.
func sharedOrigins(views []*Config) []string {
	var w []string
	seen := map[string]int{}
	for i, v := range views {
		if v.Name == "" {
			break
		}
		u := MustURL(v.PublicURL)
		hosts := frontend.Hosts(u) // the last one has the port
		origin := strings.ToLower(u.Scheme) + "://" + hosts[len(hosts)-1]
		if j, ok := seen[origin]; ok {
			w = append(w, fmt.Sprintf("frontends[%d].public_url shares the origin %s with frontends[%d]: browsers do not isolate paths, so either SPA's scripts can call the other's routes as its user; give each SPA its own host where one must not reach the other", i, origin, j))
			continue
		}
		seen[origin] = i
	}
	return w
}
