package csrf

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A cross-origin SPA reads Retry-After of a 429 or 503 only if CORS exposes
// it (it is not a safelisted response header); @moat-bff/client's
// RateLimitedError.retryAfter depends on it.
func TestCORSExposesRetryAfter(t *testing.T) {
	h := NewCORS([]string{"http://localhost:5173"}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	for _, tc := range []struct {
		origin  string
		exposed bool
	}{{"http://localhost:5173", true}, {"http://evil.test", false}} {
		req := httptest.NewRequest(http.MethodGet, "/resource/api/x", nil)
		req.Header.Set("Origin", tc.origin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		exposed := rec.Header().Get("Access-Control-Expose-Headers")
		if got := strings.Contains(exposed, "Retry-After"); got != tc.exposed {
			t.Errorf("origin %s: Access-Control-Expose-Headers %q", tc.origin, exposed)
		}
		if tc.exposed && rec.Header().Get("Access-Control-Allow-Origin") != tc.origin {
			t.Errorf("origin %s: not allowed", tc.origin)
		}
	}
}
