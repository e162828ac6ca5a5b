// Package session keeps moat's server-side sessions. The browser holds only
// an opaque, random ID in an HttpOnly cookie; the tokens live in a Store,
// sealed with an AEAD key ring, under a key derived from a hash of that ID
// (draft-ietf-oauth-browser-based-apps §6.1.3.2, RFC 9700 §4.13).
package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"time"
)

// IDSize is the number of random bytes in a session ID: 256 bits, well over
// the 128 bits rfc6265bis and OWASP ask of session identifiers.
const IDSize = 32

// ID is the secret session identifier carried by the browser's cookie. It is
// never stored and never logged: stores see only its Key, logs only the Key.
type ID [IDSize]byte

// encodedIDSize is the length of an ID in the cookie: unpadded base64url.
const encodedIDSize = (IDSize*8 + 5) / 6

// ErrMalformedID is returned by ParseID for anything but a canonical ID.
var ErrMalformedID = errors.New("session: malformed id")

// NewID returns a fresh ID from crypto/rand.
func NewID() ID {
	var id ID
	rand.Read(id[:]) // never returns an error (crypto/rand, Go 1.24+)
	return id
}

// ParseID decodes a cookie value. Only the exact unpadded base64url encoding
// of IDSize bytes is accepted, so one ID has exactly one spelling.
func ParseID(s string) (ID, error) {
	var id ID
	var src [encodedIDSize]byte // decoding from a copy on the stack spares an allocation per request
	if len(s) != len(src) {
		return id, ErrMalformedID
	}
	copy(src[:], s)
	n, err := base64.RawURLEncoding.Strict().Decode(id[:], src[:])
	if err != nil || n != IDSize {
		return ID{}, ErrMalformedID
	}
	return id, nil
}

// Encode returns the cookie value for id.
func (id ID) Encode() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// String redacts: an ID must not reach a log by accident.
func (id ID) String() string { return "REDACTED" }

// LogValue implements slog.LogValuer by logging the Key instead.
func (id ID) LogValue() slog.Value { return slog.StringValue(string(id.Key())) }

// Key returns the store key for id in a single-frontend moat; see
// Manager.Key.
func (id ID) Key() Key { return KeyOf(sessionDomain, id[:]) }

// sessionDomain is the KeyOf domain of session keys.
const sessionDomain = "session"

// Key names a record in a Store: the hex SHA-256 of a domain label and a
// secret value. Knowing a Key does not let anyone forge the cookie or the
// state parameter that produced it.
type Key string

