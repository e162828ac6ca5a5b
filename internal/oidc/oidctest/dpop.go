package oidctest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/moat-bff/moat/internal/dpop/dpopverify"
)

// DPoP (RFC 9449) at the provider: proofs at the token and PAR endpoints
// are checked with dpopverify, a proof binds the access token (a JWT
// carrying cnf.jkt, token_type DPoP), and the UserInfo endpoint takes
// DPoP-bound tokens only with a proof. Behavior's DPoP* fields misbehave.

type dpopState struct {
	plain, nonced *dpopverify.Verifier // without and with server nonces
	nonces        *dpopverify.Nonces
	err           string            // why the last proof was refused
	accessJKT     map[string]string // access token → cnf.jkt
}

func newDPoPState() dpopState {
	nonces := dpopverify.NewNonces(0, nil)
	plain, err := dpopverify.New(dpopverify.Options{})
	if err != nil {
		panic(err)
	}
	nonced, err := dpopverify.New(dpopverify.Options{Nonces: nonces})
	if err != nil {
		panic(err)
	}
	return dpopState{plain: plain, nonced: nonced, nonces: nonces, accessJKT: map[string]string{}}
}

// DPoPError returns why the provider last refused a DPoP proof, or "".
func (p *Provider) DPoPError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dpop.err
}

// DPoPNonce is the nonce the provider currently hands out as DPoP-Nonce.
func (p *Provider) DPoPNonce() string { return p.dpop.nonces.Current() }

// RotateDPoPNonce replaces the provider's nonce so that neither it nor the
// one before is accepted: a client's next proof gets use_dpop_nonce with a
// fresh DPoP-Nonce (RFC 9449 §8.2).
func (p *Provider) RotateDPoPNonce() {
	p.dpop.nonces.Rotate()
	p.dpop.nonces.Rotate()
}

// AccessTokenJKT returns the cnf.jkt an access token was issued with, or
// "" for a token that is not DPoP-bound or unknown.
func (p *Provider) AccessTokenJKT(at string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dpop.accessJKT[at]
}

// verifyDPoP checks the DPoP header of a token, PAR or UserInfo request,
// when there is one and the provider speaks DPoP; nil, nil otherwise.
// Refusals are *dpopverify.Error.
func (p *Provider) verifyDPoP(r *http.Request, accessToken string) (*dpopverify.Proof, error) {
	p.mu.Lock()
	b := p.behavior
	p.mu.Unlock()
	if !b.DPoP {
		return nil, nil
	}
	if len(r.Header.Values("DPoP")) == 0 {
		if b.DPoPRequired && accessToken == "" {
			return nil, p.dpopRefused(errors.New("a DPoP proof is required"), &dpopverify.Error{Code: dpopverify.CodeInvalidProof, Description: "DPoP proof required"})
		}
		return nil, nil
	}
	v := p.dpop.plain
	if b.DPoPRequireNonce {
		v = p.dpop.nonced
	}
	proof, err := v.Verify(r.Header.Values("DPoP"), dpopverify.Request{Method: r.Method, URL: p.Issuer + r.URL.Path, AccessToken: accessToken})
	if err != nil {
		return nil, p.dpopRefused(err, err)
	}
	return proof, nil
}

func (p *Provider) dpopRefused(why, answer error) error {
	p.mu.Lock()
	p.dpop.err = why.Error()
	p.mu.Unlock()
	return answer
}

// dpopAtPAR binds a pushed request to a key (RFC 9449 §10): the proof's,
// or dpop_jkt's; both must agree. It writes the refusal itself.
func (p *Provider) dpopAtPAR(w http.ResponseWriter, r *http.Request) (jkt string, ok bool) {
	proof, err := p.verifyDPoP(r, "")
	if err != nil {
		dpopverify.WriteToken(w, err)
		return "", false
	}
	p.mu.Lock()
	on := p.behavior.DPoP
	p.mu.Unlock()
	if !on {
		return "", true
	}
	jkt = r.PostForm.Get("dpop_jkt")
	if proof != nil {
		if jkt != "" && jkt != proof.JKT {
			dpopverify.WriteToken(w, p.dpopRefused(errors.New("dpop_jkt is not the proof's key"),
				&dpopverify.Error{Code: dpopverify.CodeInvalidProof, Description: "dpop_jkt does not match the proof"}))
			return "", false
		}
		jkt = proof.JKT
	}
	return jkt, true
}

// dpopAccessToken returns the access token for a grant bound to jkt: a JWT
// (RFC 9068) with cnf.jkt (RFC 9449 §6.1), unless the provider is told to
// drop the cnf claim.
func (p *Provider) dpopAccessToken(g *grant, jkt string, b Behavior) string {
	now := time.Now()
	claims := map[string]any{
		"iss": p.Issuer, "sub": g.user.Subject, "aud": p.ClientID, "client_id": p.ClientID,
		"iat": now.Unix(), "exp": now.Add(b.AccessTokenTTL + time.Minute).Unix(), "jti": random(12),
	}
	if !b.DPoPDropCnf {
		claims["cnf"] = map[string]any{"jkt": jkt}
	}
	k := p.keys[len(p.keys)-1]
	return SignWith(k, "at+jwt", claims)
}

// DPoPBinding is a dpopverify.Resource Binding for the provider's tokens,
// as a resource server would do it: the token must be live, a JWT signed
// by the provider's keys, and its cnf.jkt is returned ("" when it has none).
func (p *Provider) DPoPBinding(_ context.Context, token string) (string, error) {
	p.mu.Lock()
	g := p.access[token]
	var set jose.JSONWebKeySet
	for _, k := range p.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	p.mu.Unlock()
	if g == nil || g.revoked {
		return "", errors.New("access token not active")
	}
	return dpopverify.JWTBinding(token, set, p.Issuer, time.Now())
}

// DPoPUpstream returns a resource server that lets through, to next, only
// requests with the provider's DPoP-bound tokens and valid proofs for them
// (RFC 9449 §7.1), with the proof in its context (dpopverify.FromContext).
func (p *Provider) DPoPUpstream(next http.Handler) http.Handler {
	v, err := dpopverify.New(dpopverify.Options{})
	if err != nil {
		panic(err)
	}
	return (&dpopverify.Resource{Verifier: v, Binding: p.DPoPBinding}).Wrap(next)
}

// userinfoDPoP authenticates a UserInfo request that uses the DPoP scheme,
// or a Bearer token that is not DPoP-bound (§7.2: a bound token must not
// be used as a Bearer token). It writes refusals itself.
func (p *Provider) userinfoGrant(w http.ResponseWriter, r *http.Request) (*grant, bool) {
	scheme, at, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	p.mu.Lock()
	g, jkt := p.access[at], p.dpop.accessJKT[at]
	p.mu.Unlock()
	refuse := func(err error) (*grant, bool) {
		dpopverify.WriteResource(w, err, p.dpop.plain.Algs())
		return nil, false
	}
	switch {
	case strings.EqualFold(scheme, "DPoP"):
		proof, err := p.verifyDPoP(r, at)
		if err == nil && proof == nil {
			err = &dpopverify.Error{Code: dpopverify.CodeInvalidProof, Description: "no DPoP proof"}
		}
		if err == nil {
			err = proof.Bound(jkt)
		}
		if err != nil {
			p.dpopRefused(err, err)
			return refuse(err)
		}
	case jkt != "":
		return refuse(p.dpopRefused(errors.New("DPoP-bound token sent as Bearer"),
			&dpopverify.Error{Code: dpopverify.CodeInvalidToken, Description: "a DPoP-bound token needs the DPoP scheme"}))
	}
	return g, true
}
