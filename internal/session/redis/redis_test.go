package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
)

// envURL names the Redis the tests use. Without it the tests that need one
// skip; with it they fail if that Redis does not answer.
const envURL = "MOAT_TEST_REDIS_URL"

func redisURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(envURL)
	if u == "" {
		tb.Skipf("set %s (e.g. redis://127.0.0.1:6379/0) to run the tests against a real Redis; they use random key prefixes and never flush", envURL)
	}
	return u
}

// withParams appends query parameters to u.
func withParams(u, params string) string {
	if strings.Contains(u, "?") {
		return u + "&" + params
	}
	return u + "?" + params
}

// logtest.Buffer collects a Store's log lines.

// testStore opens a Store on the test Redis under a random prefix, checks
// that Redis answers, and deletes every key under the prefix when the test
// ends.
func testStore(tb testing.TB, log *logtest.Buffer) *Store {
	tb.Helper()
	prefix := "moattest:" + rand.Text() + ":"
	opts := Options{}
	if log != nil {
		opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, withParams(redisURL(tb), "prefix="+prefix), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Ping(ctx); err != nil {
		tb.Fatalf("%s is set but Redis does not answer: %v", envURL, err)
	}
	tb.Cleanup(func() { deletePrefix(tb, s) })
	return s
}

// raw returns the Store's client, for tests that reach behind the Store.
func raw(tb testing.TB, s *Store) rueidis.Client {
	tb.Helper()
	c, err := s.conn(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// deletePrefix deletes every key under s's prefix (random, so without glob
// characters) on every node.
func deletePrefix(tb testing.TB, s *Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.conn(ctx)
	if err != nil {
		return // closed already: the test has closed it itself
	}
	for _, node := range c.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(s.prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				tb.Errorf("cleanup: SCAN: %v", err)
				return
			}
			for _, k := range e.Elements {
				node.Do(ctx, node.B().Del().Key(k).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

func TestStore(t *testing.T) {
	redisURL(t)
	storetest.Run(t, func(t *testing.T) session.Store { return testStore(t, nil) })
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, testStore(b, nil))
}

// TestCorruptedValue writes values the store did not write under its keys:
// every operation treats them as missing, logs the key's short form, and
// nothing panics. Each value is also checked to be judged the same by Go
// (Get) and by the scripts (CompareAndSwap with 0).
func TestCorruptedValue(t *testing.T) {
	var log logtest.Buffer
	s := testStore(t, &log)
	c := raw(t, s)
	ctx := t.Context()
	valid, _ := encode(99, session.Record{Subject: "sub", SID: "sid", Data: []byte("data")})

	values := map[string]string{
		"garbage":        "garbage",
		"empty":          "",
		"header only":    string(valid[:headerSize-1]),
		"wrong format":   "\x07" + string(valid[1:]),
		"zero version":   string(valid[:1]) + strings.Repeat("\x00", 8) + string(valid[9:]),
		"lengths beyond": string(valid[:9]) + "\x00\x00\x10\x00" + string(valid[13:]),
		"truncated":      string(valid[:headerSize+4]),
	}
	for name, val := range values {
		t.Run(name, func(t *testing.T) {
			key := session.NewID().Key()
			put := func() {
				if err := c.Do(ctx, c.B().Set().Key(s.recordKey(key)).Value(val).Ex(time.Minute).Build()).Error(); err != nil {
					t.Fatal(err)
				}
			}
			put()
			if _, err := s.Get(ctx, key); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Get = %v, want ErrNotFound", err)
			}
			if !strings.Contains(log.String(), key.Short()) {
				t.Errorf("no warning naming %s in the log:\n%s", key.Short(), log.String())
			}
			if _, err := s.CompareAndSwap(ctx, key, 99, session.Record{Data: []byte("x")}, time.Minute); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("CompareAndSwap(old=99) = %v, want ErrNotFound", err)
			}
			if _, err := s.Take(ctx, key); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Take = %v, want ErrNotFound", err)
			}
			put()
			// A corrupted value is no record: creating over it works.
			want := session.Record{Data: []byte("fresh"), Subject: "s-" + rand.Text()}
			v, err := s.CompareAndSwap(ctx, key, 0, want, time.Minute)
			if err != nil {
				t.Fatalf("CompareAndSwap(old=0) over a corrupted value: %v", err)
			}
			if got, err := s.Get(ctx, key); err != nil || got.Version != v || string(got.Data) != "fresh" {
				t.Fatalf("Get after create = %+v, %v", got, err)
			}
		})
	}

	t.Run("indexed", func(t *testing.T) {
		sub, sid := "s-"+rand.Text(), "sid-"+rand.Text()
		key := session.NewID().Key()
		if _, err := s.Set(ctx, key, session.Record{Data: []byte("x"), Subject: sub, SID: sid}, time.Minute); err != nil {
			t.Fatal(err)
		}
		c.Do(ctx, c.B().Set().Key(s.recordKey(key)).Value("garbage").Ex(time.Minute).Build())
		if m, err := s.ListBySubject(ctx, sub); err != nil || len(m) != 0 {
			t.Errorf("ListBySubject = %v, %v; want nothing", m, err)
		}
		if n, err := storetest.Count(s.DeleteBy(ctx, sub, "")); err != nil || n != 0 {
			t.Errorf("DeleteBy(sub) = %d, %v; want 0", n, err)
		}
		if n, err := storetest.Count(s.DeleteBy(ctx, "", sid)); err != nil || n != 0 {
			t.Errorf("DeleteBy(sid) = %d, %v; want 0", n, err)
		}
	})

	t.Run("wrong type", func(t *testing.T) {
		key := session.NewID().Key()
		c.Do(ctx, c.B().Hset().Key(s.recordKey(key)).FieldValue().FieldValue("v", "1").Build())
		if _, err := s.Get(ctx, key); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get of a hash = %v, want ErrNotFound", err)
		}
		if _, err := s.Take(ctx, key); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Take of a hash = %v, want ErrNotFound", err)
		}
		if _, err := s.CompareAndSwap(ctx, key, 0, session.Record{Data: []byte("x")}, time.Minute); err != nil {
			t.Fatalf("CompareAndSwap(old=0) over a hash: %v", err)
		}
	})
}

