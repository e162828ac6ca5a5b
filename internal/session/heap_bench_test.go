package session_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/limit"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/testclock"
)

// BenchmarkIdleSessionHeap measures what an idle session costs moat's heap
// beyond its sealed bytes, with the memory store and the production cache
// settings (500 ms TTL, 20 000 entries): sessions are created through
// session.Manager, the heap is measured after a GC, and the sealed record
// sizes are subtracted. It reports:
//
//   - idle-B/session: after the cache TTL has passed and one request has
//     trimmed the cache, as for sessions nobody is using;
//   - cached-B/session: right after creation, with the last 20 000 sessions
//     still decoded in the cache;
//   - sealed-B/session: the sealed record itself (AES-GCM of the JSON);
//   - limiter-B/session: the per-session rate-limit bucket a session that
//     made a request keeps until max_keys pushes it out.
//
// It creates 2 000 sessions; MOAT_BENCH_SESSIONS=100000 measures at the
// scale of the performance target:
//
//	MOAT_BENCH_SESSIONS=100000 go test -run '^$' -bench IdleSessionHeap -benchtime 1x ./internal/session/
func BenchmarkIdleSessionHeap(b *testing.B) {
	n := 2000
	if v := os.Getenv("MOAT_BENCH_SESSIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("MOAT_BENCH_SESSIONS=%q is not a positive number", v)
		}
	}
	for range b.N {
		idle, cached, sealed, lim := idleSessionHeap(b, n)
		b.ReportMetric(idle, "idle-B/session")
		b.ReportMetric(cached, "cached-B/session")
		b.ReportMetric(sealed, "sealed-B/session")
		b.ReportMetric(lim, "limiter-B/session")
	}
}

func idleSessionHeap(b *testing.B, n int) (idle, cached, sealed, lim float64) {
	ctx := context.Background()
	clock := testclock.New(time.Now())
	store := memory.New(memory.Options{Now: clock.Now})
	defer store.Close()
	m := session.NewManager(session.ManagerOptions{
		Store: store, Codec: benchCodec(b), Now: clock.Now,
		IdleTimeout: time.Hour, AbsoluteTimeout: 12 * time.Hour,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		CacheTTL: 500 * time.Millisecond, CacheSize: 20_000,
	})
	keys := make([]session.Key, 0, n)
	claims, _ := json.Marshal(map[string]any{
		"name": "Alice Example", "given_name": "Alice", "family_name": "Example",
		"email": "alice@example.com", "email_verified": true, "preferred_username": "alice",
	})
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	for i := range n {
		now := clock.Now()
		s := session.Session{
			Issuer: "https://idp.example.com/realms/main", Subject: fmt.Sprintf("user-%08d", i), SID: "sid-" + randomText(12),
			Claims: claims,
			Tokens: session.Tokens{
				AccessToken: "at-" + randomText(24), TokenType: "Bearer", RefreshToken: "rt-" + randomText(24),
				IDToken: randomText(60) + "." + randomText(400) + "." + randomText(256), // an RS256 ID token's size
				Expiry:  now.Add(5 * time.Minute), Obtained: now, Scope: "openid profile email offline_access",
			},
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
			RemoteIP:  "203.0.113.7",
		}
		l, err := m.Create(ctx, discardWriter{}, s)
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, l.Key)
	}
	afterCreate := heap()
	// Past the TTL, the next request trims every stale cache entry.
	clock.Advance(time.Second)
	if _, err := m.LoadKey(ctx, keys[0]); err != nil {
		b.Fatal(err)
	}
	afterIdle := heap()

	var sealedBytes int
	for _, k := range keys {
		rec, err := store.Get(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		sealedBytes += len(rec.Data)
	}
	sealed = float64(sealedBytes) / float64(n)
	idle = float64(int64(afterIdle)-int64(base))/float64(n) - sealed
	cached = float64(int64(afterCreate)-int64(base))/float64(n) - sealed

	before := heap()
	buckets := limit.New(50, 100, n, clock.Now)
	for _, k := range keys {
		buckets.Allow(string(k))
	}
	lim = float64(int64(heap())-int64(before)) / float64(n)
	runtime.KeepAlive(buckets)
	runtime.KeepAlive(m)
	return idle, cached, sealed, lim
}

func randomText(n int) string {
	b := make([]byte, n*3/4+1)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// discardWriter is a ResponseWriter for Create's cookie, which nobody reads.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}

func benchCodec(b *testing.B) *session.Codec {
	k, err := session.ParseKey(session.NewKey())
	if err != nil {
		b.Fatal(err)
	}
	c, err := session.NewCodec(k)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