// KeyOf derives the Key for value in the given domain ("session", "login",
// "jti", ...), so equal values in different domains never collide.
func KeyOf(domain string, value []byte) Key {
	// SHA-256 of domain, a zero byte and value. Short inputs (session IDs,
	// states) are hashed from a stack buffer, so that the one allocation
	// is the Key itself: this runs on every proxied request.
	var sum [sha256.Size]byte
	if n := len(domain) + 1 + len(value); n <= 128 {
		var buf [128]byte
		b := append(append(append(buf[:0], domain...), 0), value...)
		sum = sha256.Sum256(b)
	} else {
		h := sha256.New()
		h.Write([]byte(domain))
		h.Write([]byte{0})
		h.Write(value)
		h.Sum(sum[:0])
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return Key(out[:])
}

// Short returns a prefix of k that is long enough to tell sessions apart in
// logs and admin views.
func (k Key) Short() string {
	if len(k) > 16 {
		return string(k[:16])
	}
	return string(k)
}

// Session is the decoded content of a session record. It is sealed as a
// whole before it reaches a Store.
type Session struct {
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	SID     string `json:"sid,omitempty"`
	// Frontend names the frontend (config frontends[].name) the session
	// was created at; empty without frontends.
	Frontend string          `json:"fe,omitempty"`
	Claims   json.RawMessage `json:"claims,omitempty"` // what /auth/checksession shows
	Tokens   Tokens          `json:"tokens"`

	CreatedAt time.Time `json:"created"`
	LastSeen  time.Time `json:"seen"`
	ExpiresAt time.Time `json:"exp"` // absolute end, whatever the activity
	UserAgent string    `json:"ua,omitempty"`
	RemoteIP  string    `json:"ip,omitempty"`

	// Lease marks a refresh in progress on some replica; see package token.
	Lease Lease `json:"lease,omitzero"`

	// DPoP is the session's DPoP private key (dpop.Key.MarshalBinary, 32
	// bytes) when oidc.dpop is on: every token of the session is bound to
	// it (RFC 9449). It is sealed with the rest, so it travels between
	// replicas with the session and never leaves moat.
	DPoP []byte `json:"dpop,omitempty"`
}

// Tokens are the OAuth tokens of a session. They never leave moat except
// towards the party they are meant for (RFC 6750, RFC 7009).
type Tokens struct {
	AccessToken  string    `json:"at,omitempty"`
	TokenType    string    `json:"tt,omitempty"`
	RefreshToken string    `json:"rt,omitempty"`
	IDToken      string    `json:"idt,omitempty"`
	Expiry       time.Time `json:"atexp,omitzero"` // zero: the IdP said nothing
	Obtained     time.Time `json:"atgot,omitzero"`
	// Scope is the space-delimited scope granted to AccessToken (RFC 6749
	// §5.1, §3.3), for routes[].require scope rules; "" when unknown
	// (a session from before moat kept it), which meets no rule.
	Scope string `json:"sc,omitempty"`
	// Resources are access tokens restricted to one resource each (RFC
	// 8707), by resource indicator, for routes[].resource.
	Resources map[string]ResourceToken `json:"res,omitempty"`
}

// ResourceToken is an access token for one resource (RFC 8707 §2.2).
type ResourceToken struct {
	AccessToken string    `json:"at"`
	Expiry      time.Time `json:"exp,omitzero"`
	Obtained    time.Time `json:"got,omitzero"`
}

// For returns the access token and expiry that serve resource: the
// session's own for "", else the one obtained for that resource, if any.
func (t Tokens) For(resource string) Tokens {
	if resource == "" {
		return t
	}
	rt := t.Resources[resource]
	return Tokens{AccessToken: rt.AccessToken, Expiry: rt.Expiry, Obtained: rt.Obtained}
}

// Fresh reports whether the access token can be used at now without a
// refresh: it exists and expires later than skew from now. The skew shrinks
// to half the token's lifetime, so a very short-lived token is not
// refreshed on every request.
func (t Tokens) Fresh(now time.Time, skew time.Duration) bool {
	if t.AccessToken == "" {
		return false
	}
	if t.Expiry.IsZero() {
		return true
	}
	if life := t.Expiry.Sub(t.Obtained); !t.Obtained.IsZero() && skew > life/2 {
		skew = life / 2
	}
	return now.Add(skew).Before(t.Expiry)
}

// LogValue implements slog.LogValuer without any token value.
func (t Tokens) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("access_token", t.AccessToken != ""),
		slog.Bool("refresh_token", t.RefreshToken != ""),
		slog.Time("expiry", t.Expiry),
	)
}

// String implements fmt.Stringer without any token value.
func (t Tokens) String() string { return t.LogValue().String() }

// Lease is a short claim on the right to refresh a session's tokens, taken by
// compare-and-swap so that exactly one replica talks to the IdP.
type Lease struct {
	Holder string    `json:"h,omitempty"`
	Until  time.Time `json:"u,omitzero"`
}

// Held reports whether the lease is taken and not yet expired at now.
func (l Lease) Held(now time.Time) bool { return l.Holder != "" && now.Before(l.Until) }

// IdleDeadline returns when s expires for lack of activity.
func (s *Session) IdleDeadline(idle time.Duration) time.Time { return s.LastSeen.Add(idle) }

// Deadline returns when s ends: at the absolute limit, or earlier when idle.
func (s *Session) Deadline(idle time.Duration) time.Time {
	d := s.IdleDeadline(idle)
	if s.ExpiresAt.Before(d) {
		return s.ExpiresAt
	}
	return d
}
