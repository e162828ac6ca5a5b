package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// BenchmarkLogin measures complete logins against the in-process OP: the
// redirect to the OP, its authorization response, and the callback (code
// exchange with client authentication and PKCE, ID-token validation, a new
// session in the memory store), from 2×GOMAXPROCS concurrent browsers.
// The OP signs ID tokens with RS256 (RSA-2048) or ES256 (P-256); signing an
// RS256 token costs the OP more than everything moat does for a login, and
// both run in this process, so ES256 shows moat's own cost better.
//
//	go test -run '^$' -bench Login -benchmem ./internal/gateway/
func BenchmarkLogin(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			mods := []any{func(c *config.Config) { unlimited(c) }}
			if alg == "ES256" {
				mods = append(mods, func(p *oidctest.Provider) { p.RotateKeyES256() })
			}
			e := newEnv(b, mods...)
			if err := benchLogin(e); err != nil { // discovery and JWKS, outside the timing
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(2)
			b.ResetTimer()
			var failed sync.Once
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := benchLogin(e); err != nil {
						failed.Do(func() { b.Error(err) })
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
		})
	}
}

// benchClient keeps connections to moat and the OP alive across logins.
var benchClient = &http.Client{
	Transport:     &http.Transport{MaxIdleConnsPerHost: 1024},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// benchLogin walks one login the way a browser does, with its own cookies,
// and checks that it ends with a session cookie. It returns errors rather
// than failing, so it may run on RunParallel's goroutines.
func benchLogin(e *env) error {
	jar := map[string]string{} // moat's cookies; the OP sets none
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(u, e.url) {
			for name, value := range jar {
				req.AddCookie(&http.Cookie{Name: name, Value: value})
			}
		}
		resp, err := benchClient.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if strings.HasPrefix(u, e.url) {
			for _, c := range resp.Cookies() {
				jar[c.Name] = c.Value
			}
		}
		if resp.StatusCode != http.StatusFound {
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return resp, nil
	}
	next := e.url + "/auth/login?returnTo=" + url.QueryEscape("/")
	for range 3 { // moat → OP → moat's callback
		resp, err := get(next)
		if err != nil {
			return err
		}
		next = resp.Header.Get("Location")
	}
	if jar[session.CookieName] == "" {
		return errors.New("the login set no session cookie")
	}
	return nil
}

// BenchmarkRefreshStorm sends 1000 concurrent proxied requests on one
// session whose access token has just expired, to an OP whose token
// endpoint takes opDelay to answer. Exactly one refresh grant may reach
// the OP (the benchmark fails otherwise); every request waits for it.
//
// 1000 requests take a while to serve on a small machine whatever the
// token, so each iteration first sends the same storm with a fresh token.
// It reports both p99 latencies, the OP's delay, and refresh-cost-ms: the
// p99 with the refresh minus the p99 without, which is what the refresh
// adds to the slowest requests (ideally the OP's delay and little more).
// Client, moat, OP and upstream share this process and its CPUs.
//
//	go test -run '^$' -bench RefreshStorm -benchtime 5x ./internal/gateway/
func BenchmarkRefreshStorm(b *testing.B) {
	const (
		storm   = 1000
		opDelay = 50 * time.Millisecond
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer at-") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer api.Close()
	e := newEnv(b, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/storm/", Upstream: api.URL + "/"})
		unlimited(c)
	})
	br := e.browser()
	br.login("/")
	cookie := br.sessionCookie()
	e.op.Set(func(bh *oidctest.Behavior) { bh.TokenDelay = opDelay })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: storm}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	send := func() (time.Duration, error) {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/storm/item", nil)
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
		req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %s", resp.Status)
		}
		return time.Since(start), nil
	}
	run := func() []time.Duration {
		lat := make([]time.Duration, storm)
		errs := make([]error, storm)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range storm {
			wg.Go(func() {
				<-start
				lat[i], errs[i] = send()
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		return lat
	}
	// Open the connections first, as browsers would have them, so that the
	// storms measure the refresh rather than 1000 TCP handshakes.
	run()

	var fresh, refresh []time.Duration
	b.ResetTimer()
	for range b.N {
		fresh = append(fresh, run()...)
		b.StopTimer()
		e.expireAccessToken(cookie)
		before := e.op.Grants("refresh_token")
		b.StartTimer()
		refresh = append(refresh, run()...)
		if n := e.op.Grants("refresh_token") - before; n != 1 {
			b.Fatalf("%d refresh grants reached the OP for one expired session, want exactly 1", n)
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p99 := func(l []time.Duration) time.Duration {
		slices.Sort(l)
		return l[int(0.99*float64(len(l)-1))]
	}
	pf, pr := p99(fresh), p99(refresh)
	b.ReportMetric(ms(opDelay), "op-delay-ms")
	b.ReportMetric(ms(pf), "p99-fresh-ms")
	b.ReportMetric(ms(pr), "p99-refresh-ms")
	b.ReportMetric(ms(pr-pf), "refresh-cost-ms")
}
