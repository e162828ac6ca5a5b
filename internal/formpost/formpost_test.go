package formpost

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestEdit(t *testing.T) {
	r, _ := http.NewRequest("POST", "https://idp.example/token", strings.NewReader("grant_type=refresh_token&refresh_token=rt"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	out, err := Edit(r, func(f url.Values) error { f.Set("resource", "https://api.example/"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	f, _ := url.ParseQuery(string(b))
	if f.Get("resource") != "https://api.example/" || f.Get("refresh_token") != "rt" || out.ContentLength != int64(len(b)) {
		t.Fatalf("edited body %q (length %d)", b, out.ContentLength)
	}
	again, _ := out.GetBody()
	if b2, _ := io.ReadAll(again); string(b2) != string(b) {
		t.Fatal("GetBody does not replay the edited body")
	}
	for _, r := range []*http.Request{
		mustReq("GET", "", ""),
		mustReq("POST", "application/json", `{"a":1}`),
	} {
		if out, err := Edit(r, func(url.Values) error { t.Fatal("edited a request that is not a form POST"); return nil }); err != nil || out != r {
			t.Fatalf("Edit changed a request that is not a form POST: %v", err)
		}
	}
	bad := mustReq("POST", "application/x-www-form-urlencoded", "%zz")
	if _, err := Edit(bad, func(url.Values) error { return nil }); err == nil {
		t.Fatal("a malformed form was forwarded")
	}
}

func mustReq(method, ct, body string) *http.Request {
	r, _ := http.NewRequest(method, "https://idp.example/x", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}
