package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/telemetry"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// scrape fetches and parses the admin listener's /metrics.
func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	adm := httptest.NewServer(e.gw.Admin)
	defer adm.Close()
	resp, err := http.Get(adm.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition format: %v", err)
	}
	return fams
}

// value sums the samples of family whose labels include want.
func value(fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	f := fams[family]
	if f == nil {
		return -1
	}
	total := 0.0
outer:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue outer
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func TestMetricsAfterAFlow(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Admin.Listen = "127.0.0.1:0" })
	b := e.browser()
	b.login("/")
	b.api("GET", "/resource/api/recipe/123")
	b.api("GET", "/resource/api/recipe/456")
	e.expireAccessToken(b.sessionCookie())
	b.api("GET", "/resource/api/recipe/789")
	e.browser().get("/auth/callback?state=forged&code=x")
	postLogoutToken(t, e, "garbage")
	fams := scrape(t, e)

	checks := []struct {
		family string
		labels map[string]string
		min    float64
	}{
		{"moat_http_requests_total", map[string]string{"route": "/resource/api/", "method": "GET", "code": "200"}, 3},
		{"moat_http_requests_total", map[string]string{"route": "/auth/callback", "code": "302"}, 1},
		{"moat_http_request_duration_seconds", map[string]string{"route": "/resource/api/"}, 3},
		{"moat_upstream_requests_total", map[string]string{"route": "/resource/api/", "code": "200"}, 3},
		{"moat_upstream_duration_seconds", map[string]string{"route": "/resource/api/"}, 3},
		{"moat_logins_started_total", nil, 1},
		{"moat_logins_completed_total", nil, 1},
		{"moat_logins_failed_total", map[string]string{"reason": "state"}, 1},
		{"moat_token_refreshes_total", map[string]string{"outcome": "ok"}, 1},
		{"moat_backchannel_logouts_total", map[string]string{"result": "rejected"}, 1},
		{"moat_store_operation_duration_seconds", map[string]string{"op": "cas"}, 1},
		{"moat_store_operation_duration_seconds", map[string]string{"op": "take"}, 2},
		{"moat_idp_request_duration_seconds", map[string]string{"endpoint": "discovery"}, 1},
		{"moat_idp_request_duration_seconds", map[string]string{"endpoint": "token"}, 2},
		{"moat_idp_request_duration_seconds", map[string]string{"endpoint": "jwks"}, 1},
		{"moat_sessions_active", nil, 1},
		{"go_goroutines", nil, 1},
	}
	for _, c := range checks {
		if got := value(fams, c.family, c.labels); got < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.family, c.labels, got, c.min)
		}
	}
	// Labels stay bounded: route names, never paths with IDs in them.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "123") || strings.Contains(l.GetValue(), "recipe") {
					t.Errorf("%s has an unbounded label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	if value(fams, "moat_store_errors_total", nil) > 0 {
		t.Error("not-found and conflicts were counted as store errors")
	}
}

func TestTracesCarryNoSecrets(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	e := newEnv(t, func(o *gateway.Options) { o.Tracing = telemetry.NewTracing(tp) })
	b := e.browser()
	b.login("/")
	b.api("GET", "/resource/api/recipe")
	b.api("GET", "/auth/userinfo")

	spans := exp.GetSpans()
	kinds := map[string]int{}
	var apiTrace string
	for _, s := range spans {
		kinds[s.Name]++
		if s.Name == "GET" && s.SpanKind.String() == "server" {
			for _, a := range s.Attributes {
				if string(a.Key) == "url.path" && a.Value.AsString() == "/resource/api/recipe" {
					apiTrace = s.SpanContext.TraceID().String()
				}
			}
		}
	}
	if kinds["session.store.set"] == 0 || kinds["session.store.take"] == 0 || kinds["GET"] == 0 || kinds["HTTP POST"] == 0 || kinds["HTTP GET"] == 0 {
		t.Errorf("span names = %v", kinds)
	}
	// The upstream received the trace context of the request it serves.
	reqs := e.upstream.requests()
	tp0 := reqs[len(reqs)-1].Header.Get("Traceparent")
	if apiTrace == "" || !strings.Contains(tp0, apiTrace) {
		t.Errorf("upstream traceparent %q, want trace %s", tp0, apiTrace)
	}
	secrets := append(e.op.IssuedTokens(), e.op.ClientSecret, b.sessionCookie().Value)
	for _, s := range spans {
		for _, a := range s.Attributes {
			v := a.Value.Emit()
			for _, sec := range secrets {
				if strings.Contains(v, sec) {
					t.Errorf("span %q attribute %s holds a secret", s.Name, a.Key)
				}
			}
			if strings.Contains(v, "code=") || strings.Contains(v, "state=") {
				t.Errorf("span %q attribute %s holds authorization response parameters: %s", s.Name, a.Key, v)
			}
		}
	}
}

