package replicas_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/redis/redistest"
	"github.com/moat-bff/moat/internal/session/storetest"
)

// TestEndingIsSeenAtOnceOnEveryReplica is issue 14's acceptance test: three
// real moat processes on a real store, each caching sessions for the
// longest cache_ttl allowed (1 s). A logout, a back-channel logout, an
// admin revoke-one or an admin revoke-all on one replica: the very next
// request with the old cookie on every other replica gets 401 and the
// upstream sees nothing, with no pause between the ending request's answer
// and the replay.
func TestEndingIsSeenAtOnceOnEveryReplica(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) { endingIsSeenAtOnce(t, store) })
	}
}

// TestEndingIsSeenAtOnceOnEveryReplicaCluster is the same on a three-primary
// Redis Cluster that the test starts.
func TestEndingIsSeenAtOnceOnEveryReplicaCluster(t *testing.T) {
	endingIsSeenAtOnce(t, storetest.WithParam(redistest.StartCluster(t), "prefix", "moat-test-"+randomHex(6)+":"))
}

func endingIsSeenAtOnce(t *testing.T, store string) {
	ends := []struct {
		name string
		end  func(c *cluster, i int, cl *client, cookie string) int
	}{
		{"logout", func(c *cluster, i int, cl *client, _ string) int {
			return cl.do("POST", c.url(i, "/auth/logout"), "X-CSRF", "1").StatusCode
		}},
		{"back-channel logout", func(c *cluster, i int, _ *client, _ string) int {
			resp, err := http.PostForm(c.url(i, "/auth/backchannel-logout"), url.Values{"logout_token": {c.op.LogoutToken("alice", "", nil)}})
			if err != nil {
				c.t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}},
		{"admin revoke-one", func(c *cluster, i int, _ *client, cookie string) int {
			id, err := session.ParseID(cookie)
			if err != nil {
				c.t.Fatal(err)
			}
			return c.admin(i, "DELETE", "/admin/sessions/"+string(id.Key()))
		}},
		{"admin revoke-all", func(c *cluster, i int, _ *client, _ string) int {
			return c.admin(i, "DELETE", "/admin/sessions?sub=alice")
		}},
	}
	c := newCluster(t, store, 3, "1s")
	for _, e := range ends {
		for by := range c.replicas {
			cl := c.login(by)
			cookie := cl.cookieValue()
			// Every replica has the session cached.
			for i := range c.replicas {
				for range 2 {
					if s := cl.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode; s != http.StatusOK {
						t.Fatalf("%s: before, replica %d: %d", e.name, i, s)
					}
				}
			}
			if s := e.end(c, by, cl, cookie); s != http.StatusOK {
				t.Fatalf("%s on replica %d: %d", e.name, by, s)
			}
			before := c.hits.Load()
			replay := &client{t: t, cookie: map[string]string{session.CookieName: cookie}}
			for i := range c.replicas {
				if s := replay.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode; s != http.StatusUnauthorized {
					t.Errorf("%s on replica %d: the next request on replica %d got %d, want 401", e.name, by, i, s)
				}
			}
			if n := c.hits.Load() - before; n != 0 {
				t.Errorf("%s on replica %d: the upstream saw %d requests with the old cookie", e.name, by, n)
			}
		}
	}
}

// admin sends an admin API request to replica i and returns the status.
func (c *cluster) admin(i int, method, path string) int {
	req, _ := http.NewRequest(method, "http://"+c.replicas[i].admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(fmt.Errorf("admin %s %s: %w", method, path, err))
	}
	resp.Body.Close()
	return resp.StatusCode
}
