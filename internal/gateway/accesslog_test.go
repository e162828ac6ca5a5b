package gateway_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// accessLines returns the access log lines in logs, each as its keys in
// order and its values.
func accessLines(t *testing.T, logs string) (keys [][]string, values []map[string]any) {
	t.Helper()
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] != "request" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var ks []string
		dec.Token() // {
		for dec.More() {
			k, _ := dec.Token()
			ks = append(ks, k.(string))
			var v any
			dec.Decode(&v)
		}
		keys, values = append(keys, ks), append(values, m)
	}
	return keys, values
}

// The access log line written through logbuf's fast path (as cmd/moat
// logs) has the fields, order and values of the line slog itself writes,
// for the same requests: proxied, refused, not found, and with a path
// that needs escaping.
func TestAccessLogLineMatchesSlog(t *testing.T) {
	requests := func(e *env) {
		br := e.browser()
		br.login("/")
		br.api(http.MethodGet, "/resource/api/item")
		br.get("/resource/api/item")                                         // no X-CSRF: 403
		e.browser().api(http.MethodGet, "/resource/api/item")                // no session: 401
		br.api(http.MethodGet, "/resource/api/it%22em%5C%E2%80%A8%C3%A9%0A") // quote, backslash, U+2028, é, newline
		br.api(http.MethodDelete, "/auth/userinfo")                          // 405
		br.api(http.MethodGet, "/nowhere")                                   // 404
	}
	var keys [2][][]string
	var values [2][]map[string]any
	for i, plain := range []bool{false, true} {
		e := newEnv(t, slogHandler(plain))
		requests(e)
		keys[i], values[i] = accessLines(t, e.logs.String())
	}
	if len(keys[0]) != len(keys[1]) || len(keys[0]) < 8 {
		t.Fatalf("%d access lines through logbuf, %d through slog", len(keys[0]), len(keys[1]))
	}
	// Each moat has its own request IDs, sessions, timings and ports.
	varying := []string{"time", "request_id", "duration", "session", "error"}
	for i := range keys[0] {
		if !slices.Equal(keys[0][i], keys[1][i]) {
			t.Errorf("line %d: keys %v through logbuf, %v through slog", i, keys[0][i], keys[1][i])
		}
		for k, v := range values[1][i] {
			if !slices.Contains(varying, k) && values[0][i][k] != v {
				t.Errorf("line %d: %s is %v through logbuf, %v through slog", i, k, values[0][i][k], v)
			}
		}
	}
	// The proxied request's line carries every field.
	var proxied []string
	for i, v := range values[0] {
		if v["path"] == "/resource/api/item" && v["status"] == float64(200) {
			proxied = keys[0][i]
		}
	}
	want := []string{"time", "level", "msg", "request_id", "method", "path", "client_ip", "status", "bytes", "duration", "route", "upstream_status", "session"}
	if !slices.Equal(proxied, want) {
		t.Errorf("proxied request's access line has %v, want %v", proxied, want)
	}
	// The escaped path survives as written.
	found := false
	for _, v := range values[0] {
		found = found || v["path"] == "/resource/api/it\"em\\\u2028\u00e9\n"
	}
	if !found {
		t.Error("no access line with the escaped path")
	}
}
