package bolt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/testclock"
)

// fileURL returns the store URL of path, escaped as needed.
func fileURL(path string) string { return (&url.URL{Scheme: "bolt", Path: path}).String() }

// openAt opens the store at path and closes it when the test ends.
func openAt(t testing.TB, path string, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), fileURL(path), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTemp opens a store in a fresh file.
func openTemp(t testing.TB, o Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "sessions.db"), o)
}

// TestStore runs the conformance suite, with a fresh file per subtest, twice:
// with the default sweep interval, so that expiry relies on the checks on
// every read alone, and with a sweeper fast enough to remove records while
// the suite uses them.
func TestStore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{
		{"LazyExpiry", 0},
		{"FastSweep", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) session.Store {
				return openTemp(t, Options{SweepInterval: tc.interval})
			})
		})
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, openTemp(b, Options{}))
}

func TestRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := Open(ctx, fileURL(path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, gone := session.NewID().Key(), session.NewID().Key()
	want := session.Record{Data: []byte("sealed\x00session"), Subject: "alice", SID: "a1"}
	if want.Version, err = s.Set(ctx, k, want, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The highest version handed out belongs to a deleted record: the
	// counter must not go back to it after the restart.
	last, err := s.Set(ctx, gone, session.Record{Data: []byte("x")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openAt(t, path, Options{})
	got, err := s.Get(ctx, k)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if !bytes.Equal(got.Data, want.Data) || got.Version != want.Version || got.Subject != want.Subject || got.SID != want.SID {
		t.Fatalf("Get after restart = %+v, want %+v", got, want)
	}
	if m, err := s.ListBySubject(ctx, "alice"); err != nil || len(m) != 1 || m[k].Version != want.Version {
		t.Fatalf("ListBySubject after restart = %v, %v; want the record", m, err)
	}
	v, err := s.CompareAndSwap(ctx, k, want.Version, session.Record{Data: []byte("next"), Subject: "alice"}, time.Hour)
	if err != nil {
		t.Fatalf("CompareAndSwap with the version from before the restart: %v", err)
	}
	if v <= last {
		t.Fatalf("version after restart = %d, not above %d handed out before", v, last)
	}
	if v2, err := s.Set(ctx, gone, session.Record{Data: []byte("again")}, time.Hour); err != nil || v2 <= v {
		t.Fatalf("re-creating a deleted key = version %d, %v; want above %d", v2, err, v)
	}
}

func newClock() *testclock.Clock { return testclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) }

// contents is what the buckets of a store hold, decoded.
type contents struct {
	records   []session.Key
	bySubject map[string][]session.Key
	bySID     map[string][]session.Key
	byExpiry  []session.Key
}

func dump(t *testing.T, s *Store) contents {
	t.Helper()
	c := contents{bySubject: map[string][]session.Key{}, bySID: map[string][]session.Key{}}
	index := func(b *bbolt.Bucket, into map[string][]session.Key) error {
		return b.ForEach(func(k, _ []byte) error {
			n := binary.BigEndian.Uint32(k)
			into[string(k[4:4+n])] = append(into[string(k[4:4+n])], session.Key(k[4+n:]))
			return nil
		})
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b, err := bucketsOf(tx)
		if err != nil {
			return err
		}
		if err := b.records.ForEach(func(k, _ []byte) error {
			c.records = append(c.records, session.Key(k))
			return nil
		}); err != nil {
			return err
		}
		if err := b.byExpiry.ForEach(func(k, _ []byte) error {
			_, key, _ := splitExpiryKey(k)
			c.byExpiry = append(c.byExpiry, key)
			return nil
		}); err != nil {
			return err
		}
		if err := index(b.bySubject, c.bySubject); err != nil {
			return err
		}
		return index(b.bySID, c.bySID)
	})
	if err != nil {
		t.Fatalf("reading the buckets: %v", err)
	}
	return c
}

func TestSweepRemovesExpiredRecordsAndIndexEntries(t *testing.T) {
	clock := newClock()
	s := openTemp(t, Options{Now: clock.Now, SweepInterval: time.Millisecond})
	ctx := t.Context()

	keep := storetest.SweepFixture(t, s)

	// Many sweeps run while the clock stands still: nothing goes.
	time.Sleep(20 * time.Millisecond)
	if c := dump(t, s); len(c.records) != 5 || len(c.byExpiry) != 5 {
		t.Fatalf("before expiry: %d records, %d expiry entries; want 5 and 5", len(c.records), len(c.byExpiry))
	}

	// Only the sweeper touches the store from here on: no read can take
	// the credit.
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for len(dump(t, s).records) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records 5s after expiry, want 1: the sweeper does not run", len(dump(t, s).records))
		}
		time.Sleep(time.Millisecond)
	}

	c := dump(t, s)
	if want := []session.Key{keep}; !slices.Equal(c.records, want) || !slices.Equal(c.byExpiry, want) {
		t.Errorf("after sweep: records %v, expiry index %v; want only %v", c.records, c.byExpiry, want)
	}
	if want := map[string][]session.Key{"bob": {keep}}; !maps.EqualFunc(c.bySubject, want, slices.Equal) {
		t.Errorf("subject index after sweep = %v, want %v", c.bySubject, want)
	}
	if want := map[string][]session.Key{"b2": {keep}}; !maps.EqualFunc(c.bySID, want, slices.Equal) {
		t.Errorf("sid index after sweep = %v, want %v", c.bySID, want)
	}
	if _, err := s.Get(ctx, keep); err != nil {
		t.Errorf("Get(unexpired record) after sweep: %v", err)
	}
}

