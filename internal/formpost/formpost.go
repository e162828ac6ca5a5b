// Package formpost edits the form body of an outgoing request. moat's IdP
// client adds parameters that x/oauth2 cannot (a client assertion, RFC
// 7523; a resource indicator on a refresh, RFC 8707 §2.2) in transports,
// so that every token, PAR and revocation call gets them the same way.
package formpost

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
)

// Edit returns a copy of r whose application/x-www-form-urlencoded body
// edit has changed, or r itself when r is not a form POST.
func Edit(r *http.Request, edit func(url.Values) error) (*http.Request, error) {
	if r.Method != http.MethodPost || r.Body == nil || !isForm(r.Header.Get("Content-Type")) {
		return r, nil
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("form body: %w", err)
	}
	if err := edit(form); err != nil {
		return nil, err
	}
	enc := []byte(form.Encode())
	out := r.Clone(r.Context())
	out.Body = io.NopCloser(bytes.NewReader(enc))
	out.ContentLength = int64(len(enc))
	out.Header.Set("Content-Length", strconv.Itoa(len(enc)))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(enc)), nil }
	return out, nil
}

func isForm(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}
