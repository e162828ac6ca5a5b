package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// BenchmarkProxyHotPath compares moat's proxied request (cookie → session
// lookup → unseal → token → Rewrite → upstream) with a bare, tuned
// httputil.ReverseProxy that adds a fixed Bearer header, in the same run,
// against the same upstream returning 1 KiB of JSON. Compare the two as a
// ratio; absolute figures on a shared machine mean little.
//
//	go test -run '^$' -bench ProxyHotPath -benchmem ./internal/gateway/
func BenchmarkProxyHotPath(b *testing.B) {
	payload := `{"data":"` + strings.Repeat("x", 1000) + `"}`
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(payload))
	}))
	defer api.Close()

	e := newEnv(b, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/bench/", Upstream: api.URL + "/"},
			config.Route{Prefix: "/rules/", Upstream: api.URL + "/", Require: []config.Requirement{
				{Claim: "email_verified", AnyOf: []string{"true"}}, {MaxAge: config.Duration(12 * time.Hour)}}},
			config.Route{Prefix: "/res/", Upstream: api.URL + "/", Resource: "https://api.example/"},
			config.Route{Prefix: "/xchg/", Upstream: api.URL + "/", TokenExchange: &config.TokenExchange{Audience: "api-a"}})
		unlimited(c)
	}, func(b *oidctest.Behavior) { b.ExchangeTargets = []string{"api-a"} })
	br := e.browser()
	br.login("/")
	cookie := br.sessionCookie()
	// The same route on a moat with oidc.dpop: each request signs a proof.
	ed := newEnv(b, func(c *config.Config) {
		c.OIDC.DPoP = true
		c.Routes = append(c.Routes, config.Route{Prefix: "/bench/", Upstream: api.URL + "/"})
		unlimited(c)
	}, func(b *oidctest.Behavior) { b.DPoP, b.DPoPRequired = true, true })
	bd := ed.browser()
	bd.login("/")
	// The same route on a moat with two frontends, selected by Host.
	multi := newEnv(b, func(c *config.Config) {
		c.Routes = []config.Route{{Prefix: "/bench/", Upstream: api.URL + "/"}}
		unlimited(c)
		c.Frontends = []config.Frontend{
			{Name: "app", PublicURL: c.PublicURL, OIDC: c.OIDC, Routes: c.Routes},
			{Name: "other", PublicURL: strings.Replace(c.PublicURL, "127.0.0.1", "localhost", 1), OIDC: c.OIDC, Routes: c.Routes},
		}
		c.PublicURL, c.OIDC, c.Routes, c.CORS = "", config.OIDC{}, nil, config.CORS{}
	})
	mbr := multi.browser()
	mbr.login("/")
	multiCookie := mbr.cookies[session.CookieName+"-app"]
	// The same again with the frontend mounted at /m of its origin.
	mounted := newEnv(b, func(c *config.Config) {
		c.Routes = []config.Route{{Prefix: "/bench/", Upstream: api.URL + "/"}}
		unlimited(c)
		c.Frontends = []config.Frontend{
			{Name: "app", PublicURL: c.PublicURL + "/m", OIDC: c.OIDC, Routes: c.Routes},
			{Name: "other", PublicURL: strings.Replace(c.PublicURL, "127.0.0.1", "localhost", 1), OIDC: c.OIDC, Routes: c.Routes},
		}
		c.PublicURL, c.OIDC, c.Routes, c.CORS = "", config.OIDC{}, nil, config.CORS{}
	}, func(p *oidctest.Provider) { p.RedirectURI = strings.Replace(p.RedirectURI, "/auth/", "/m/auth/", 1) })
	mtb := mounted.browser()
	r := mtb.get("/m/auth/login")
	r = mtb.get(mtb.get(r.Header.Get("Location")).Header.Get("Location"))
	mountedCookie := mtb.cookies[session.CookieName+"-app"]
	if r.StatusCode != http.StatusFound || mountedCookie == nil {
		b.Fatalf("login at /m: %s %s", r.Status, r.body)
	}

	target, _ := url.Parse(api.URL)
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("Authorization", "Bearer fixed-token")
		},
		Transport:  &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, ForceAttemptHTTP2: true},
		BufferPool: &benchBufferPool{}, // as moat does: a fair, strong reference
	}
	host := strings.TrimPrefix(e.url, "http://")
	run := func(b *testing.B, h http.Handler, path string, cookie *http.Cookie) {
		b.ReportAllocs()
		b.SetParallelism(16) // 32 concurrent requests on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := httptest.NewRequest("GET", path, nil)
				req.Host = host // the frontend's
				if cookie != nil {
					req.AddCookie(cookie)
					req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || w.Body.Len() != len(payload) {
					b.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
				}
			}
		})
	}
	b.Run("bare", func(b *testing.B) { run(b, bare, "/bench/item", nil) })
	b.Run("moat", func(b *testing.B) { run(b, e.gw, "/bench/item", cookie) })
	b.Run("moat+rules", func(b *testing.B) { run(b, e.gw, "/rules/item", cookie) })             // routes[].require: two rules
	b.Run("moat+resource", func(b *testing.B) { run(b, e.gw, "/res/item", cookie) })            // routes[].resource: the cached RFC 8707 token
	b.Run("moat+exchange", func(b *testing.B) { run(b, e.gw, "/xchg/item", cookie) })           // routes[].token_exchange, cached
	b.Run("moat+dpop", func(b *testing.B) { run(b, ed.gw, "/bench/item", bd.sessionCookie()) }) // oidc.dpop: a proof per request
	b.Run("moat+frontends", func(b *testing.B) {                                                // two frontends: the Host selects one
		host = strings.TrimPrefix(multi.url, "http://")
		run(b, multi.gw, "/bench/item", multiCookie)
	})
	b.Run("moat+mounted", func(b *testing.B) { // two frontends: the Host and the path /m select one
		host = strings.TrimPrefix(mounted.url, "http://")
		run(b, mounted.gw, "/m/bench/item", mountedCookie)
	})
}

// unlimited lifts the rate limits: a benchmark is one client and one
// session sending as fast as it can.
func unlimited(c *config.Config) {
	c.Limits.PerIP = config.Limit{Rate: 1e9, Burst: 1e9}
	c.Limits.PerSession = config.Limit{Rate: 1e9, Burst: 1e9}
	c.Limits.Login = config.Limit{Rate: 1e9, Burst: 1e9}
}

// benchBufferPool reuses 32 KiB copy buffers for the bare proxy.
type benchBufferPool struct{ p sync.Pool }

func (b *benchBufferPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return v.(*[32 << 10]byte)[:]
	}
	return new([32 << 10]byte)[:]
}

func (b *benchBufferPool) Put(buf []byte) {
	if cap(buf) >= 32<<10 {
		b.p.Put((*[32 << 10]byte)(buf[:32<<10]))
	}
}