// TestSweepBatchesAreBounded checks that one sweep transaction removes at
// most sweepBatch records, and that sweep as a whole removes them all.
func TestSweepBatchesAreBounded(t *testing.T) {
	clock := newClock()
	s := openTemp(t, Options{Now: clock.Now, SweepInterval: time.Hour}) // no background sweep
	ctx := t.Context()
	const n = 2*sweepBatch + 10
	for i := range n {
		r := session.Record{Data: []byte("x"), Subject: fmt.Sprint("sub", i%7), SID: fmt.Sprint("sid", i)}
		if _, err := s.Set(ctx, session.NewID().Key(), r, time.Duration(1+i)*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	keep := session.NewID().Key()
	if _, err := s.Set(ctx, keep, session.Record{Data: []byte("x"), Subject: "sub0"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // ttls of 1s to 60s: 60 expired
	if removed, more, err := s.sweepOnce(clock.Now().UnixNano()); err != nil || removed != 60 || more {
		t.Fatalf("sweepOnce = %d, %v, %v; want 60, false, nil", removed, more, err)
	}
	clock.Advance(time.Hour - time.Minute - time.Nanosecond)
	removed, more, err := s.sweepOnce(clock.Now().UnixNano())
	if err != nil || removed != sweepBatch || !more {
		t.Fatalf("sweepOnce = %d, %v, %v; want %d, true, nil", removed, more, err, sweepBatch)
	}
	s.sweep()
	c := dump(t, s)
	if len(c.records) != 1 || len(c.byExpiry) != 1 || len(c.bySID) != 0 || len(c.bySubject["sub0"]) != 1 || len(c.bySubject) != 1 {
		t.Fatalf("after sweep: %d records, %d expiry entries, subject index %v, %d sids; want only %s",
			len(c.records), len(c.byExpiry), c.bySubject, len(c.bySID), keep.Short())
	}
	if removed, more, err := s.sweepOnce(clock.Now().UnixNano()); err != nil || removed != 0 || more {
		t.Fatalf("sweepOnce with nothing due = %d, %v, %v", removed, more, err)
	}
}

// TestExpiryIsExact checks the boundary with the injected clock: a record is
// live strictly before now+ttl and gone from then on, before any sweep.
func TestExpiryIsExact(t *testing.T) {
	clock := newClock()
	s := openTemp(t, Options{Now: clock.Now})
	ctx := t.Context()
	k := session.NewID().Key()
	v, err := s.Set(ctx, k, session.Record{Data: []byte("x"), Subject: "alice", SID: "a1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, k); err != nil {
		t.Fatalf("Get 1ns before expiry: %v", err)
	}
	clock.Advance(time.Nanosecond)
	if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get at expiry = %v, want ErrNotFound", err)
	}
	if m, err := s.ListBySubject(ctx, "alice"); err != nil || len(m) != 0 {
		t.Fatalf("ListBySubject at expiry = %d records, %v; want none", len(m), err)
	}
	if _, err := s.Take(ctx, k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Take at expiry = %v, want ErrNotFound", err)
	}
	if _, err := s.CompareAndSwap(ctx, k, v, session.Record{Data: []byte("y")}, time.Minute); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("CompareAndSwap at expiry = %v, want ErrNotFound", err)
	}
	// A write path drops the expired record and its index entries.
	if n, err := storetest.Count(s.DeleteBy(ctx, "alice", "")); err != nil || n != 0 {
		t.Fatalf("DeleteBy at expiry = %d, %v; want 0, nil", n, err)
	}
	if c := dump(t, s); len(c.records)+len(c.byExpiry)+len(c.bySubject)+len(c.bySID) != 0 {
		t.Fatalf("after DeleteBy: %+v; want every bucket empty", c)
	}
}

func TestTTLSaturates(t *testing.T) {
	s := openTemp(t, Options{})
	k := session.NewID().Key()
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x")}, time.Duration(1<<63-1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), k); err != nil {
		t.Fatalf("Get of a record with the largest ttl: %v (did the expiry wrap around?)", err)
	}
}

func TestInvalidWritesRejected(t *testing.T) {
	s := openTemp(t, Options{})
	k := session.NewID().Key()
	long := strings.Repeat("s", bbolt.MaxKeySize)
	for _, tc := range []struct {
		name string
		key  session.Key
		rec  session.Record
		ttl  time.Duration
	}{
		{"zero ttl", k, session.Record{Data: []byte("x")}, 0},
		{"negative ttl", k, session.Record{Data: []byte("x")}, -time.Second},
		{"empty key", "", session.Record{Data: []byte("x")}, time.Minute},
		{"huge subject", k, session.Record{Subject: long}, time.Minute},
		{"huge sid", k, session.Record{Subject: "a", SID: long}, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Set(t.Context(), tc.key, tc.rec, tc.ttl); err == nil || errors.Is(err, session.ErrUnavailable) {
				t.Errorf("Set = %v; want an error that is not ErrUnavailable", err)
			}
			if _, err := s.CompareAndSwap(t.Context(), tc.key, 0, tc.rec, tc.ttl); err == nil || errors.Is(err, session.ErrUnavailable) {
				t.Errorf("CompareAndSwap = %v; want an error that is not ErrUnavailable", err)
			}
		})
	}
	if c := dump(t, s); len(c.records) != 0 {
		t.Fatalf("%d records after rejected writes", len(c.records))
	}
}

// logtest.Buffer is a log destination safe for the sweeper and the test.

func TestCorruptedValueIsNotFound(t *testing.T) {
	valid := encodeEnvelope(envelope{version: 7, expires: time.Now().Add(time.Hour).UnixNano(), subject: "alice", sid: "a1", data: []byte("sealed")})
	flipped := func(i int) []byte {
		b := bytes.Clone(valid)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"empty", []byte{}},
		{"truncated header", valid[:headerSize-1]},
		{"truncated data", valid[:len(valid)-1]},
		{"extra byte", append(bytes.Clone(valid), 0)},
		{"format", flipped(0)},
		{"checksum", flipped(offCRC)},
		{"version", flipped(offVersion + 7)},
		{"expiry", flipped(offExpires + 7)},
		{"subject length", flipped(offSubjectLen + 3)},
		{"data", flipped(len(valid) - 1)},
		{"garbage", bytes.Repeat([]byte{0xff}, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logtest.Buffer
			s := openTemp(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			ctx := t.Context()
			k, other := session.NewID().Key(), session.NewID().Key()
			v, err := s.Set(ctx, k, session.Record{Data: []byte("sealed"), Subject: "alice", SID: "a1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Set(ctx, other, session.Record{Data: []byte("intact"), Subject: "alice", SID: "a2"}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Update(func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketRecords).Put([]byte(k), tc.value)
			}); err != nil {
				t.Fatal(err)
			}

			if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Get = %v, want ErrNotFound", err)
			}
			if _, err := s.Take(ctx, k); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Take = %v, want ErrNotFound", err)
			}
			if _, err := s.CompareAndSwap(ctx, k, v, session.Record{Data: []byte("y")}, time.Hour); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("CompareAndSwap(old=%d) = %v, want ErrNotFound", v, err)
			}
			if m, err := s.ListBySubject(ctx, "alice"); err != nil || len(m) != 1 || m[other].Version == 0 {
				t.Errorf("ListBySubject = %v, %v; want only the intact record", slices.Collect(maps.Keys(m)), err)
			}
			if n, err := storetest.Count(s.DeleteBy(ctx, "", "a1")); err != nil || n != 0 {
				t.Errorf("DeleteBy(sid of the corrupted record) = %d, %v; want 0, nil", n, err)
			}
			if c := dump(t, s); len(c.bySID["a1"]) != 0 {
				t.Errorf("sid index still names the corrupted record: %v", c.bySID)
			}

			log := logs.String()
			if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "key="+k.Short()) {
				t.Errorf("log does not warn about %s:\n%s", k.Short(), log)
			}
			if strings.Contains(log, string(k)) {
				t.Errorf("log contains the whole key:\n%s", log)
			}

			// The key can be written again: set-if-absent sees no record.
			want := session.Record{Data: []byte("fresh"), Subject: "bob"}
			if want.Version, err = s.CompareAndSwap(ctx, k, 0, want, time.Hour); err != nil {
				t.Fatalf("CompareAndSwap(old=0) over the corrupted value: %v", err)
			}
			if got, err := s.Get(ctx, k); err != nil || !bytes.Equal(got.Data, want.Data) || got.Version != want.Version {
				t.Fatalf("Get after rewrite = %+v, %v; want %+v", got, err, want)
			}
			if m, err := s.ListBySubject(ctx, "alice"); err != nil || len(m) != 1 {
				t.Errorf("ListBySubject(old subject) after rewrite = %d records, %v; want 1", len(m), err)
			}
			// Deleting a corrupted value removes it.
			if err := s.db.Update(func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketRecords).Put([]byte(other), tc.value)
			}); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, other); err != nil {
				t.Fatalf("Delete of a corrupted value: %v", err)
			}
			if c := dump(t, s); len(c.records) != 1 {
				t.Errorf("%d records after deleting the corrupted one, want 1", len(c.records))
			}
		})
	}
}

