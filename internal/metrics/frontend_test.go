package metrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestFrontendLabel: without frontends the metrics are as they were (no
// frontend label, login counters at 0 from the start); with them, each
// frontend's view counts under its own label value.
func TestFrontendLabel(t *testing.T) {
	single := New()
	if single.Frontend("a") != single {
		t.Error("without frontends a view is the metrics themselves")
	}
	single.Request("/api/", "GET", 200, time.Millisecond)
	expect(t, single.Registry(), "moat_logins_started_total", "moat_logins_started_total{} 0")
	expect(t, single.Registry(), "moat_idp_client_rejected_total", "moat_idp_client_rejected_total{} 0")
	expect(t, single.Registry(), "moat_http_requests_total", `moat_http_requests_total{code="200",method="GET",route="/api/"} 1`)

	multi := NewFrontends()
	a, b := multi.Frontend("a"), multi.Frontend("b")
	a.LoginStarted()
	a.LoginCompleted()
	b.LoginFailed("state")
	b.Backchannel("ok")
	a.Request("/api/", "GET", 200, time.Millisecond)
	b.Request("/api/", "GET", 200, time.Millisecond)
	b.Request("/api/", "GET", 200, time.Millisecond)
	b.Upstream("/api/", 200, time.Millisecond)
	a.Refresh("ok")
	b.ClientRejected()
	b.IdP("token", time.Millisecond)
	reg := multi.Registry()
	expect(t, reg, "moat_http_requests_total",
		`moat_http_requests_total{code="200",frontend="a",method="GET",route="/api/"} 1`,
		`moat_http_requests_total{code="200",frontend="b",method="GET",route="/api/"} 2`)
	expect(t, reg, "moat_logins_started_total", `moat_logins_started_total{frontend="a"} 1`, `moat_logins_started_total{frontend="b"} 0`)
	expect(t, reg, "moat_logins_completed_total", `moat_logins_completed_total{frontend="a"} 1`, `moat_logins_completed_total{frontend="b"} 0`)
	expect(t, reg, "moat_logins_failed_total", `moat_logins_failed_total{frontend="b",reason="state"} 1`)
	expect(t, reg, "moat_backchannel_logouts_total", `moat_backchannel_logouts_total{frontend="b",result="ok"} 1`)
	expect(t, reg, "moat_upstream_requests_total", `moat_upstream_requests_total{code="200",frontend="b",route="/api/"} 1`)
	expect(t, reg, "moat_token_refreshes_total", `moat_token_refreshes_total{frontend="a",outcome="ok"} 1`)
	expect(t, reg, "moat_idp_client_rejected_total", `moat_idp_client_rejected_total{frontend="a"} 0`, `moat_idp_client_rejected_total{frontend="b"} 1`)
	if n := histogramCount(t, reg, "moat_idp_request_duration_seconds", `endpoint="token",frontend="b"`); n != 1 {
		t.Errorf("moat_idp_request_duration_seconds for b's token endpoint: %d observations, want 1", n)
	}
}

// histogramCount returns the sample count of the series of histogram name
// in reg whose sorted labels read labels (name="value",...).
func histogramCount(t *testing.T, reg *prometheus.Registry, name, labels string) uint64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if strings.Join(got, ",") == labels {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// expect fails t unless the counter family name in reg holds exactly the
// series want, written name{label="value",...} count with labels sorted.
func expect(t *testing.T, reg *prometheus.Registry, name string, want ...string) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			got = append(got, fmt.Sprintf("%s{%s} %g", name, strings.Join(labels, ","), m.GetCounter().GetValue()))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}
