package idp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/moat-bff/moat/internal/demo/idp"
	"golang.org/x/oauth2"
)

const redirect = "http://127.0.0.1:1/auth/callback"

func start(t *testing.T) (*idp.Provider, *oauth2.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	p, err := idp.New(idp.Config{
		Issuer: issuer, ClientID: "client", ClientSecret: "secret",
		RedirectURIs: []string{redirect}, PostLogoutRedirectURIs: []string{"http://127.0.0.1:1/"},
		AccessTokenTTL: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p
	srv.Start()
	t.Cleanup(srv.Close)
	return p, &oauth2.Config{
		ClientID: "client", ClientSecret: "secret", RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/authorize", TokenURL: issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "profile", "email", "offline_access"},
	}
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get fetches u and returns where it redirects.
func get(t *testing.T, u string) *url.URL {
	t.Helper()
	resp, err := noRedirects.Get(u)
	return location(t, resp, err)
}

func location(t *testing.T, resp *http.Response, err error) *url.URL {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("%s %s: %d, no redirect", resp.Request.Method, resp.Request.URL, resp.StatusCode)
	}
	return loc
}

// login runs the authorization request and the login form and returns the
// authorization response.
func login(t *testing.T, authURL, password string) url.Values {
	t.Helper()
	form := get(t, authURL)
	if form.Path != "/login" {
		return form.Query() // an error answer straight away
	}
	base, _ := url.Parse(authURL)
	id := form.Query().Get("authRequestID")
	resp, err := noRedirects.PostForm(base.ResolveReference(form).String(), url.Values{
		"authRequestID": {id}, "username": {idp.DemoUser.Username}, "password": {password},
	})
	if password != idp.DemoUser.Password {
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password: %v %v", resp, err)
		}
		resp.Body.Close()
		return nil
	}
	back := location(t, resp, err)
	return get(t, base.ResolveReference(back).String()).Query()
}

func TestCodeFlowRefreshRevoke(t *testing.T) {
	p, cfg := start(t)
	ctx := context.Background()

	if q := login(t, cfg.AuthCodeURL("st", oauth2.SetAuthURLParam("nonce", "n")), ""); q.Get("error") != "invalid_request" {
		t.Errorf("an authorization request without PKCE got %v, want error=invalid_request", q)
	}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n"))
	if q := login(t, authURL, "wrong"); q != nil {
		t.Errorf("a wrong password got through: %v", q)
	}
	q := login(t, authURL, idp.DemoUser.Password)
	if q.Get("state") != "st" || q.Get("code") == "" {
		t.Fatalf("authorization response %v", q)
	}
	if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption("wrong-verifier-wrong-verifier-wrong-verifier")); err == nil {
		t.Error("a wrong PKCE verifier was accepted")
	}
	q = login(t, authURL, idp.DemoUser.Password)
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Error("a code was redeemed twice")
	}

	// The access token is a JWT for the client, signed with the published keys.
	verify := oidc.NewVerifier(p.Issuer(), oidc.NewRemoteKeySet(ctx, p.JWKSURL()), &oidc.Config{ClientID: "client"})
	at, err := verify.Verify(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("access token: %v", err)
	}
	if at.Subject != idp.DemoUser.Subject || time.Until(at.Expiry) > time.Minute {
		t.Errorf("access token sub %q exp %s", at.Subject, at.Expiry)
	}
	idt, err := verify.Verify(ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims map[string]any
	idt.Claims(&claims)
	for _, c := range []string{"name", "given_name", "family_name", "email", "email_verified", "preferred_username"} {
		if claims[c] == nil {
			t.Errorf("ID token lacks %s: %v", c, claims)
		}
	}

	// Refresh rotates: the new refresh token works, the old one no longer.
	refresh := func(rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}
	tok2, err := refresh(tok.RefreshToken)
	if err != nil || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v %v", tok2, err)
	}
	var re *oauth2.RetrieveError
	if _, err := refresh(tok.RefreshToken); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: %v, want invalid_grant", err)
	}
	if p.Refreshes() != 1 {
		t.Errorf("Refreshes() = %d, want 1", p.Refreshes())
	}

	// UserInfo answers for the live access token.
	req, _ := http.NewRequest(http.MethodGet, p.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok2.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %v %v", resp, err)
	}
	resp.Body.Close()

	// RFC 7009: a revoked refresh token is dead.
	form := url.Values{"token": {tok2.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ = http.NewRequest(http.MethodPost, p.Issuer()+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("client", "secret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := refresh(tok2.RefreshToken); err == nil {
		t.Error("a revoked refresh token still works")
	}
	if p.Revocations() != 1 {
		t.Errorf("Revocations() = %d, want 1", p.Revocations())
	}
	kinds := map[string]int{}
	for _, it := range p.IssuedTokens() {
		kinds[it.Kind]++
	}
	if kinds["access_token"] != 2 || kinds["refresh_token"] != 2 || kinds["id_token"] != 2 {
		t.Errorf("IssuedTokens kinds %v, want two of each", kinds)
	}
}

func TestEndSessionHonoursRegisteredRedirectOnly(t *testing.T) {
	p, _ := start(t)
	good := get(t, p.Issuer()+"/end_session?client_id=client&post_logout_redirect_uri="+url.QueryEscape("http://127.0.0.1:1/"))
	if good.String() != "http://127.0.0.1:1/" {
		t.Errorf("registered post_logout_redirect_uri: redirected to %s", good)
	}
	resp, err := noRedirects.Get(p.Issuer() + "/end_session?client_id=client&post_logout_redirect_uri=" + url.QueryEscape("https://evil.example/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); loc != nil && loc.Host == "evil.example" {
		t.Errorf("end_session redirected to an unregistered URI")
	}
}
