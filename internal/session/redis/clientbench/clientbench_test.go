// Package clientbench compares github.com/redis/go-redis/v9 and
// github.com/redis/rueidis on the operations moat's Redis session store
// performs: a GET of a sealed session (~2 KiB) under parallel load, and an
// EVALSHA compare-and-swap script. It also measures rueidis's server-assisted
// client-side cache, the candidate fix for a later per-replica session cache.
//
// Run it against a disposable Redis (it writes and deletes its own random
// keys, it never flushes):
//
//	cd internal/session/redis/clientbench
//	MOAT_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench . -cpu 2 -count 5
//
// The results are in docs/stores.md, "Redis client choice".
package clientbench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

const (
	nKeys     = 1024
	valueSize = 2 << 10 // a sealed session with its tokens
	ttl       = 10 * time.Minute
)

// casScript is the shape of the store's compare-and-swap: read the record,
// compare its 8-byte version header, write the new value with a ttl.
const casScript = `
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, 8) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`

// parallelism are the b.SetParallelism factors: with -cpu 2 they give 32 and
// 64 goroutines.
var parallelism = []int{16, 32}

// env holds the URL and a random key prefix for one benchmark run.
type env struct {
	url    string
	prefix string
	keys   []string
	value  []byte
}

func newEnv(b *testing.B) *env {
	b.Helper()
	url := os.Getenv("MOAT_TEST_REDIS_URL")
	if url == "" {
		b.Skip("set MOAT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to run the client benchmarks")
	}
	e := &env{url: url, prefix: "moat-clientbench:" + rand.Text() + ":", value: make([]byte, valueSize)}
	rand.Read(e.value)
	for i := range nKeys {
		e.keys = append(e.keys, e.prefix+strconv.Itoa(i))
	}
	return e
}

// versioned returns e.value with v in its first 8 bytes.
func (e *env) versioned(v uint64) []byte {
	out := make([]byte, len(e.value))
	copy(out, e.value)
	binary.BigEndian.PutUint64(out, v)
	return out
}

func newGoRedis(b *testing.B, e *env) *goredis.Client {
	b.Helper()
	opt, err := goredis.ParseURL(e.url)
	if err != nil {
		b.Fatal(err)
	}
	c := goredis.NewClient(opt) // defaults: pool of 10 connections per GOMAXPROCS
	if err := c.Ping(b.Context()).Err(); err != nil {
		b.Fatalf("go-redis: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Del(ctx, e.keys...)
		c.Close()
	})
	return c
}

func newRueidis(b *testing.B, e *env) rueidis.Client {
	b.Helper()
	opt, err := rueidis.ParseURL(e.url)
	if err != nil {
		b.Fatal(err)
	}
	c, err := rueidis.NewClient(opt) // defaults: auto-pipelining, client-side cache enabled
	if err != nil {
		b.Fatalf("rueidis: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, k := range e.keys {
			c.Do(ctx, c.B().Del().Key(k).Build())
		}
		c.Close()
	})
	return c
}

