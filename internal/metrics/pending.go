package metrics

import "github.com/prometheus/client_golang/prometheus"

// PendingLogins registers moat_logins_pending, read from count at each
// scrape, and moat_logins_refused_total; it returns the function that
// counts a login refused because a cap on pending logins was reached
// (scope "replica" or "store"). Call it once per Metrics.
func (m *Metrics) PendingLogins(count func() int) (refused func(scope string)) {
	if m == nil {
		return func(string) {}
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_logins_refused_total",
		Help: "Logins refused with 503 because too many were pending, by cap: replica, store."}, []string{"scope"})
	m.reg.MustRegister(vec, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moat_logins_pending",
		Help: "Login transactions this replica started that have neither completed here nor expired."},
		func() float64 { return float64(count()) }))
	return func(scope string) { vec.WithLabelValues(scope).Inc() }
}
