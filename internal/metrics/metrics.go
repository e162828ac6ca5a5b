// Package metrics defines moat's Prometheus metrics. Every name starts with
// moat_ and every label has a bounded set of values (route names, not
// paths), so a scrape stays small whatever the traffic. A nil *Metrics
// records nothing, so tests and embedders need not set one up.
package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds moat's collectors. With several frontends (NewFrontends),
// Frontend returns a view whose request, upstream, login, back-channel,
// refresh and IdP metrics carry a frontend label.
type Metrics struct {
	*core
	frontend string // the frontend label's value; "" without frontends
}

type core struct {
	// labelled: the per-frontend metrics have a frontend label (NewFrontends).
	labelled        bool
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	upstream        *prometheus.CounterVec
	upstreamDur     *prometheus.HistogramVec
	loginsStarted   *prometheus.CounterVec
	loginsCompleted *prometheus.CounterVec
	loginsFailed    *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	backchannel     *prometheus.CounterVec
	storeDuration   *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec
	idpDuration     *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec
	clientRejected  *prometheus.CounterVec
	reg             *prometheus.Registry

	// The children of the per-request vectors, by label values: resolving
	// labels (validation, hashing, a read lock) on every request costs more
	// than the observation, and strconv.Itoa allocates.
	requestChildren  sync.Map // requestLabels → *children
	upstreamChildren sync.Map // upstreamLabels → *children
}

type requestLabels struct {
	frontend, route, method string
	code                    int
}

type upstreamLabels struct {
	frontend, route string
	code            int
}

type children struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// cacheable reports whether method is one of the standard methods, the
// only ones that become a label value.
func cacheable(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return true
	}
	return false
}

// latency buckets from 0.5 ms to 10 s: a BFF hop should sit at the bottom.
var buckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New registers moat's metrics, and the Go runtime and process collectors,
// on a fresh registry.
func New() *Metrics { return newMetrics(false) }

// NewFrontends is New for a moat with several frontends: requests,
// upstream calls, logins, back-channel logouts, refreshes and IdP calls
// (each frontend has its own client, possibly at its own issuer) are also
// labelled by frontend (its configured name, so the values are bounded),
// through the views Frontend returns.
func NewFrontends() *Metrics { return newMetrics(true) }

func newMetrics(labelled bool) *Metrics {
	reg := prometheus.NewRegistry()
	// fe appends the frontend label to a per-frontend metric's labels.
	fe := func(labels ...string) []string {
		if labelled {
			return append(labels, "frontend")
		}
		return labels
	}
	m := &Metrics{core: &core{
		reg: reg, labelled: labelled,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_http_requests_total",
			Help: "Requests served, by route, method and status code."}, fe("route", "method", "code")),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_http_request_duration_seconds",
			Help: "Time to serve a request, by route.", Buckets: buckets}, fe("route")),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_upstream_requests_total",
			Help: "Proxied requests by route and upstream status code (502/504 when the upstream failed)."}, fe("route", "code")),
		upstreamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_upstream_duration_seconds",
			Help: "Time from forwarding a request to the end of the upstream's response, by route.", Buckets: buckets}, fe("route")),
		loginsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_logins_started_total",
			Help: "Logins started (redirects to the IdP)."}, fe()),
		loginsCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_logins_completed_total",
			Help: "Logins completed with a new session."}, fe()),
		loginsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_logins_failed_total",
			Help: "Logins that failed, by reason: state, binding, issuer, idp_error, rejected, unavailable."}, fe("reason")),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_token_refreshes_total",
			Help: "Access-token refreshes at the IdP, by outcome: ok, invalid_grant (the IdP refused the grant: the session ended), client_rejected, transient."}, fe("outcome")),
		backchannel: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_backchannel_logouts_total",
			Help: "Back-channel logout requests, by result: ok, rejected, replayed."}, fe("result")),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_store_operation_duration_seconds",
			Help: "Session store operation latency, by operation.", Buckets: buckets}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_store_errors_total",
			Help: "Session store operations that failed (not counting not-found and conflicts), by operation."}, []string{"op"}),
		idpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_idp_request_duration_seconds",
			Help: "Latency of calls to the IdP, by endpoint: discovery, jwks, token, userinfo, revocation, other.", Buckets: buckets}, fe("endpoint")),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_rate_limited_total",
			Help: "Requests refused with 429, by limit: ip, session, login."}, []string{"scope"}),
		clientRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_idp_client_rejected_total",
			Help: "Token endpoint answers refusing moat's client (invalid_client, unauthorized_client): a deployment problem."}, fe()),
	}}
	if !labelled {
		m.startCounters() // exported as 0 from the start, as plain counters are
	}
	reg.MustRegister(m.clientRejected, m.requests, m.requestDuration, m.upstream, m.upstreamDur, m.loginsStarted, m.loginsCompleted,
		m.loginsFailed, m.refreshes, m.backchannel, m.storeDuration, m.storeErrors, m.idpDuration, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Frontend returns the view of m for the frontend named name, whose
// per-frontend metrics carry frontend="name". Without NewFrontends it is m.
func (m *Metrics) Frontend(name string) *Metrics {
	if m == nil || !m.labelled {
		return m
	}
	v := &Metrics{core: m.core, frontend: name}
	v.startCounters()
	return v
}

// startCounters creates the label-less counters of m's frontend, so that
// they are scraped as 0 before the first event.
func (m *Metrics) startCounters() {
	m.loginsStarted.WithLabelValues(m.values()...)
	m.loginsCompleted.WithLabelValues(m.values()...)
	m.clientRejected.WithLabelValues(m.values()...)
}

// values returns vals with m's frontend label appended when there is one.
func (m *Metrics) values(vals ...string) []string {
	if m.labelled {
		return append(vals, m.frontend)
	}
	return vals
}

// Registry returns the registry to serve with promhttp.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ActiveSessions registers a gauge read from count at each scrape, for
// stores that can count cheaply.
func (m *Metrics) ActiveSessions(count func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moat_sessions_active",
		Help: "Records in the session store (sessions and pending logins)."}, func() float64 { return float64(count()) }))
}