// runParallel runs op from p*GOMAXPROCS goroutines, each starting at a
// different key.
func runParallel(b *testing.B, p int, op func(ctx context.Context, i int) error) {
	var next atomic.Int64
	b.SetParallelism(p)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := int(next.Add(1)) * 7919
		for pb.Next() {
			if err := op(ctx, i); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkGet(b *testing.B) {
	e := newEnv(b)
	for _, p := range parallelism {
		g := p * runtime.GOMAXPROCS(0)

		b.Run(fmt.Sprintf("go-redis/g%d", g), func(b *testing.B) {
			c := newGoRedis(b, e)
			for _, k := range e.keys {
				if err := c.Set(b.Context(), k, e.value, ttl).Err(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(valueSize)
			runParallel(b, p, func(ctx context.Context, i int) error {
				v, err := c.Get(ctx, e.keys[i%nKeys]).Bytes()
				if err == nil && len(v) != valueSize {
					err = fmt.Errorf("got %d bytes", len(v))
				}
				return err
			})
		})

		b.Run(fmt.Sprintf("rueidis/g%d", g), func(b *testing.B) {
			c := newRueidis(b, e)
			for _, k := range e.keys {
				if err := c.Do(b.Context(), c.B().Set().Key(k).Value(rueidis.BinaryString(e.value)).Px(ttl).Build()).Error(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(valueSize)
			runParallel(b, p, func(ctx context.Context, i int) error {
				v, err := c.Do(ctx, c.B().Get().Key(e.keys[i%nKeys]).Build()).AsBytes()
				if err == nil && len(v) != valueSize {
					err = fmt.Errorf("got %d bytes", len(v))
				}
				return err
			})
		})

		// The same reads served from rueidis's tracked client-side cache:
		// after the first read of each key, Redis pushes an invalidation
		// when any client writes it, so a hit is never stale for longer
		// than the push takes.
		b.Run(fmt.Sprintf("rueidis-cache/g%d", g), func(b *testing.B) {
			c := newRueidis(b, e)
			for _, k := range e.keys {
				if err := c.Do(b.Context(), c.B().Set().Key(k).Value(rueidis.BinaryString(e.value)).Px(ttl).Build()).Error(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(valueSize)
			runParallel(b, p, func(ctx context.Context, i int) error {
				v, err := c.DoCache(ctx, c.B().Get().Key(e.keys[i%nKeys]).Cache(), time.Minute).AsBytes()
				if err == nil && len(v) != valueSize {
					err = fmt.Errorf("got %d bytes", len(v))
				}
				return err
			})
		})
	}
}

// BenchmarkCAS runs the compare-and-swap script with EVALSHA, serially and
// from many goroutines, each on its own key so that every swap succeeds.
func BenchmarkCAS(b *testing.B) {
	e := newEnv(b)
	ttlMS := strconv.FormatInt(ttl.Milliseconds(), 10)

	goredisCAS := func(b *testing.B, c *goredis.Client, script *goredis.Script) func(ctx context.Context, key string) (func(ctx context.Context) error, error) {
		return func(ctx context.Context, key string) (func(ctx context.Context) error, error) {
			v := uint64(1)
			if err := c.Set(ctx, key, e.versioned(v), ttl).Err(); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error {
				old := binary.BigEndian.AppendUint64(nil, v)
				n, err := script.Run(ctx, c, []string{key}, old, e.versioned(v+1), ttlMS).Int()
				if err == nil && n != 1 {
					err = fmt.Errorf("swap lost")
				}
				v++
				return err
			}, nil
		}
	}
	rueidisCAS := func(b *testing.B, c rueidis.Client, script *rueidis.Lua) func(ctx context.Context, key string) (func(ctx context.Context) error, error) {
		return func(ctx context.Context, key string) (func(ctx context.Context) error, error) {
			v := uint64(1)
			if err := c.Do(ctx, c.B().Set().Key(key).Value(rueidis.BinaryString(e.versioned(v))).Px(ttl).Build()).Error(); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error {
				old := binary.BigEndian.AppendUint64(nil, v)
				n, err := script.Exec(ctx, c, []string{key}, []string{rueidis.BinaryString(old), rueidis.BinaryString(e.versioned(v + 1)), ttlMS}).AsInt64()
				if err == nil && n != 1 {
					err = fmt.Errorf("swap lost")
				}
				v++
				return err
			}, nil
		}
	}

	type maker func(b *testing.B) func(ctx context.Context, key string) (func(ctx context.Context) error, error)
	clients := []struct {
		name string
		make maker
	}{
		{"go-redis", func(b *testing.B) func(context.Context, string) (func(context.Context) error, error) {
			return goredisCAS(b, newGoRedis(b, e), goredis.NewScript(casScript))
		}},
		{"rueidis", func(b *testing.B) func(context.Context, string) (func(context.Context) error, error) {
			return rueidisCAS(b, newRueidis(b, e), rueidis.NewLuaScript(casScript))
		}},
	}
	for _, cl := range clients {
		b.Run(cl.name+"/serial", func(b *testing.B) {
			start := cl.make(b)
			swap, err := start(b.Context(), e.keys[0])
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(valueSize)
			b.ReportAllocs()
			for b.Loop() {
				if err := swap(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, p := range parallelism {
			g := p * runtime.GOMAXPROCS(0)
			b.Run(fmt.Sprintf("%s/g%d", cl.name, g), func(b *testing.B) {
				start := cl.make(b)
				var next atomic.Int64
				b.SetBytes(valueSize)
				b.SetParallelism(p)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					swap, err := start(ctx, e.keys[int(next.Add(1))%nKeys])
					if err != nil {
						b.Error(err)
						return
					}
					for pb.Next() {
						if err := swap(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// TestCacheInvalidation measures what a per-replica session cache built on
// rueidis's client-side caching would need: after one replica deletes or
// rewrites a session, how soon another replica's cached read sees it. The
// later caching work must keep this well under a second.
func TestCacheInvalidation(t *testing.T) {
	url := os.Getenv("MOAT_TEST_REDIS_URL")
	if url == "" {
		t.Skip("set MOAT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to run the client benchmarks")
	}
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	writer, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	ctx := t.Context()
	key := "moat-clientbench:" + rand.Text()
	defer writer.Do(context.Background(), writer.B().Del().Key(key).Build())

	var worst time.Duration
	for round := range 20 {
		if err := writer.Do(ctx, writer.B().Set().Key(key).Value("live").Px(time.Minute).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		for { // until the reader has it cached
			res := reader.DoCache(ctx, reader.B().Get().Key(key).Cache(), time.Minute)
			if v, _ := res.ToString(); v == "live" && res.IsCacheHit() {
				break
			}
		}
		var write rueidis.Completed
		if round%2 == 0 {
			write = writer.B().Del().Key(key).Build() // logout
		} else {
			write = writer.B().Set().Key(key).Value("refreshed").Px(time.Minute).Build() // token refresh
		}
		begin := time.Now()
		if err := writer.Do(ctx, write).Error(); err != nil {
			t.Fatal(err)
		}
		for {
			v, err := reader.DoCache(ctx, reader.B().Get().Key(key).Cache(), time.Minute).ToString()
			if (round%2 == 0 && rueidis.IsRedisNil(err)) || v == "refreshed" {
				break
			}
			if time.Since(begin) > time.Second {
				t.Fatalf("round %d: the cached read still shows the old value 1s after the write", round)
			}
		}
		worst = max(worst, time.Since(begin))
	}
	t.Logf("worst delay between a write on one client and a cached read on another seeing it: %v", worst)
}
