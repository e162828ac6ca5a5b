package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// signingAlgs are the asymmetric algorithms a JWS from the IdP may use;
// never none or HS* (RFC 8725 §3.1).
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

// errKeysUnavailable: the signing keys could not be fetched. The token may
// be fine; the answer is 503.
var errKeysUnavailable = errors.New("signing keys unavailable")

// errFetchedRecently: the JWKS was fetched successfully less than the
// refetch interval ago and lacks the token's kid. Whether that is a forgery
// or a key rotated since is the caller's to judge by where the token came
// from (keyOutcome.unknownKid).
var errFetchedRecently = errors.New("the JWKS was fetched less than the refetch interval ago")

// keySet is the IdP's JWKS (OIDC Core §10.1.1) as go-oidc's KeySet: keys
// are cached, and a token whose kid is not cached makes one refetch,
// at most one per interval across the process, however many tokens with
// unknown kids arrive (each back-channel logout POST could carry one).
type keySet struct {
	uri    string
	client *http.Client
	now    func() time.Time
	every  time.Duration

	group   singleflight.Group
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last fetch attempt
	lastErr error     // its error
}

// keyOutcome, carried in the context of one verification, records whether
// it failed for want of keys: go-oidc flattens the KeySet's error to text.
// unavailable: the JWKS could not be fetched. unknownKid: a JWKS fetched
// within the refetch interval lacks the kid.
type keyOutcome struct {
	unavailable, unknownKid error
	// received, if set, is when the token came from the token endpoint:
	// only the IdP can sign what it answers moat there, so an unknown kid
	// is a key it rotated in, and the JWKS is fetched again unless a fetch
	// began after the token arrived, whatever the interval (OIDC Core
	// §10.1.1). Ory Hydra signs with a new key the moment it is created.
	received time.Time
}

type keyOutcomeKey struct{}

func withKeyOutcome(ctx context.Context) (context.Context, *keyOutcome) {
	o := &keyOutcome{}
	return context.WithValue(ctx, keyOutcomeKey{}, o), o
}

// VerifySignature implements go-oidc's KeySet. go-oidc has already checked
// the algorithm against the provider's list.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	if payload, found, err := verifyWith(jws, kid, k.cached()); found {
		return payload, err
	}
	o, _ := ctx.Value(keyOutcomeKey{}).(*keyOutcome)
	if o == nil {
		o = &keyOutcome{}
	}
	fetchErr := k.refetch(ctx, o.received)
	if payload, found, err := verifyWith(jws, kid, k.cached()); found {
		return payload, err
	}
	if errors.Is(fetchErr, errFetchedRecently) {
		o.unknownKid = fmt.Errorf("no key %q in the provider's JWKS (%w, %s)", kid, fetchErr, k.every)
		return nil, o.unknownKid
	}
	if fetchErr != nil {
		o.unavailable = fmt.Errorf("%w: key %q: %v", errKeysUnavailable, kid, fetchErr)
		return nil, o.unavailable
	}
	return nil, fmt.Errorf("no key %q in the provider's JWKS", kid)
}

// verifyWith verifies jws with the key named kid (any key when kid is
// empty). found is false when no key applies.
func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) (payload []byte, found bool, err error) {
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		found = true
		if payload, err := jws.Verify(&key); err == nil {
			return payload, true, nil
		}
	}
	if found {
		return nil, true, errors.New("signature does not verify")
	}
	return nil, false, nil
}

func (k *keySet) cached() []jose.JSONWebKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys
}

// refetch loads the JWKS unless it was tried less than k.every ago, or,
// when received is set, unless it was tried after received; concurrent
// callers of either kind share one fetch. It returns nil only when this
// call (or the one it joined) fetched the keys, errFetchedRecently when
// the last try, within k.every (after received), succeeded.
func (k *keySet) refetch(ctx context.Context, received time.Time) error {
	group := "jwks"
	recent := func(fetched time.Time) bool { return k.now().Sub(fetched) < k.every }
	if !received.IsZero() {
		group = "jwks-after" // not joined to a call the interval stops
		recent = func(fetched time.Time) bool { return fetched.After(received) }
	}
	_, err, _ := k.group.Do(group, func() (any, error) {
		k.mu.Lock()
		if !k.fetched.IsZero() && recent(k.fetched) {
			last := k.lastErr
			k.mu.Unlock()
			if last != nil {
				return nil, fmt.Errorf("the last fetch failed (%v); next try within %s", last, k.every)
			}
			return nil, errFetchedRecently
		}
		k.fetched = k.now()
		k.mu.Unlock()
		// Detached from one caller's cancellation, bounded by the client's timeout.
		keys, err := k.fetch(context.WithoutCancel(ctx))
		k.mu.Lock()
		defer k.mu.Unlock()
		k.lastErr = err
		if err != nil {
			return nil, err
		}
		k.keys = keys
		return nil, nil
	})
	return err
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_uri answered %s", resp.Status)
	}
	return parseJWKS(body)
}

// parseJWKS reads a JWK Set (RFC 7517 §5): the public signing keys in it.
// Keys of types go-jose does not know are skipped (§5), as are private
// and encryption keys.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if err := json.Unmarshal(r, &key); err != nil || !key.Valid() || !key.IsPublic() || key.Use == "enc" {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks_uri holds no usable signing key")
	}
	return keys, nil
}
