package dpopverify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestResource(t *testing.T) {
	keys(t)
	v := newVerifier(t, Options{Now: time.Now})
	probe := newVerifier(t, Options{})
	p, _ := probe.Verify([]string{build(t, spec{})}, Request{Method: "POST", URL: tokenURL})
	jkt := p.JKT // ecKey's thumbprint
	bindings := map[string]string{"bound": jkt, "other-key": "bm90LXRoaXMta2V5", "bearer": ""}
	rs := &Resource{Verifier: v, Binding: func(_ context.Context, tok string) (string, error) {
		j, ok := bindings[tok]
		if !ok {
			return "", errors.New("unknown token")
		}
		return j, nil
	}}
	var seen *Proof
	srv := httptest.NewServer(rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	url := srv.URL + "/api/items"
	proofFor := func(tok string, claims map[string]any) string {
		c := map[string]any{"htm": "GET", "htu": url, "ath": ath(tok), "iat": time.Now().Unix()}
		for k, v := range claims {
			c[k] = v
		}
		return build(t, spec{claims: c})
	}
	cases := []struct {
		name, auth, proof string
		status            int
		code              string // error in WWW-Authenticate, "" for none
	}{
		{"bound token, right key", "DPoP bound", proofFor("bound", nil), 204, ""},
		{"no Authorization", "", "", 401, ""},
		{"Bearer scheme", "Bearer bound", proofFor("bound", nil), 401, ""},
		{"no proof", "DPoP bound", "", 401, CodeInvalidProof},
		{"proof for another token", "DPoP bound", proofFor("x", nil), 401, CodeInvalidProof},
		{"proof for another URL", "DPoP bound", proofFor("bound", map[string]any{"htu": srv.URL + "/other"}), 401, CodeInvalidProof},
		{"token bound to another key", "DPoP other-key", proofFor("other-key", nil), 401, CodeInvalidProof},
		{"token not bound", "DPoP bearer", proofFor("bearer", nil), 401, CodeInvalidToken},
		{"token unknown", "DPoP nope", proofFor("nope", nil), 401, CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			req, _ := http.NewRequest("GET", url+"?q=1", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.proof != "" {
				req.Header.Set("DPoP", tc.proof)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 204 {
				if seen == nil || seen.JKT != jkt {
					t.Fatalf("handler saw proof %+v", seen)
				}
				return
			}
			if seen != nil {
				t.Fatal("refused request reached the handler")
			}
			ch := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, "DPoP ") || !strings.Contains(ch, `algs="ES256 PS256 EdDSA"`) {
				t.Fatalf("challenge %q", ch)
			}
			if got := strings.Contains(ch, "error="); got != (tc.code != "") || (tc.code != "" && !strings.Contains(ch, `error="`+tc.code+`"`)) {
				t.Fatalf("challenge %q, want error %q", ch, tc.code)
			}
		})
	}
}

func TestResourceNonce(t *testing.T) {
	keys(t)
	nonces := NewNonces(0, nil)
	v := newVerifier(t, Options{Now: time.Now, Nonces: nonces})
	var jkt string
	rs := &Resource{Verifier: v, Binding: func(context.Context, string) (string, error) { return jkt, nil }}
	srv := httptest.NewServer(rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer srv.Close()
	call := func(nonce string) *http.Response {
		c := map[string]any{"htm": "GET", "htu": srv.URL + "/", "ath": ath("tok"), "iat": time.Now().Unix()}
		if nonce != "" {
			c["nonce"] = nonce
		}
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		req.Header.Set("Authorization", "DPoP tok")
		req.Header.Set("DPoP", build(t, spec{claims: c}))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	p, _ := newVerifier(t, Options{}).Verify([]string{build(t, spec{})}, Request{Method: "POST", URL: tokenURL})
	jkt = p.JKT
	resp := call("")
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) || resp.Header.Get("DPoP-Nonce") != nonces.Current() {
		t.Fatalf("without nonce: %d %q nonce %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("DPoP-Nonce"))
	}
	if resp := call(resp.Header.Get("DPoP-Nonce")); resp.StatusCode != 200 || resp.Header.Get("DPoP-Nonce") != "" {
		t.Fatalf("with the nonce: %d, DPoP-Nonce %q", resp.StatusCode, resp.Header.Get("DPoP-Nonce"))
	}
	old := nonces.Current()
	nonces.Rotate()
	if resp := call(old); resp.StatusCode != 200 || resp.Header.Get("DPoP-Nonce") != nonces.Current() {
		t.Fatalf("previous nonce: %d, DPoP-Nonce %q, want the new one", resp.StatusCode, resp.Header.Get("DPoP-Nonce"))
	}
}

func TestWriteToken(t *testing.T) {
	w := httptest.NewRecorder()
	WriteToken(w, &Error{Code: CodeUseNonce, Description: "nonce missing or stale", Nonce: "n-1", err: ErrNonce})
	if w.Code != 400 || w.Header().Get("DPoP-Nonce") != "n-1" || !strings.Contains(w.Body.String(), `"error":"use_dpop_nonce"`) {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	WriteToken(w, proofErr(ErrReplay, "jti already used"))
	if w.Code != 400 || w.Header().Get("DPoP-Nonce") != "" || !strings.Contains(w.Body.String(), `"error":"invalid_dpop_proof"`) {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
}
