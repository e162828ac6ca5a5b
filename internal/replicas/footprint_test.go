package replicas_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/redis/rueidis"
)

// typicalSession has the sizes of a real one: JWT access and ID tokens of
// about a kilobyte each, an opaque refresh token, a few profile claims.
func typicalSession(i int) session.Session {
	jwt := func(n int) string {
		b := make([]byte, n*3/4)
		rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return session.Session{
		Issuer: "https://idp.example.com", Subject: fmt.Sprintf("user-%d", i), SID: jwt(24),
		Claims: []byte(`{"iss":"https://idp.example.com","sub":"user","name":"Alice Example","given_name":"Alice","family_name":"Example","email":"alice@example.com","email_verified":true,"preferred_username":"alice","auth_time":1795752000}`),
		Tokens: session.Tokens{AccessToken: jwt(1000), TokenType: "Bearer", RefreshToken: jwt(64), IDToken: jwt(1100),
			Expiry: time.Now().Add(time.Hour), Obtained: time.Now()},
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
		RemoteIP:  "203.0.113.7",
	}
}

func footprintCount() int {
	if n, err := strconv.Atoi(os.Getenv("MOAT_BENCH_SESSIONS")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// BenchmarkStoreFootprint writes typical sessions to the real Redis and
// PostgreSQL and reports what one costs in the store, and so how many fit
// in a GiB. MOAT_BENCH_SESSIONS sets the count (default 1000).
//
//	MOAT_BENCH_SESSIONS=20000 go test -run '^$' -bench StoreFootprint -benchtime 1x ./internal/replicas/
func BenchmarkStoreFootprint(b *testing.B) {
	ctx := context.Background()
	n := footprintCount()
	k, _ := session.ParseKey(session.NewKey())
	codec, _ := session.NewCodec(k)
	write := func(b *testing.B, spec string) {
		store, err := backend.Open(ctx, spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		m := session.NewManager(session.ManagerOptions{Store: store, Codec: codec, IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		for i := range n {
			if _, err := m.Create(ctx, httptest.NewRecorder(), typicalSession(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	plain, _ := json.Marshal(typicalSession(0))
	sealed := len(codec.Seal(session.NewID().Key(), plain))
	report := func(b *testing.B, total int64) {
		per := float64(total) / float64(n)
		b.ReportMetric(float64(sealed), "B/sealed")
		b.ReportMetric(per, "B/session")
		b.ReportMetric(float64(1<<30)/per, "sessions/GiB")
	}
	b.Run("redis", func(b *testing.B) {
		base := os.Getenv("MOAT_TEST_REDIS_URL")
		if base == "" {
			b.Skip("set MOAT_TEST_REDIS_URL")
		}
		prefix := "moat-footprint-" + randomHex(6) + ":"
		for range b.N {
			write(b, storetest.WithParam(base, "prefix", prefix))
		}
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{strings.TrimPrefix(strings.Split(base, "/0")[0], "redis://")}, DisableCache: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var total int64
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				b.Fatal(err)
			}
			for _, key := range e.Elements {
				used, _ := c.Do(ctx, c.B().MemoryUsage().Key(key).Build()).AsInt64()
				total += used
				c.Do(ctx, c.B().Del().Key(key).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
		report(b, total)
	})
	b.Run("postgres", func(b *testing.B) {
		base := os.Getenv("MOAT_TEST_POSTGRES_URL")
		if base == "" {
			b.Skip("set MOAT_TEST_POSTGRES_URL")
		}
		schema := "moat_footprint_" + randomHex(6)
		for range b.N {
			write(b, storetest.WithParam(base, "schema", schema))
		}
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		defer conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		var total int64
		if err := conn.QueryRow(ctx, "SELECT pg_total_relation_size($1)", schema+".moat_sessions").Scan(&total); err != nil {
			b.Fatal(err)
		}
		report(b, total)
	})
}
