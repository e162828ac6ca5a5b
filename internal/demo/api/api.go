// Package api is the resource API of `moat demo`: GET /api/recipe answers
// a random recipe to any caller with a valid access token.
//
// It validates the Bearer token the way a real API must (RFC 6750, RFC
// 9068 §4): the JWT's signature against the OpenID Provider's published
// keys, its issuer, its audience, its expiry, and that it is an access
// token, not an ID token (RFC 9068 §2.2 client_id). It never looks at cookies:
// the browser's session is the BFF's business, the token is the API's.
package api

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Config says which tokens the API accepts.
type Config struct {
	// Issuer is the OP's issuer URL; the token's iss must equal it.
	Issuer string
	// Audience must be among the token's aud values.
	Audience string
	// JWKSURL is where the OP publishes its signing keys (its discovery
	// document's jwks_uri).
	JWKSURL string
}

// New returns the API's handler. ctx bounds the background fetching of the
// OP's keys; it should live as long as the handler.
func New(ctx context.Context, cfg Config) http.Handler {
	verifier := oidc.NewVerifier(cfg.Issuer, oidc.NewRemoteKeySet(ctx, cfg.JWKSURL), &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256},
	})
	mux := http.NewServeMux()
	mux.Handle("GET /api/recipe", requireToken(verifier, http.HandlerFunc(recipe)))
	return mux
}

type subjectKey struct{}

// requireToken lets a request through only with a valid Bearer token.
func requireToken(v *oidc.IDTokenVerifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || raw == "" {
			// RFC 6750 §3.1: no error code when no token was sent.
			unauthorized(w, "", "a Bearer access token is required")
			return
		}
		tok, err := v.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			unauthorized(w, "invalid_token", "the access token is invalid or expired")
			return
		}
		// An ID token for the same client is signed by the same keys for
		// the same audience: only an access token names the client it was
		// issued to (RFC 9068 §2.2, client_id).
		var claims struct {
			ClientID string `json:"client_id"`
		}
		if err := tok.Claims(&claims); err != nil || claims.ClientID == "" {
			unauthorized(w, "invalid_token", "the token is not an access token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), subjectKey{}, tok.Subject)))
	})
}

func unauthorized(w http.ResponseWriter, code, desc string) {
	challenge := `Bearer realm="recipes"`
	if code != "" {
		challenge += `, error="` + code + `", error_description="` + desc + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	if code == "" {
		code = "unauthorized"
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Recipe is what the API serves.
type Recipe struct {
	Name         string   `json:"name"`
	Cuisine      string   `json:"cuisine"`
	Servings     int      `json:"servings"`
	Minutes      int      `json:"minutes"`
	Ingredients  []string `json:"ingredients"`
	Instructions []string `json:"instructions"`
	// ServedTo is the token's subject: the API knows who called it without
	// ever seeing the browser's cookie.
	ServedTo string `json:"servedTo"`
}

func recipe(w http.ResponseWriter, r *http.Request) {
	rec := recipes[rand.IntN(len(recipes))]
	rec.ServedTo, _ = r.Context().Value(subjectKey{}).(string)
	writeJSON(w, http.StatusOK, rec)
}

var recipes = []Recipe{
	{
		Name: "Shakshuka", Cuisine: "North African", Servings: 2, Minutes: 30,
		Ingredients: []string{"4 eggs", "1 can crushed tomatoes", "1 red pepper", "1 onion", "2 cloves garlic", "1 tsp cumin", "1 tsp paprika", "olive oil", "fresh parsley"},
		Instructions: []string{
			"Soften the chopped onion and pepper in olive oil.",
			"Add garlic, cumin and paprika; cook for a minute.",
			"Pour in the tomatoes and simmer for 10 minutes.",
			"Make four wells, crack in the eggs, cover and cook until the whites set.",
			"Scatter parsley and serve with bread.",
		},
	},
	{
		Name: "Spaghetti aglio e olio", Cuisine: "Italian", Servings: 2, Minutes: 15,
		Ingredients: []string{"200 g spaghetti", "4 cloves garlic", "1 dried chilli", "80 ml olive oil", "parsley", "salt"},
		Instructions: []string{
			"Boil the spaghetti in well-salted water.",
			"Gently fry sliced garlic and chilli in the oil until golden.",
			"Toss the drained pasta in the oil with a splash of pasta water.",
			"Finish with chopped parsley.",
		},
	},
	{
		Name: "Chana masala", Cuisine: "Indian", Servings: 4, Minutes: 40,
		Ingredients: []string{"2 cans chickpeas", "1 onion", "2 tomatoes", "thumb of ginger", "3 cloves garlic", "2 tsp garam masala", "1 tsp turmeric", "1 green chilli", "coriander"},
		Instructions: []string{
			"Fry the onion until deep golden.",
			"Add ginger, garlic and chilli, then the spices.",
			"Add chopped tomatoes and cook down to a paste.",
			"Stir in the chickpeas with a little water and simmer 15 minutes.",
			"Finish with coriander.",
		},
	},
	{
		Name: "Miso soup", Cuisine: "Japanese", Servings: 2, Minutes: 15,
		Ingredients: []string{"600 ml dashi", "2 tbsp white miso", "150 g silken tofu", "1 tbsp dried wakame", "2 spring onions"},
		Instructions: []string{
			"Heat the dashi without boiling.",
			"Soak the wakame for 5 minutes and drain.",
			"Dissolve the miso in a ladle of dashi and stir it back in.",
			"Add cubed tofu and wakame; serve with sliced spring onion.",
		},
	},
	{
		Name: "Black bean tacos", Cuisine: "Mexican", Servings: 3, Minutes: 20,
		Ingredients: []string{"1 can black beans", "6 corn tortillas", "1 avocado", "1 lime", "red onion", "1 tsp cumin", "chipotle salsa", "coriander"},
		Instructions: []string{
			"Warm the beans with cumin and mash them lightly.",
			"Char the tortillas in a dry pan.",
			"Mash the avocado with lime and salt.",
			"Fill the tortillas with beans, avocado, onion, salsa and coriander.",
		},
	},
	{
		Name: "Greek salad", Cuisine: "Greek", Servings: 2, Minutes: 10,
		Ingredients: []string{"3 tomatoes", "1 cucumber", "1 green pepper", "½ red onion", "200 g feta", "kalamata olives", "dried oregano", "olive oil"},
		Instructions: []string{
			"Cut the vegetables into large pieces.",
			"Add olives and lay the feta on top in one slab.",
			"Sprinkle oregano and dress with olive oil.",
		},
	},
}
