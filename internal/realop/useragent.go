package realop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// UserAgent is a user with a cookie jar: it follows redirects itself
// (recording each hop) and, on the provider's own pages, does what a person
// would: signs in as Login, consents, confirms logout. Everything else it
// returns to the caller.
type UserAgent struct {
	// Client is the HTTP client with the jar; it never follows redirects.
	Client *http.Client
	// Login is the account name typed into the sign-in form.
	Login string
	// Header is added to every request to a URL outside the provider
	// (e.g. moat's CSRF header for API calls).
	Header http.Header
	// Hops are the URLs visited by the last Browse, in order.
	Hops []*url.URL

	provider []*url.URL // origins whose pages the user agent fills in
}

// Page is where a Browse ended.
type Page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   []byte
}

// UserAgent returns a fresh user agent (empty jar) that signs in as login.
func (op *OP) UserAgent(login string) *UserAgent {
	return NewUserAgent(login, op.httpClient.Transport, op.Issuer)
}

// NewUserAgent returns a fresh user agent (empty jar) that signs in as
// login on the pages of providerOrigins: the provider's own, and for a
// provider that delegates sign-in (Ory Hydra) its login app's too.
func NewUserAgent(login string, transport http.RoundTripper, providerOrigins ...string) *UserAgent {
	jar, _ := cookiejar.New(nil)
	ua := &UserAgent{
		Client: &http.Client{
			Transport:     transport,
			Jar:           jar,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Login:  login,
		Header: http.Header{},
	}
	for _, o := range providerOrigins {
		u, err := url.Parse(o)
		if err != nil {
			panic(fmt.Sprintf("realop.NewUserAgent: %q: %v", o, err))
		}
		ua.provider = append(ua.provider, u)
	}
	return ua
}

// Browse fetches rawURL and follows redirects, filling in the provider's
// forms, until a page outside the provider answers without a redirect (or
// a provider page without a form, such as an error page).
func (ua *UserAgent) Browse(ctx context.Context, rawURL string) (*Page, error) {
	ua.Hops = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for range 30 {
		page, err := ua.do(req)
		if err != nil {
			return nil, err
		}
		if loc := page.Header.Get("Location"); loc != "" && page.Status >= 300 && page.Status < 400 {
			next, err := page.URL.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("redirect from %s: %w", page.URL, err)
			}
			if req, err = http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil); err != nil {
				return nil, err
			}
			continue
		}
		if !ua.atProvider(page.URL) {
			return page, nil
		}
		form, ok := ua.fill(page)
		if !ok {
			return page, nil
		}
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, form.action, strings.NewReader(form.values.Encode())); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return nil, fmt.Errorf("more than 30 hops from %s", rawURL)
}

// Do sends req with the jar's cookies and Header, without following
// redirects.
func (ua *UserAgent) Do(req *http.Request) (*Page, error) {
	return ua.do(req)
}

func (ua *UserAgent) do(req *http.Request) (*Page, error) {
	if !ua.atProvider(req.URL) {
		for k, v := range ua.Header {
			req.Header[k] = v
		}
	}
	ua.Hops = append(ua.Hops, req.URL)
	resp, err := ua.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return &Page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

func (ua *UserAgent) atProvider(u *url.URL) bool {
	for _, p := range ua.provider {
		if u.Scheme == p.Scheme && u.Host == p.Host {
			return true
		}
	}
	return false
}

type filled struct {
	action string
	values url.Values
}

// fill finds the page's POST form and fills it in: the sign-in form gets
// Login and a password, hidden inputs are kept, and the autofocused submit
// button (oidc-provider's "yes" on consent and logout pages) is pressed.
func (ua *UserAgent) fill(page *Page) (filled, bool) {
	doc, err := html.Parse(bytes.NewReader(page.Body))
	if err != nil {
		return filled{}, false
	}
	type form struct {
		id, action string
		values     url.Values
	}
	var forms []*form
	var buttons []map[string]string
	var walk func(n *html.Node, cur *form)
	walk = func(n *html.Node, cur *form) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			switch n.Data {
			case "form":
				if strings.EqualFold(a["method"], "post") {
					cur = &form{id: a["id"], action: a["action"], values: url.Values{}}
					forms = append(forms, cur)
				}
			case "input":
				if cur != nil && a["name"] != "" {
					switch {
					case a["type"] == "hidden":
						cur.values.Set(a["name"], a["value"])
					case a["type"] == "password":
						cur.values.Set(a["name"], "any-password")
					case a["name"] == "login":
						cur.values.Set(a["name"], ua.Login)
					}
				}
			case "button":
				if _, auto := a["autofocus"]; auto {
					if cur != nil && a["form"] == "" {
						a["form"] = "\x00current"
						if a["name"] != "" {
							cur.values.Set(a["name"], a["value"])
						}
					}
					buttons = append(buttons, a)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, cur)
		}
	}
	walk(doc, nil)
	if len(forms) == 0 {
		return filled{}, false
	}
	f := forms[0]
	for _, b := range buttons { // a button outside its form, linked by form=id
		for _, g := range forms {
			if g.id != "" && b["form"] == g.id {
				f = g
				if b["name"] != "" {
					g.values.Set(b["name"], b["value"])
				}
			}
		}
	}
	action, err := page.URL.Parse(f.action)
	if err != nil {
		return filled{}, false
	}
	return filled{action: action.String(), values: f.values}, true
}