// TestSweepRemovesCorruptedValues: a value that does not decode cannot tell
// its expiry, but its expiry index entry can.
func TestSweepRemovesCorruptedValues(t *testing.T) {
	clock := newClock()
	s := openTemp(t, Options{Now: clock.Now, SweepInterval: time.Hour})
	k := session.NewID().Key()
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x"), Subject: "alice"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).Put([]byte(k), []byte("garbage"))
	}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	s.sweep()
	if c := dump(t, s); len(c.records) != 0 || len(c.byExpiry) != 0 {
		t.Fatalf("after sweep: %d records, %d expiry entries; want none", len(c.records), len(c.byExpiry))
	}
}

func TestOpenLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sessions.db")
	first := openAt(t, path, Options{})

	for _, tc := range []struct {
		name    string
		timeout time.Duration
		ctx     time.Duration // 0: no deadline
		max     time.Duration
	}{
		{"OpenTimeout", 200 * time.Millisecond, 0, time.Second},
		{"DefaultTimeout", 0, 0, DefaultOpenTimeout + time.Second},
		{"ShorterContextDeadline", time.Hour, 200 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			began := time.Now()
			s, err := Open(ctx, fileURL(path), Options{OpenTimeout: tc.timeout})
			took := time.Since(began)
			if err == nil {
				s.Close()
				t.Fatal("second Open of a locked file succeeded")
			}
			if took > tc.max {
				t.Errorf("second Open took %v, want at most %v", took, tc.max)
			}
			if !errors.Is(err, session.ErrUnavailable) || !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), "locked by another process") {
				t.Errorf("second Open = %v; want a lock error wrapping ErrUnavailable", err)
			}
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		})
	}
	t.Cleanup(func() {
		// Once the holder closes, the file opens again.
		first.Close()
		openAt(t, path, Options{OpenTimeout: 100 * time.Millisecond})
	})
}

