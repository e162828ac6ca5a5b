package dpopverify

import (
	"context"
	"net/http"
	"strings"
)

// Resource protects an API with DPoP-bound access tokens (RFC 9449 §7.1).
type Resource struct {
	Verifier *Verifier
	// Binding validates the access token (signature, audience, expiry, or
	// introspection) and returns its cnf.jkt; "" for a token that is not
	// DPoP-bound. An error answers 401 invalid_token.
	Binding func(ctx context.Context, token string) (jkt string, err error)
	// URL is the absolute URI clients address the request to, for htu.
	// When nil: http or https (by r.TLS), r.Host and the request path.
	URL func(r *http.Request) string
}

type proofKey struct{}

// FromContext returns the proof that let the request through Wrap.
func FromContext(ctx context.Context) (*Proof, bool) {
	p, ok := ctx.Value(proofKey{}).(*Proof)
	return p, ok
}

// Wrap lets a request through to next only with Authorization: DPoP and a
// valid proof by the key the token is bound to. A Bearer token is refused
// (§7.2: a DPoP-bound token must not be downgraded).
func (rs *Resource) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		algs := rs.Verifier.Algs()
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "DPoP") || token == "" || len(r.Header.Values("Authorization")) != 1 {
			WriteResource(w, nil, algs)
			return
		}
		u := requestURL(r)
		if rs.URL != nil {
			u = rs.URL(r)
		}
		p, err := rs.Verifier.Verify(r.Header.Values("DPoP"), Request{Method: r.Method, URL: u, AccessToken: token})
		if err != nil {
			WriteResource(w, err, algs)
			return
		}
		jkt, err := rs.Binding(r.Context(), token)
		if err == nil {
			err = p.Bound(jkt)
		}
		if err != nil {
			WriteResource(w, err, algs)
			return
		}
		if n := rs.Verifier.Nonces(); n != nil {
			if cur := n.Current(); cur != p.Nonce {
				w.Header().Set("DPoP-Nonce", cur) // §8.2: the next proof should carry it
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), proofKey{}, p)))
	})
}

func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}
