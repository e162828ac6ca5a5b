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
	// body is the public answer: {"ready": …} and nothing else, so that
	// whoever reaches the public listener learns neither the client's
	// standing at the IdP, the upstream route names, nor a configuration
	// key.
	body map[string]any
	// detailed adds every check, for the admin listener (Detailed).
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
			return &readiness{status: http.StatusServiceUnavailable, body: map[string]any{"ready": false},
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

// readyz answers the cached readiness (see checkReady).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	res := s.ready.get(r.Context(), s.sessions.Now, s.checkReady)
	if res.err != nil {
		noteError(r, res.err)
	}
	body := res.body
	if r.Context().Value(detailedKey{}) != nil {
		body = res.detailed
	}
	httperr.WriteJSON(w, res.status, body)
	return nil
}

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
