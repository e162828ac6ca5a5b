package spa

import (
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestHandler(t *testing.T) {
	fsys := fstest.MapFS{
		"index.html":   {Data: []byte("<!doctype html><script src=/app.js></script>")},
		"app.js":       {Data: []byte("console.log(1)")},
		"assets/a.css": {Data: []byte("body{}")},
	}
	h := Handler(fsys, "default-src 'self'")
	cases := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "<!doctype"},
		{"GET", "/orders/42", 200, "<!doctype"},
		{"GET", "/app.js", 200, "console.log"},
		{"GET", "/assets/a.css", 200, "body{}"},
		{"GET", "/missing.js", 404, ""},
		{"GET", "/../../etc/passwd", 400, ""},
		{"POST", "/", 405, ""},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.body) {
			t.Errorf("%s %s: %d %q", c.method, c.path, w.Code, w.Body.String())
		}
		if w.Header().Get("Content-Security-Policy") != "default-src 'self'" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: headers %v", c.method, c.path, w.Header())
		}
	}
}