// TestIndexEntries checks the index layout: the subject and SID sets hold
// the record key, scored beyond the record's expiry, and outlive it.
func TestIndexEntries(t *testing.T) {
	s := testStore(t, nil)
	c := raw(t, s)
	ctx := t.Context()
	sub, sid := "s-"+rand.Text(), "sid-"+rand.Text()
	key := session.NewID().Key()
	const ttl = 30 * time.Second
	before := time.Now()
	if _, err := s.Set(ctx, key, session.Record{Data: []byte("x"), Subject: sub, SID: sid}, ttl); err != nil {
		t.Fatal(err)
	}
	for _, index := range []string{s.subjectKey(sub), s.sidKey(sid)} {
		score, err := c.Do(ctx, c.B().Zscore().Key(index).Member(string(key)).Build()).AsFloat64()
		if err != nil {
			t.Fatalf("ZSCORE %s: %v", index, err)
		}
		bound := time.UnixMilli(int64(score))
		if min := before.Add(ttl + indexMargin - 5*time.Second); bound.Before(min) {
			t.Errorf("%s: entry bound %v, want after %v", index, bound, min)
		}
		pttl, err := c.Do(ctx, c.B().Pttl().Key(index).Build()).AsInt64()
		if err != nil || time.Duration(pttl)*time.Millisecond < ttl {
			t.Errorf("%s: PTTL %d, %v; want at least the record's ttl", index, pttl, err)
		}
	}

	// A record without a subject is not indexed, even with a SID.
	sid2 := "sid-" + rand.Text()
	if _, err := s.Set(ctx, session.NewID().Key(), session.Record{Data: []byte("x"), SID: sid2}, ttl); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key(s.sidKey(sid2)).Build()).AsInt64(); n != 0 {
		t.Error("a record without a subject was indexed by SID")
	}
}