// TestOpenLockedByAnotherProcess holds the file in a child process, which
// is the case the lock exists for.
func TestOpenLockedByAnotherProcess(t *testing.T) {
	if path := os.Getenv("BOLT_TEST_HOLD"); path != "" {
		s, err := Open(context.Background(), fileURL(path), Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("holding")
		io.Copy(io.Discard, os.Stdin) // until the parent closes our stdin
		s.Close()
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenLockedByAnotherProcess$")
	cmd.Env = append(os.Environ(), "BOLT_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "holding\n" {
		t.Fatalf("child: %q", line)
	}
	began := time.Now()
	s, err := Open(t.Context(), fileURL(path), Options{OpenTimeout: 300 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Open of a file held by another process succeeded")
	}
	if took := time.Since(began); took > 2*time.Second || !errors.Is(err, session.ErrUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Open after %v = %v; want a quick lock error wrapping ErrUnavailable", took, err)
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not-a-db")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not bbolt "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	future := filepath.Join(dir, "future.db")
	for path, fn := range map[string]func(*bbolt.Tx) error{
		foreign: func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err },
		future: func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchema, []byte("2"))
		},
	} {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}

	for _, tc := range []struct {
		url, want string
	}{
		{"", urlForm},
		{"memory", urlForm},
		{"bolt:", urlForm},
		{"bolt:relative.db", urlForm},
		{"bolt://", urlForm},
		{"bolt:///", urlForm},
		{"bolt://relative.db", urlForm},
		{"bolt://./relative.db", urlForm},
		{"bolt://host/abs.db", urlForm},
		{"bolt://user@/abs.db", urlForm},
		{"bolt:///var/lib/moat/", urlForm},
		{"bolt:///var/lib/moat/sessions.db?nosync=1", urlForm},
		{"bolt:///var/lib/moat/sessions.db#x", urlForm},
		{"file:///var/lib/moat/sessions.db", urlForm},
		{"redis://localhost:6379/0", urlForm},
		{"bolt:///%zz", urlForm},
		{fileURL(filepath.Join(dir, "missing", "sessions.db")), "does not exist"},
		{fileURL(filepath.Join(notDB, "sessions.db")), "not a directory"},
		{fileURL(dir), "is a directory"},
		{fileURL(notDB), "not a bbolt file"},
		{fileURL(foreign), "not a moat session store"},
		{fileURL(future), "schema"},
	} {
		s, err := Open(t.Context(), tc.url, Options{OpenTimeout: 100 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v; want an error mentioning %q", tc.url, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created the missing directory (stat: %v)", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(ctx, fileURL(filepath.Join(dir, "cancelled.db")), Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]string{
		"bolt:///var/lib/moat/sessions.db":     "/var/lib/moat/sessions.db",
		"BOLT:///var/lib/moat/sessions.db":     "/var/lib/moat/sessions.db",
		"bolt:///var/lib/moat/../s.db":         "/var/lib/s.db",
		"bolt:///srv/with%20space/sessions.db": "/srv/with space/sessions.db",
	} {
		if got, err := ParseURL(in); err != nil || got != want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	openAt(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 || perm&0o600 != 0o600 {
		t.Fatalf("file mode %v, want 0600", perm)
	}
}

func TestCancelledContext(t *testing.T) {
	s := openTemp(t, Options{})
	k := session.NewID().Key()
	v, err := s.Set(t.Context(), k, session.Record{Data: []byte("x"), Subject: "alice"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, err := range storetest.Calls(ctx, s, k, v) {
		if !errors.Is(err, context.Canceled) || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s with a cancelled ctx = %v, want context.Canceled and not ErrUnavailable", name, err)
		}
	}
	if got, err := s.Get(t.Context(), k); err != nil || got.Version != v {
		t.Fatalf("record changed by cancelled calls: %+v, %v", got, err)
	}
}

// TestCloseStopsSweeper runs in a synctest bubble, which fails the test if
// the sweeper goroutine is still alive when the test function returns.
func TestCloseStopsSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(t.Context(), fileURL(filepath.Join(t.TempDir(), "sessions.db")), Options{SweepInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Set(t.Context(), session.NewID().Key(), session.Record{Data: []byte("x"), Subject: "alice"}, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // a few sweeps, one of which removes the record
		if c := dumpInBubble(s); c != 0 {
			t.Errorf("%d records after the sweeps, want 0", c)
		}
		storetest.CheckClose(t, s)
	})
}

func dumpInBubble(s *Store) int {
	n := 0
	s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketRecords).Stats().KeyN
		return nil
	})
	return n
}

// TestConcurrentWithClose races every operation against Close: each must
// either succeed or fail with ErrUnavailable, and none may panic.
func TestConcurrentWithClose(t *testing.T) {
	s := openTemp(t, Options{SweepInterval: time.Millisecond})
	k := session.NewID().Key()
	v, err := s.Set(t.Context(), k, session.Record{Data: []byte("x"), Subject: "alice"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				for name, err := range storetest.Calls(t.Context(), s, k, v) {
					if err != nil && !errors.Is(err, session.ErrUnavailable) && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrConflict) {
						t.Errorf("%s during Close: %v", name, err)
					}
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
}