// Request records a served request. Methods outside the standard set are
// counted as OTHER: a client inventing methods must not mint label values.
func (m *Metrics) Request(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if !cacheable(method) {
		method = "OTHER"
	}
	key := requestLabels{m.frontend, route, method, code}
	c, ok := m.requestChildren.Load(key)
	if !ok {
		c, _ = m.requestChildren.LoadOrStore(key, &children{
			count:    m.requests.WithLabelValues(m.values(route, method, strconv.Itoa(code))...),
			duration: m.requestDuration.WithLabelValues(m.values(route)...),
		})
	}
	ch := c.(*children)
	ch.count.Inc()
	ch.duration.Observe(d.Seconds())
}

// Upstream records a proxied request's upstream outcome.
func (m *Metrics) Upstream(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	key := upstreamLabels{m.frontend, route, code}
	c, ok := m.upstreamChildren.Load(key)
	if !ok {
		c, _ = m.upstreamChildren.LoadOrStore(key, &children{
			count:    m.upstream.WithLabelValues(m.values(route, strconv.Itoa(code))...),
			duration: m.upstreamDur.WithLabelValues(m.values(route)...),
		})
	}
	ch := c.(*children)
	ch.count.Inc()
	ch.duration.Observe(d.Seconds())
}

// LoginStarted counts a redirect to the IdP.
func (m *Metrics) LoginStarted() {
	if m != nil {
		m.loginsStarted.WithLabelValues(m.values()...).Inc()
	}
}

// LoginCompleted counts a new session.
func (m *Metrics) LoginCompleted() {
	if m != nil {
		m.loginsCompleted.WithLabelValues(m.values()...).Inc()
	}
}

// LoginFailed counts a failed callback by reason.
func (m *Metrics) LoginFailed(reason string) {
	if m != nil {
		m.loginsFailed.WithLabelValues(m.values(reason)...).Inc()
	}
}

// Refresh counts a refresh attempt by outcome.
func (m *Metrics) Refresh(outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(m.values(outcome)...).Inc()
	}
}

// ClientRejected counts a token endpoint refusal of moat's client.
func (m *Metrics) ClientRejected() {
	if m != nil {
		m.clientRejected.WithLabelValues(m.values()...).Inc()
	}
}

// Backchannel counts a back-channel logout request by result.
func (m *Metrics) Backchannel(result string) {
	if m != nil {
		m.backchannel.WithLabelValues(m.values(result)...).Inc()
	}
}

// RateLimited counts a 429 by scope.
func (m *Metrics) RateLimited(scope string) {
	if m != nil {
		m.rateLimited.WithLabelValues(scope).Inc()
	}
}

// StoreOp records a store operation; expected outcomes (not found,
// conflict, the caller going away) are not errors.
func (m *Metrics) StoreOp(op string, d time.Duration, err error, expected ...error) {
	if m == nil {
		return
	}
	m.storeDuration.WithLabelValues(op).Observe(d.Seconds())
	if err == nil {
		return
	}
	for _, e := range expected {
		if errors.Is(err, e) {
			return
		}
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// IdP records a call to the IdP.
func (m *Metrics) IdP(endpoint string, d time.Duration) {
	if m != nil {
		m.idpDuration.WithLabelValues(m.values(endpoint)...).Observe(d.Seconds())
	}
}