// TestIndexPruning checks that expired entries go on every index read and
// write, and that stale but unexpired entries are skipped, not acted on.
func TestIndexPruning(t *testing.T) {
	s := testStore(t, nil)
	c := raw(t, s)
	ctx := t.Context()
	sub := "s-" + rand.Text()
	index := s.subjectKey(sub)

	live := session.NewID().Key()
	want := session.Record{Data: []byte("live"), Subject: sub}
	v, err := s.Set(ctx, live, want, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want.Version = v
	// Entries whose bound has passed, as if their records had expired long
	// ago, and one whose record was deleted but whose bound is ahead.
	past := strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10)
	c.Do(ctx, c.B().Zadd().Key(index).ScoreMember().ScoreMember(mustFloat(t, past), "expired1").ScoreMember(mustFloat(t, past), "expired2").Build())
	deleted := session.NewID().Key()
	if _, err := s.Set(ctx, deleted, session.Record{Data: []byte("gone"), Subject: sub}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}

	got, err := s.ListBySubject(ctx, sub)
	if err != nil || len(got) != 1 || got[live].Version != want.Version {
		t.Fatalf("ListBySubject = %v, %v; want only %s", got, err, live.Short())
	}
	members, _ := c.Do(ctx, c.B().Zrange().Key(index).Min("0").Max("-1").Build()).AsStrSlice()
	if strings.Contains(strings.Join(members, " "), "expired") {
		t.Errorf("expired entries not pruned by a read: %v", members)
	}
	if len(members) != 2 {
		t.Errorf("index = %v; want the live and the deleted record (pruned only once its bound passes)", members)
	}

	// A write prunes too.
	c.Do(ctx, c.B().Zadd().Key(index).ScoreMember().ScoreMember(mustFloat(t, past), "expired3").Build())
	if _, err := s.Set(ctx, live, want, time.Minute); err != nil {
		t.Fatal(err)
	}
	members, _ = c.Do(ctx, c.B().Zrange().Key(index).Min("0").Max("-1").Build()).AsStrSlice()
	if strings.Contains(strings.Join(members, " "), "expired3") {
		t.Errorf("expired entry not pruned by a write: %v", members)
	}

	if n, err := storetest.Count(s.DeleteBy(ctx, sub, "")); err != nil || n != 1 {
		t.Fatalf("DeleteBy = %d, %v; want 1", n, err)
	}
}

func mustFloat(t *testing.T, s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestIndexFailureBlocksWrite checks the ordering that keeps every live
// session findable: when the index cannot be written, neither is the
// record.
func TestIndexFailureBlocksWrite(t *testing.T) {
	s := testStore(t, nil)
	c := raw(t, s)
	ctx := t.Context()
	sub := "s-" + rand.Text()
	// A string where the subject's sorted set belongs: ZADD fails.
	c.Do(ctx, c.B().Set().Key(s.subjectKey(sub)).Value("not a sorted set").Ex(time.Minute).Build())
	key := session.NewID().Key()
	_, err := s.Set(ctx, key, session.Record{Data: []byte("x"), Subject: sub}, time.Minute)
	if !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Set with a broken index = %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("record written although its index entry was not: Get = %v", err)
	}
}

// TestScriptFallback runs a script the server has never seen, so EVALSHA
// fails with NOSCRIPT and EVAL takes over, singly and pipelined. (SCRIPT
// FLUSH would do the same to other users of the shared test server.)
func TestScriptFallback(t *testing.T) {
	s := testStore(t, nil)
	c := raw(t, s)
	ctx := t.Context()
	fresh := func() *script { return newScript("return ARGV[1] .. '-' .. KEYS[1] -- " + rand.Text()) }
	k := s.prefix + "fallback"
	if got, err := fresh().run(ctx, c, k, "a").ToString(); err != nil || got != "a-"+k {
		t.Fatalf("run = %q, %v", got, err)
	}
	sc := fresh()
	res := sc.runMulti(ctx, c, []call{{key: k + "1", args: []string{"x"}}, {key: k + "2", args: []string{"y"}}})
	for i, want := range []string{"x-" + k + "1", "y-" + k + "2"} {
		if got, err := res[i].ToString(); err != nil || got != want {
			t.Errorf("runMulti[%d] = %q, %v; want %q", i, got, err, want)
		}
	}
	// Loaded now, on the node of that key: EVALSHA alone works.
	if got, err := c.Do(ctx, sc.evalsha(c, call{key: k + "1", args: []string{"z"}})).ToString(); err != nil || got != "z-"+k+"1" {
		t.Errorf("EVALSHA after the fallback = %q, %v", got, err)
	}
}

