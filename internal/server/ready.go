package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
)

// readyFor is how long a /readyz answer is reused. /readyz is public and
// not rate limited (load balancers poll it), so without this every call
// would ping the store and the IdP's discovery.
const readyFor = time.Second

// readiness is one check's answer.
type readiness struct {
	status int
	// detailed holds every check, for the admin listener (Detailed). The
	// public answer is {"ready": …} and nothing else, so that whoever
	// reaches the public listener learns neither the client's standing at
	// the IdP, the upstream route names, nor a configuration key.
	detailed map[string]any
	err      error // for the access log line
}

// readyCache holds the last readiness and the check in flight, which all
// callers that arrive meanwhile wait for rather than starting their own.
type readyCache struct {
	mu   sync.Mutex
	last *readiness
	at   time.Time
	busy chan struct{} // closed when the check in flight ends; nil if none
}

// get returns a readiness at most readyFor old by now(), running check
// when there is none and no check is in flight.
func (c *readyCache) get(ctx context.Context, now func() time.Time, check func(context.Context) *readiness) *readiness {
	c.mu.Lock()
	for {
		if c.last != nil && now().Sub(c.at) < readyFor {
			r := c.last
			c.mu.Unlock()
			return r
		}
		if c.busy == nil {
			break
		}
		busy := c.busy
		c.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return &readiness{status: http.StatusServiceUnavailable,
				detailed: map[string]any{"ready": false, "checks": map[string]string{}}, err: ctx.Err()}
		}
		c.mu.Lock()
	}
	busy := make(chan struct{})
	c.busy = busy
	c.mu.Unlock()

	// The check is shared: one caller hanging up must not fail the others.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	r := check(cctx)
	cancel()

	c.mu.Lock()
	c.last, c.at, c.busy = r, now(), nil
	c.mu.Unlock()
	close(busy)
	return r
}

// readyz answers the cached readiness (see checkReady), or the one
// WithReadiness put on the request.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ready := s.Readiness
	if f, ok := r.Context().Value(readinessKey{}).(func(context.Context) (bool, map[string]any, error)); ok {
		ready = f
	}
	ok, detailed, err := ready(r.Context())
	if err != nil {
		noteError(r, err)
	}
	body := map[string]any{"ready": ok}
	if r.Context().Value(detailedKey{}) != nil {
		body = detailed
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	httperr.WriteJSON(w, status, body)
	return nil
}

// Readiness returns this frontend's readiness, at most a second old:
// whether it is ready, every check (the admin listener's body), and the
// error that made it not ready, for the log.
func (s *Server) Readiness(ctx context.Context) (bool, map[string]any, error) {
	res := s.ready.get(ctx, s.sessions.Now, s.checkReady)
	return res.status == http.StatusOK, res.detailed, res.err
}

type readinessKey struct{}

// WithReadiness makes the /readyz of r answer with ready instead of the
// serving frontend's own checks: with several frontends, a /readyz sent to
// an address (a load balancer's, the admin listener's) covers them all.
func WithReadiness(r *http.Request, ready func(context.Context) (bool, map[string]any, error)) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), readinessKey{}, ready))
}

// IsDetailed reports whether r came through Detailed (the admin listener).
func IsDetailed(r *http.Request) bool { return r.Context().Value(detailedKey{}) != nil }

type detailedKey struct{}

// Detailed marks h's requests as the operator's (the admin listener): its
// /readyz then lists every check, naming the configuration key and the
// provider's values that do not match; the public /readyz says only
// whether moat is ready.
func Detailed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), detailedKey{}, true)))
	})
}
