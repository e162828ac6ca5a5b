package dpop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrNonceNotReplayed: the server asked for a proof with a new nonce, but
// the request's body could not be sent again. The nonce is remembered, so
// the caller's next attempt carries it.
var ErrNonceNotReplayed = errors.New("dpop: the server asked for a new nonce and the request body cannot be replayed; retry the request")

// Sender says which key signs a request's proof and which access token the
// request presents (RFC 9449 §7.1; "" at the token and PAR endpoints,
// §5). A nil key sends the request unchanged.
type Sender func(r *http.Request) (key *Key, accessToken string)

// Transport adds a DPoP proof to the requests its Sender names: the
// token and PAR endpoints (RFC 9449 §5, §10.1) and resource servers (§7).
// A request with an access token is sent with Authorization: DPoP and the
// proof's ath. When the server answers that it wants a nonce (400
// use_dpop_nonce from an authorization server, §8; 401 with a DPoP
// use_dpop_nonce challenge from a resource server, §9) and gives a new
// one, the request is sent once more with a fresh proof carrying it;
// never more than once, so a server that keeps asking cannot make moat
// loop. Every DPoP-Nonce a server sends is remembered for its next request.
type Transport struct {
	Base   http.RoundTripper // nil: http.DefaultTransport
	Sender Sender
	Nonces *Nonces
	Now    func() time.Time // nil: time.Now
	// MaxReplay is the largest request body kept in memory to be sent
	// again after a nonce challenge; larger or unsized bodies are streamed
	// and a challenge then fails the request with ErrNonceNotReplayed.
	MaxReplay int64
}

// maxErrorBody bounds how much of a 400 answer is read for its error code.
const maxErrorBody = 16 << 10

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	key, token := t.Sender(r)
	if key == nil {
		return t.base().RoundTrip(r)
	}
	r, replayable, err := t.replayable(r)
	if err != nil {
		return nil, err
	}
	origin := Origin(r.URL)
	sent := t.Nonces.Get(origin)
	resp, err := t.send(r, key, token, sent)
	if err != nil {
		return nil, err
	}
	fresh, asked := t.nonceAsked(resp, origin)
	if !asked || fresh == "" || fresh == sent {
		return resp, nil // no new nonce to try: the answer stands
	}
	if !replayable {
		drain(resp)
		return nil, ErrNonceNotReplayed
	}
	drain(resp)
	again := r.Clone(r.Context())
	if r.GetBody != nil {
		if again.Body, err = r.GetBody(); err != nil {
			return nil, err
		}
	}
	resp, err = t.send(again, key, token, fresh)
	if err != nil {
		return nil, err
	}
	t.nonceAsked(resp, origin) // remember its nonce; a second challenge is the answer
	return resp, nil
}

// send sends a copy of r with a fresh proof (and the token's
// Authorization), nonce in it when not "".
func (t *Transport) send(r *http.Request, key *Key, token, nonce string) (*http.Response, error) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	proof, err := key.Proof(r.Method, r.URL.String(), token, nonce, now())
	if err != nil {
		return nil, err
	}
	out := r.Clone(r.Context())
	out.Header["Dpop"] = []string{proof} // canonical: Header as http.CanonicalHeaderKey spells it
	if token != "" {
		out.Header["Authorization"] = []string{"DPoP " + token}
	}
	return t.base().RoundTrip(out)
}

// nonceAsked remembers resp's DPoP-Nonce, and reports whether resp asks
// for a proof with a nonce and which one it gave ("" none usable).
func (t *Transport) nonceAsked(resp *http.Response, origin string) (string, bool) {
	nonce := resp.Header.Get(NonceHeader)
	if !ValidNonce(nonce) {
		nonce = ""
	}
	if nonce != "" {
		t.Nonces.Set(origin, nonce)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nonce, NonceChallenged(resp.Header)
	case http.StatusBadRequest:
		return nonce, errorCode(resp) == "use_dpop_nonce"
	}
	return nonce, false
}

// errorCode reads the OAuth error code of a JSON error answer (RFC 6749
// §5.2), leaving the body readable as it was.
func errorCode(resp *http.Response) string {
	if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return ""
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil {
		return ""
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(head, &e) != nil {
		return ""
	}
	return e.Error
}

// replayable returns r, or a copy whose small body is held in memory,
// and whether it can be sent again.
func (t *Transport) replayable(r *http.Request) (*http.Request, bool, error) {
	if r.Body == nil || r.Body == http.NoBody || r.GetBody != nil {
		return r, true, nil
	}
	if r.ContentLength < 0 || r.ContentLength > t.MaxReplay {
		return r, false, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, t.MaxReplay+1))
	r.Body.Close()
	if err != nil {
		return nil, false, fmt.Errorf("dpop: reading the request body: %w", err)
	}
	if int64(len(b)) != r.ContentLength {
		return nil, false, fmt.Errorf("dpop: request body is %d bytes, Content-Length said %d", len(b), r.ContentLength)
	}
	out := r.Clone(r.Context())
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return out, true, nil
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// drain reads a little of a refused answer so its connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
}

type readCloser struct {
	io.Reader
	io.Closer
}