// TestVersionsFitInt63 checks the promise made in newVersion's comment.
func TestVersionsFitInt63(t *testing.T) {
	s := testStore(t, nil)
	for range 200 {
		v, err := s.Set(t.Context(), session.NewID().Key(), session.Record{Data: []byte("x")}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if v == 0 || v>>63 != 0 {
			t.Fatalf("version %d is not a positive int64", v)
		}
	}
}

// TestWrongCredentials checks that bad credentials fail Open, with an
// error that does not show the password.
func TestWrongCredentials(t *testing.T) {
	u := redisURL(t)
	const secret = "n0t-the-Passw0rd"
	scheme, rest, _ := strings.Cut(u, "://")
	if i := strings.LastIndex(strings.Split(rest, "/")[0], "@"); i >= 0 {
		rest = rest[i+1:]
	}
	bad := scheme + "://moat-no-such-user-" + rand.Text() + ":" + secret + "@" + rest
	s, err := Open(t.Context(), bad, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open with an unknown ACL user succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error reveals the password: %v", err)
	}
	if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("error %q does not say the credentials are wrong", err)
	}
}

// TestACLUser runs a store as an ACL user holding only the permissions the
// package documentation lists, confined to its prefix.
func TestACLUser(t *testing.T) {
	admin := testStore(t, nil)
	if admin.cfg.mode == modeCluster {
		t.Skip("ACL SETUSER reaches one cluster node only; this test needs a single primary")
	}
	c := raw(t, admin)
	ctx := t.Context()
	user, pass := "moattest-"+strings.ToLower(rand.Text()), rand.Text()
	prefix := "moattest:" + rand.Text() + ":"
	rules := []string{"reset", "on", ">" + pass, "~" + prefix + "*", "-@all",
		"+get", "+getdel", "+del", "+evalsha", "+eval", "+ping", "+hello", "+auth", "+client", "+select", "+role",
		"+set", "+type", "+getrange", "+strlen", "+time", "+zadd", "+zrange", "+zremrangebyscore", "+pttl", "+pexpire"}
	if err := c.Do(ctx, c.B().AclSetuser().Username(user).Rule(rules...).Build()).Error(); err != nil {
		t.Skipf("cannot create an ACL user on the test server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Do(ctx, c.B().AclDeluser().Username(user).Build())
		// The store's keys: the admin store has another prefix.
		for _, k := range scanKeys(ctx, c, prefix) {
			c.Do(ctx, c.B().Del().Key(k).Build())
		}
	})

	u := redisURL(t)
	scheme, rest, _ := strings.Cut(u, "://")
	if i := strings.LastIndex(strings.Split(rest, "/")[0], "@"); i >= 0 {
		rest = rest[i+1:]
	}
	s, err := Open(ctx, withParams(scheme+"://"+user+":"+pass+"@"+rest, "prefix="+prefix), Options{})
	if err != nil {
		t.Fatalf("Open as %s: %v", user, err)
	}
	defer s.Close()

	sub, sid := "s-"+rand.Text(), "sid-"+rand.Text()
	k := session.NewID().Key()
	v, err := s.Set(ctx, k, session.Record{Data: []byte("x"), Subject: sub, SID: sid}, time.Minute)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	if v, err = s.CompareAndSwap(ctx, k, v, session.Record{Data: []byte("y"), Subject: sub, SID: sid}, time.Minute); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	if r, err := s.Get(ctx, k); err != nil || r.Version != v {
		t.Fatalf("Get = %+v, %v", r, err)
	}
	if m, err := s.ListBySubject(ctx, sub); err != nil || len(m) != 1 {
		t.Fatalf("ListBySubject = %v, %v", m, err)
	}
	if n, err := storetest.Count(s.DeleteBy(ctx, sub, sid)); err != nil || n != 1 {
		t.Fatalf("DeleteBy = %d, %v", n, err)
	}
	k2 := session.NewID().Key()
	if _, err := s.Set(ctx, k2, session.Record{Data: []byte("z")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, k2); err != nil {
		t.Fatalf("Take: %v", err)
	}
	if err := s.Delete(ctx, k2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func scanKeys(ctx context.Context, c rueidis.Client, prefix string) []string {
	var keys []string
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return keys
		}
		keys = append(keys, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return keys
		}
	}
}

// TestCloseThenUse checks ErrUnavailable after Close on a live store.
func TestCloseThenUse(t *testing.T) {
	s := testStore(t, nil)
	k := session.NewID().Key()
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	deletePrefix(t, s) // now, while the store can still do it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkAllUnavailable(t, s, 0)
}
