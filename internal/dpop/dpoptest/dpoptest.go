// Package dpoptest puts a DPoP authorization server in front of a test
// OP's token and PAR endpoints (RFC 9449 §5, §8, §10.1): each request must
// carry a proof that dpopverify accepts for the endpoint it reached, with
// the server's nonce when nonces are on, and is then passed on to the OP;
// token answers say token_type DPoP, and the access tokens are remembered
// with the key they are bound to, for test resource servers
// (dpopverify.Resource.Binding). Point the OP's discovery document at
// URL's endpoints.
package dpoptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moat-bff/moat/internal/dpop/dpopverify"
)

// Modes of an AS.
const (
	Bind        = ""             // verify, pass on, bind
	Bearer      = "bearer"       // verify and pass on, but answer unbound Bearer tokens
	AlwaysNonce = "always-nonce" // answer every proof use_dpop_nonce with a new nonce
)

// AS is a DPoP authorization server in front of an OP.
type AS struct {
	URL    string             // its base URL: URL+"/token" fronts the OP's /token
	Nonces *dpopverify.Nonces // nil: no nonces asked for

	verifier *dpopverify.Verifier
	proxy    *httputil.ReverseProxy

	mu    sync.Mutex
	mode  string
	seen  []Seen
	bound map[string]string // access token → jkt
}

// Seen is one request the AS judged.
type Seen struct {
	Path    string // the endpoint's path
	Nonce   string // the accepted proof's nonce
	JKT     string // the accepted proof's key thumbprint
	Refused string // the error code answered instead
}

// New starts an AS in front of the OP at target (its origin); with nonces
// every proof must carry the AS's current or previous nonce.
func New(t testing.TB, target string, nonces bool) *AS {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	as := &AS{bound: map[string]string{}}
	o := dpopverify.Options{}
	if nonces {
		as.Nonces = dpopverify.NewNonces(0, nil)
		o.Nonces = as.Nonces
	}
	if as.verifier, err = dpopverify.New(o); err != nil {
		t.Fatal(err)
	}
	as.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		ModifyResponse: as.bind,
	}
	srv := httptest.NewServer(as)
	t.Cleanup(srv.Close)
	as.URL = srv.URL
	return as
}

// Point rewrites an OP discovery document's token and PAR endpoints to
// the AS (for oidctest.Behavior.MutateDiscovery).
func (as *AS) Point(doc map[string]any) {
	for _, k := range []string{"token_endpoint", "pushed_authorization_request_endpoint"} {
		if v, ok := doc[k].(string); ok {
			if u, err := url.Parse(v); err == nil {
				doc[k] = as.URL + u.Path
			}
		}
	}
}

// SetMode sets what the AS does (Bind, Bearer, AlwaysNonce).
func (as *AS) SetMode(mode string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.mode = mode
}

// Seen returns the requests judged since the last call.
func (as *AS) Seen() []Seen {
	as.mu.Lock()
	defer as.mu.Unlock()
	out := as.seen
	as.seen = nil
	return out
}

// Binding returns the thumbprint the access token was bound to, "" for
// one the AS did not issue bound (dpopverify.Resource.Binding).
func (as *AS) Binding(_ context.Context, token string) (string, error) {
	as.mu.Lock()
	defer as.mu.Unlock()
	jkt, ok := as.bound[token]
	if !ok {
		return "", errors.New("unknown access token")
	}
	return jkt, nil
}

func (as *AS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	as.mu.Lock()
	mode := as.mode
	as.mu.Unlock()
	p, err := as.verifier.Verify(r.Header.Values("DPoP"), dpopverify.Request{Method: r.Method, URL: as.URL + r.URL.Path})
	if mode == AlwaysNonce && err == nil {
		as.Nonces.Rotate()
		err = &dpopverify.Error{Code: "use_dpop_nonce"}
	}
	if err != nil {
		var e *dpopverify.Error
		errors.As(err, &e)
		as.note(Seen{Path: r.URL.Path, Refused: e.Code})
		if e.Code == "use_dpop_nonce" {
			w.Header().Set("DPoP-Nonce", as.Nonces.Current())
		}
		dpopverify.WriteToken(w, err)
		return
	}
	as.note(Seen{Path: r.URL.Path, Nonce: p.Nonce, JKT: p.JKT})
	r.Header.Set("X-Dpop-Jkt", p.JKT) // for bind, never the OP's business
	as.proxy.ServeHTTP(w, r)
}

// bind rewrites a token answer to token_type DPoP (unless the mode is
// Bearer) and remembers the access token's key.
func (as *AS) bind(resp *http.Response) error {
	jkt := resp.Request.Header.Get("X-Dpop-Jkt")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return nil
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	resp.Body.Close()
	as.mu.Lock()
	if at, ok := body["access_token"].(string); ok {
		if as.mode != Bearer {
			body["token_type"] = "DPoP"
			as.bound[at] = jkt
		} else {
			as.bound[at] = ""
		}
	}
	as.mu.Unlock()
	b, _ := json.Marshal(body)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.Header.Del("Content-Length")
	return nil
}

func (as *AS) note(s Seen) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.seen = append(as.seen, s)
}
