package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// Paths some servers normalise to a dot segment (fullwidth dots, trailing
// whitespace or control characters, overlong UTF-8) or that are not UTF-8
// are refused with 400 JSON bad_path and never reach the upstream.
func TestNormalisedDotSegmentsAreRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	for _, p := range []string{
		"/resource/api/..%20/admin", "/resource/api/..%09/admin", "/resource/api/%EF%BC%8E%EF%BC%8E/admin",
		"/resource/api/%E2%80%A5/admin", "/resource/api/%C0%AE%C0%AE/admin", "/resource/api/caf%E9",
		"/resource/api/..%E2%80%8B/admin", "/resource/api/..%EF%BC%8Fadmin",
	} {
		status, body := rawGet(t, e, b, p)
		var j struct{ Error string }
		if status != http.StatusBadRequest || json.Unmarshal([]byte(body), &j) != nil || j.Error != "bad_path" {
			t.Errorf("%s: %d %s", p, status, body)
		}
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Errorf("the upstream saw %d of them", n)
	}
	if status, body := rawGet(t, e, b, "/resource/api/caf%C3%A9/%E2%80%A6"); status != http.StatusOK {
		t.Errorf("a plain non-ASCII path: %d %s", status, body)
	}
}
