package storetest

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SharedURLs returns the store URLs of the shared stores the environment
// names, by kind: "redis" when MOAT_TEST_REDIS_URL is set, "postgres" when
// MOAT_TEST_POSTGRES_URL is. Each is private to t: Redis under a fresh key
// prefix, PostgreSQL in a fresh schema that is dropped when t ends. tag
// names the test in both, for whoever looks at the shared server.
func SharedURLs(t testing.TB, tag string) map[string]string {
	out := map[string]string{}
	suffix := strings.ToLower(rand.Text()[:10])
	if u := os.Getenv("MOAT_TEST_REDIS_URL"); u != "" {
		out["redis"] = WithParam(u, "prefix", "moat-"+tag+"-"+suffix+":")
	}
	if u := os.Getenv("MOAT_TEST_POSTGRES_URL"); u != "" {
		schema := "moat_" + tag + "_" + suffix
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if conn, err := pgx.Connect(ctx, u); err == nil {
				conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				conn.Close(ctx)
			}
		})
		out["postgres"] = WithParam(u, "schema", schema)
	}
	return out
}

// WithParam returns the URL raw with the query parameter k set to v.
func WithParam(raw, k, v string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}