func TestReload(t *testing.T) {
	oldKey := e2eKey()
	e := newEnv(t, func(c *config.Config) {
		c.Session.Store = "bolt://" + t.TempDir() + "/s.db"
		c.Session.Keys = []secret.String{oldKey}
	})
	b := e.browser()
	b.login("/")
	ctx := context.Background()

	next := *e.gw.Config()
	next.Routes = append([]config.Route{{Prefix: "/new/", Upstream: e.upstream.URL + "/new/"}}, next.Routes...)
	next.Session.Keys = []secret.String{e2eKey(), oldKey} // rotation step 2
	next.SetDefaults()
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	if r := b.api("GET", "/new/x"); r.StatusCode != http.StatusOK || r.json(t)["path"] != "/new/x" {
		t.Errorf("new route: %s %s", r.Status, r.body)
	}
	if !loggedIn(t, b) {
		t.Fatal("a key rotation by reload logged the user out")
	}

	bad := next
	bad.Session.Keys = []secret.String{e2eKey()}
	if err := e.gw.Reload(ctx, &bad); err == nil || !strings.Contains(err.Error(), "session.keys") {
		t.Errorf("reload with a foreign key: %v", err)
	}
	moved := next
	moved.PublicURL = "https://elsewhere.example"
	moved.Listen = "127.0.0.1:1"
	if err := e.gw.Reload(ctx, &moved); err == nil || !strings.Contains(err.Error(), "listen, public_url cannot change") {
		t.Errorf("reload changing listen and public_url: %v", err)
	}
	idle := next
	idle.Session.IdleTimeout = config.Duration(time.Minute)
	idle.Routes = nil // reloadable: not named
	if err := e.gw.Reload(ctx, &idle); err == nil || !strings.HasPrefix(err.Error(), "session.idle_timeout cannot change without a restart") {
		t.Errorf("reload changing session.idle_timeout: %v", err)
	}
	// rate_limit reloads, but the pending-logins cap is kept across
	// reloads: a change to it is refused, never accepted and ignored.
	capped := next
	capped.Limits.PendingLogins.PerReplica = 7
	if err := e.gw.Reload(ctx, &capped); err == nil || !strings.HasPrefix(err.Error(), "rate_limit.pending_logins.per_replica cannot change without a restart") {
		t.Errorf("reload changing rate_limit.pending_logins: %v", err)
	}
	if r := b.api("GET", "/new/x"); r.StatusCode != http.StatusOK || !loggedIn(t, b) {
		t.Error("a refused reload disturbed the running configuration")
	}
}

func e2eKey() secret.String { return secret.String(session.NewKey()) }

func TestMetricMethodLabelIsBounded(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Admin.Listen = "127.0.0.1:0" })
	b := e.browser()
	for _, m := range []string{"FOO", "BAR", "PROPFIND-X"} {
		b.send(m, "/auth/checksession", nil)
	}
	fams := scrape(t, e)
	for _, m := range fams["moat_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && !slices.Contains([]string{"GET", "POST", "OTHER"}, l.GetValue()) {
				t.Errorf("method label %q", l.GetValue())
			}
		}
	}
	if value(fams, "moat_http_requests_total", map[string]string{"method": "OTHER"}) != 3 {
		t.Error("invented methods are not counted as OTHER")
	}
}
