package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
)

// Local handlers registered below a route's prefix (the embedding API) read
// bodies bounded by server.max_body_bytes, like every other local handler:
// a declared oversized body is a 413 JSON before the handler runs, and a
// chunked one stops the handler's read at the bound.
func TestLocalHandlerUnderARoutePrefixBoundsItsBody(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Server.MaxBodyBytes = 2048 })
	read := make(chan error, 4)
	count := func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		read <- err
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprintf(w, `{"read":%d}`, n)
	}
	e.gw.Handle("POST /resource/api/local", http.HandlerFunc(count)) // below routes[0].prefix
	e.gw.HandlePublic("POST /resource/api/public/hook", http.HandlerFunc(count))
	b := e.browser()
	b.login("/")
	big := strings.Repeat("x", 1<<20)
	for _, path := range []string{"/resource/api/local", "/resource/api/public/hook"} {
		r := b.send("POST", path, strings.NewReader(big), csrf.HeaderName, "1", "Content-Type", "text/plain")
		if r.StatusCode != http.StatusRequestEntityTooLarge || r.json(t)["error"] != "too_large" {
			t.Errorf("%s, declared 1 MiB: %s %s", path, r.Status, r.body)
		}
		req, _ := http.NewRequest("POST", e.url+path, io.MultiReader(strings.NewReader(big)))
		req.ContentLength = -1 // chunked
		req.Header.Set(csrf.HeaderName, "1")
		if r := b.do(req); r.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s, chunked 1 MiB: %s %s", path, r.Status, r.body)
		}
		if err := <-read; err == nil {
			t.Errorf("%s: the handler read a chunked 1 MiB body to its end", path)
		}
		if r := b.send("POST", path, strings.NewReader("small"), csrf.HeaderName, "1"); r.StatusCode != http.StatusOK || string(r.body) != `{"read":5}` {
			t.Errorf("%s, small body: %s %s", path, r.Status, r.body)
		}
		<-read
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Errorf("the upstream saw %d requests meant for local handlers", n)
	}
}
