// Package spa serves a built single-page app from moat's own origin, so the
// app's API calls are same-origin (no CORS, no preflights; BBA §6.1.3.3.2)
// and its page carries a strict Content-Security-Policy, the first defence
// against the XSS a BFF cannot otherwise stop (BBA §5, §6.1.4.1).
package spa

import (
	"errors"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// Handler serves fsys. Paths that name no file and have no extension are
// client-side routes and get index.html; a missing asset is a 404.
func Handler(fsys fs.FS, csp string) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" || name == "index.html" || isRoute(fsys, name) {
			h.Set("Cache-Control", "no-cache") // the entry point must pick up new releases
			http.ServeFileFS(w, r, fsys, "index.html")
			return
		}
		files.ServeHTTP(w, r)
	})
}

func isRoute(fsys fs.FS, name string) bool {
	if path.Ext(name) != "" {
		return false
	}
	_, err := fs.Stat(fsys, name)
	return errors.Is(err, fs.ErrNotExist)
}
