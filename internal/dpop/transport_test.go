package dpop

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// server is an httptest DPoP server that asks for nonces the way the
// table says, and records each proof it got.
type server struct {
	mu     sync.Mutex
	proofs []parsed
	bodies []string
	auth   []string
}

func (s *server) record(t *testing.T, r *http.Request) parsed {
	t.Helper()
	b, _ := io.ReadAll(r.Body)
	p := parseProof(t, r.Header.Get("DPoP"))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proofs = append(s.proofs, p)
	s.bodies = append(s.bodies, string(b))
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	return p
}

func TestTransportNonce(t *testing.T) {
	type answer func(w http.ResponseWriter, nonce string) bool // true: answered
	asAsk := func(give string) answer {                        // an authorization server wanting nonce give (§8)
		return func(w http.ResponseWriter, nonce string) bool {
			if nonce == give {
				return false
			}
			w.Header().Set("DPoP-Nonce", give)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"use_dpop_nonce","error_description":"nonce required"}`)
			return true
		}
	}
	rsAsk := func(give string) answer { // a resource server wanting nonce give (§9)
		return func(w http.ResponseWriter, nonce string) bool {
			if nonce == give {
				return false
			}
			w.Header().Set("DPoP-Nonce", give)
			w.Header().Add("WWW-Authenticate", `Bearer realm="api"`)
			w.Header().Add("WWW-Authenticate", `DPoP algs="ES256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
	}
	tests := []struct {
		name      string
		token     string
		preset    string   // the nonce remembered before the request
		answers   []answer // per attempt; nil or false: 200 with DPoP-Nonce "after"
		body      io.Reader
		length    int64
		wantCode  int
		wantErr   error
		wantTries int
		wantNonce []string // the nonce claim of each proof
		remember  string   // the nonce remembered after
	}{
		{name: "no nonce needed", wantCode: 200, wantTries: 1, wantNonce: []string{""}, remember: "after"},
		{name: "AS nonce required: retried with it", answers: []answer{asAsk("n1")}, wantCode: 200, wantTries: 2, wantNonce: []string{"", "n1"}, remember: "after"},
		{name: "AS nonce changed: retried with the new one", preset: "old", answers: []answer{asAsk("n2")}, wantCode: 200, wantTries: 2, wantNonce: []string{"old", "n2"}, remember: "after"},
		{name: "remembered nonce used at once", preset: "n1", answers: []answer{asAsk("n1")}, wantCode: 200, wantTries: 1, wantNonce: []string{"n1"}, remember: "after"},
		{name: "second use_dpop_nonce is the answer", answers: []answer{asAsk("n1"), asAsk("n2")}, wantCode: 400, wantTries: 2, wantNonce: []string{"", "n1"}, remember: "n2"},
		{name: "same nonce again: no retry", preset: "n1", answers: []answer{func(w http.ResponseWriter, _ string) bool { return asAsk("n1")(w, "") }}, wantCode: 400, wantTries: 1, wantNonce: []string{"n1"}, remember: "n1"},
		{name: "use_dpop_nonce without a nonce: no retry", answers: []answer{func(w http.ResponseWriter, _ string) bool {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"use_dpop_nonce"}`)
			return true
		}}, wantCode: 400, wantTries: 1, wantNonce: []string{""}},
		{name: "invalid nonce ignored", answers: []answer{asAsk("bad nonce")}, wantCode: 400, wantTries: 1, wantNonce: []string{""}},
		{name: "other 400 not retried", answers: []answer{func(w http.ResponseWriter, _ string) bool {
			w.Header().Set("DPoP-Nonce", "n9")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return true
		}}, wantCode: 400, wantTries: 1, wantNonce: []string{""}, remember: "n9"},
		{name: "RS nonce required: retried with token", token: "at-1", answers: []answer{rsAsk("r1")}, wantCode: 200, wantTries: 2, wantNonce: []string{"", "r1"}, remember: "after"},
		{name: "RS other 401 not retried", token: "at-1", answers: []answer{func(w http.ResponseWriter, _ string) bool {
			w.Header().Set("DPoP-Nonce", "r2")
			w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
			w.WriteHeader(401)
			return true
		}}, wantCode: 401, wantTries: 1, wantNonce: []string{""}, remember: "r2"},
		{name: "RS nonce, small streamed body replayed", token: "at-1", body: strings.NewReader("hello"), length: 5,
			answers: []answer{rsAsk("r1")}, wantCode: 200, wantTries: 2, wantNonce: []string{"", "r1"}, remember: "after"},
		{name: "RS nonce, large body not replayed", token: "at-1", body: strings.NewReader(strings.Repeat("x", 100)), length: 100,
			answers: []answer{rsAsk("r1")}, wantErr: ErrNonceNotReplayed, wantTries: 1, wantNonce: []string{""}, remember: "r1"},
		{name: "RS nonce, unsized body not replayed", token: "at-1", body: strings.NewReader("hello"), length: -1,
			answers: []answer{rsAsk("r1")}, wantErr: ErrNonceNotReplayed, wantTries: 1, wantNonce: []string{""}, remember: "r1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &server{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p := s.record(t, r)
				s.mu.Lock()
				n := len(s.proofs)
				s.mu.Unlock()
				nonce, _ := p.claims["nonce"].(string)
				if n <= len(tt.answers) && tt.answers[n-1] != nil && tt.answers[n-1](w, nonce) {
					return
				}
				w.Header().Set("DPoP-Nonce", "after")
				io.WriteString(w, "ok")
			}))
			defer srv.Close()
			key, _ := NewKey()
			nonces := &Nonces{}
			u, _ := url.Parse(srv.URL + "/x/y?q=1")
			if tt.preset != "" {
				nonces.Set(Origin(u), tt.preset)
			}
			tr := &Transport{Sender: func(*http.Request) (*Key, string) { return key, tt.token }, Nonces: nonces, MaxReplay: 64}
			req, _ := http.NewRequest("POST", u.String(), nil)
			if tt.body != nil {
				req.Body, req.ContentLength, req.GetBody = io.NopCloser(tt.body), tt.length, nil
			} else {
				req, _ = http.NewRequest("POST", u.String(), strings.NewReader("grant_type=x"))
			}
			resp, err := tr.RoundTrip(req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.wantCode {
					t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantCode)
				}
				if tt.wantCode == 400 && !strings.Contains(string(body), `"error"`) {
					t.Errorf("the 400's body was not handed on: %q", body)
				}
			}
			if len(s.proofs) != tt.wantTries {
				t.Fatalf("%d requests, want %d", len(s.proofs), tt.wantTries)
			}
			jtis := map[string]bool{}
			for i, p := range s.proofs {
				nonce, _ := p.claims["nonce"].(string)
				if nonce != tt.wantNonce[i] {
					t.Errorf("request %d: nonce %q, want %q", i, nonce, tt.wantNonce[i])
				}
				if p.claims["htu"] != srv.URL+"/x/y" || p.claims["htm"] != "POST" {
					t.Errorf("request %d: htm %v htu %v", i, p.claims["htm"], p.claims["htu"])
				}
				jtis[p.claims["jti"].(string)] = true
				if tt.token != "" {
					if s.auth[i] != "DPoP "+tt.token || p.claims["ath"] != TokenHash(tt.token) {
						t.Errorf("request %d: Authorization %q, ath %v", i, s.auth[i], p.claims["ath"])
					}
				} else if s.auth[i] != "" || p.claims["ath"] != nil {
					t.Errorf("request %d: Authorization %q, ath %v without a token", i, s.auth[i], p.claims["ath"])
				}
				if tt.wantErr == nil && tt.body != nil && s.bodies[i] != "hello" {
					t.Errorf("request %d: body %q", i, s.bodies[i])
				}
			}
			if len(jtis) != len(s.proofs) {
				t.Error("a proof was reused on the retry")
			}
			if got := nonces.Get(Origin(u)); got != tt.remember {
				t.Errorf("remembered nonce %q, want %q", got, tt.remember)
			}
		})
	}
}

// TestTransportWithoutKey: a request the Sender names no key for goes out
// as it is, without a proof.
func TestTransportWithoutKey(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	tr := &Transport{Sender: func(*http.Request) (*Key, string) { return nil, "" }, Nonces: &Nonces{}}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer x")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Get("DPoP") != "" || got.Get("Authorization") != "Bearer x" {
		t.Fatalf("headers changed: %v", got)
	}
}

// TestTransportLeavesRequest: the caller's request is not changed (the
// http.RoundTripper contract): its headers get no proof.
func TestTransportLeavesRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	key, _ := NewKey()
	tr := &Transport{Sender: func(*http.Request) (*Key, string) { return key, "at" }, Nonces: &Nonces{}}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(req.Header) != 0 {
		t.Fatalf("request headers changed: %v", req.Header)
	}
}

func TestValidNonce(t *testing.T) {
	for v, want := range map[string]bool{
		"abc": true, "eyJ7S_zG.9-~!#$%&'()*+,/:;<=>?@[]^`{|}": true, strings.Repeat("a", 512): true,
		"": false, "a b": false, `a"b`: false, `a\b`: false, "a\x7f": false, "é": false, "a\tb": false,
		strings.Repeat("a", 513): false, "a\r\nSet-Cookie: x": false,
	} {
		if ValidNonce(v) != want {
			t.Errorf("ValidNonce(%q) = %v, want %v", v, !want, want)
		}
	}
}

func TestNoncesBounded(t *testing.T) {
	var n Nonces
	for i := range 3 * maxOrigins {
		n.Set("https://h"+strconv.Itoa(i), "n")
	}
	if len(n.m) > maxOrigins {
		t.Fatalf("%d origins kept, bound %d", len(n.m), maxOrigins)
	}
	n.Set("https://a", "bad nonce")
	if n.Get("https://a") != "" {
		t.Fatal("invalid nonce kept")
	}
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10)))
}

