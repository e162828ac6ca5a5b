package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// An upstream's Clear-Site-Data would make the browser delete moat's
// session cookie (and the SPA's storage): it is dropped unless the route
// opts in.
func TestClearSiteDataNeedsOptIn(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Clear-Site-Data"] = []string{`"cookies"`, `"storage"`}
		w.Header()["clear-site-data"] = []string{`"*"`} // a key written as is
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/")
	table := New([]Route{
		{Prefix: "/api/", Upstream: u},
		{Prefix: "/logout-api/", Upstream: u, AllowClearSiteData: true},
	}, Options{Logger: slog.New(slog.DiscardHandler)})
	defer table.CloseIdleConnections()
	for prefix, want := range map[string]int{"/api/": 0, "/logout-api/": 3} {
		_, h, _ := table.Match(prefix + "x")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, prefix+"x", nil))
		if got := w.Result().Header.Values("Clear-Site-Data"); w.Code != http.StatusOK || len(got) != want {
			t.Errorf("%s: %d, Clear-Site-Data %q, want %d values", prefix, w.Code, got, want)
		}
	}
}