func TestNonceChallenged(t *testing.T) {
	tests := []struct {
		fields []string
		want   bool
	}{
		{[]string{`DPoP error="use_dpop_nonce"`}, true},
		{[]string{`dpop error=use_dpop_nonce`}, true},
		{[]string{`DPoP algs="ES256 PS256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`}, true},
		{[]string{`Bearer realm="x", error="invalid_token", DPoP algs="ES256", error = "use_dpop_nonce"`}, true},
		{[]string{`Bearer realm="x"`, `DPoP error="use_dpop_nonce"`}, true},
		{[]string{`Newauth realm="a, DPoP error=\"use_dpop_nonce\"", DPoP algs="ES256"`}, false},
		{[]string{`Bearer error="use_dpop_nonce"`}, false},
		{[]string{`DPoP error="invalid_token"`}, false},
		{[]string{`DPoP abc==, error="use_dpop_nonce"`}, true},
		{[]string{`DPoP error="use_dpop_nonce`}, false},
		{[]string{`DPoP error="invalid_token", error="use_dpop_nonce"`}, false},
		{[]string{`DPoPX error="use_dpop_nonce"`}, false},
		{[]string{``}, false},
		{nil, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, f := range tt.fields {
			h.Add("WWW-Authenticate", f)
		}
		if got := NonceChallenged(h); got != tt.want {
			t.Errorf("%q: %v, want %v (parsed %+v)", tt.fields, got, tt.want, parseChallenges(strings.Join(tt.fields, ", ")))
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{`DPoP error="use_dpop_nonce"`, `Bearer realm="x", DPoP algs="ES256", error=use_dpop_nonce`,
		`Basic abc==`, `a="\"", b`, `,,,`, `x y=`, `"`, `DPoP error="a\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs := parseChallenges(s)
		if len(cs) > maxElements {
			t.Fatalf("%d challenges", len(cs))
		}
		for _, c := range cs {
			if c.scheme == "" || tokenLen(c.scheme) != len(c.scheme) {
				t.Fatalf("scheme %q is not a token", c.scheme)
			}
			if !strings.Contains(s, c.scheme) {
				t.Fatalf("scheme %q not in the input", c.scheme)
			}
			for k := range c.params {
				if k == "" || tokenLen(k) != len(k) || k != strings.ToLower(k) {
					t.Fatalf("param name %q", k)
				}
			}
		}
		// A challenge appended after anything well-formed is found.
		if len(splitElements(s))%2 == 0 && !strings.Contains(s, `"`) {
			h := http.Header{"Www-Authenticate": {s, `DPoP error="use_dpop_nonce"`}}
			if !NonceChallenged(h) {
				t.Fatal("a nonce challenge in its own field was missed")
			}
		}
	})
}

func FuzzValidNonce(f *testing.F) {
	for _, s := range []string{"abc", "a b", `"`, "\x00"} {
		f.Add(s)
	}
	key, _ := NewKey()
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidNonce(s) {
			return
		}
		// A nonce moat accepts is echoed in a proof: it must round-trip
		// through the proof's JSON unchanged and never break a header.
		if strings.ContainsAny(s, " \t\r\n\"\\") || len(s) > maxNonceLen {
			t.Fatalf("accepted %q", s)
		}
		proof, err := key.Proof("GET", "https://a.example/", "", s, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(jws.UnsafePayloadWithoutVerification()), s) && !strings.ContainsAny(s, "<>&") {
			t.Fatalf("nonce %q not in the proof", s)
		}
	})
}
