// Package storetest is the conformance suite of session.Store. Every backend
// runs it, so that moat behaves the same whichever store is configured, and
// so that a new backend is known to be correct before it is used.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

const (
	// shortTTL is the lifetime of records that a test waits to expire. Real
	// backends count in seconds or milliseconds, so it stays above 1s.
	shortTTL = 1500 * time.Millisecond
	// expirySlack is how long after shortTTL an expired record may still be
	// visible before the suite fails: backends with coarse clocks or lazy
	// expiry get some leeway, a backend that never expires does not.
	expirySlack = 3 * time.Second
	// pollEvery is the polling period while waiting for an expiry.
	pollEvery = 20 * time.Millisecond
	// longTTL is the lifetime of records that must outlive the test. It is
	// short enough that a shared database cleans up after a crashed run.
	longTTL = time.Minute
	// workers is the number of goroutines in the concurrency tests.
	workers = 16
	// rounds is how often the single-winner races are repeated, so that an
	// implementation that is only usually atomic gets caught.
	rounds = 8
	// hangLimit is how long an operation on a cancelled context may take.
	hangLimit = 5 * time.Second
)

// Run runs the conformance suite against stores made by newStore.
//
// newStore is called once per subtest with that subtest's t. It should
// register the store's Close with t.Cleanup; Run never closes a store. It may
// return stores sharing one database: every subtest uses its own random keys,
// subjects and SIDs, and deletes its keys when it ends. Subtests about expiry
// run in parallel, so newStore must be safe for concurrent use.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	tests := []struct {
		name     string
		parallel bool // the slow, sleeping tests
		fn       func(t *testing.T, h *harness)
	}{
		{"GetMissing", false, testGetMissing},
		{"SetGet", false, testSetGet},
		{"SetChangesVersion", false, testSetChangesVersion},
		{"DataByteExact", false, testDataByteExact},
		{"DataNotAliased", false, testDataNotAliased},
		{"CompareAndSwap", false, testCompareAndSwap},
		{"CompareAndSwapStale", false, testCompareAndSwapStale},
		{"CompareAndSwapCreate", false, testCompareAndSwapCreate},
		{"CompareAndSwapMissing", false, testCompareAndSwapMissing},
		{"CompareAndSwapNoLostUpdates", false, testCompareAndSwapNoLostUpdates},
		{"CompareAndSwapCreateRace", false, testCompareAndSwapCreateRace},
		{"Take", false, testTake},
		{"TakeRace", false, testTakeRace},
		{"Delete", false, testDelete},
		{"DeleteBy", false, testDeleteBy},
		{"DeleteByEmptySelector", false, testDeleteByEmptySelector},
		{"DeleteByIgnoresEmptySubject", false, testDeleteByIgnoresEmptySubject},
		{"ListBySubject", false, testListBySubject},
		{"IndexFollowsWrites", false, testIndexFollowsWrites},
		{"Ping", false, testPing},
		{"NonPositiveTTL", false, testNonPositiveTTL},
		{"CancelledContext", false, testCancelledContext},
		{"TTLExpiry", true, testTTLExpiry},
		{"TTLExtend", true, testTTLExtend},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.parallel {
				t.Parallel()
			}
			tc.fn(t, newHarness(t, newStore))
		})
	}
}

// harness wraps the store under test with helpers that fail the test on
// unexpected errors, and remembers the keys it hands out so they can be
// deleted from a shared database afterwards.
type harness struct {
	s session.Store

	mu   sync.Mutex
	keys []session.Key
}

func newHarness(t *testing.T, newStore func(t *testing.T) session.Store) *harness {
	t.Helper()
	s := newStore(t)
	if s == nil {
		t.Fatal("newStore returned nil")
	}
	h := &harness{s: s}
	// Registered after newStore's own cleanups, so it runs before Close.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.mu.Lock()
		keys := h.keys
		h.mu.Unlock()
		for _, k := range keys {
			_ = h.s.Delete(ctx, k) // best effort: the store may be gone already
		}
	})
	return h
}

// key returns a fresh random key, deleted when the test ends.
func (h *harness) key() session.Key {
	k := session.NewID().Key()
	h.mu.Lock()
	h.keys = append(h.keys, k)
	h.mu.Unlock()
	return k
}

// keyN returns n fresh keys.
func (h *harness) keyN(n int) []session.Key {
	ks := make([]session.Key, n)
	for i := range ks {
		ks[i] = h.key()
	}
	return ks
}

// random returns a unique string for subjects and SIDs, so that tests
// sharing a database never see each other's records.
func random(prefix string) string { return "storetest-" + prefix + "-" + rand.Text() }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (h *harness) set(t *testing.T, k session.Key, r session.Record, ttl time.Duration) uint64 {
	t.Helper()
	v, err := h.s.Set(t.Context(), k, r, ttl)
	if err != nil {
		t.Fatalf("Set(%s): %v", k.Short(), err)
	}
	if v == 0 {
		t.Fatalf("Set(%s) returned version 0", k.Short())
	}
	return v
}

func (h *harness) cas(t *testing.T, k session.Key, old uint64, r session.Record, ttl time.Duration) uint64 {
	t.Helper()
	v, err := h.s.CompareAndSwap(t.Context(), k, old, r, ttl)
	if err != nil {
		t.Fatalf("CompareAndSwap(%s, %d): %v", k.Short(), old, err)
	}
	if v == 0 {
		t.Fatalf("CompareAndSwap(%s, %d) returned version 0", k.Short(), old)
	}
	return v
}

func (h *harness) get(t *testing.T, k session.Key) session.Record {
	t.Helper()
	r, err := h.s.Get(t.Context(), k)
	if err != nil {
		t.Fatalf("Get(%s): %v", k.Short(), err)
	}
	return r
}

// wantRecord fails unless k holds want (Version compared only if set).
func (h *harness) wantRecord(t *testing.T, k session.Key, want session.Record) {
	t.Helper()
	checkRecord(t, fmt.Sprintf("Get(%s)", k.Short()), h.get(t, k), want)
}

func (h *harness) wantGone(t *testing.T, k session.Key) {
	t.Helper()
	r, err := h.s.Get(t.Context(), k)
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get(%s) = version %d, %v; want ErrNotFound", k.Short(), r.Version, err)
	}
}

func (h *harness) deleteBy(t *testing.T, sub, sid string) []session.Key {
	t.Helper()
	keys, err := h.s.DeleteBy(t.Context(), sub, sid)
	if err != nil {
		t.Fatalf("DeleteBy(%q, %q): %v", sub, sid, err)
	}
	return keys
}

func (h *harness) list(t *testing.T, sub string) map[session.Key]session.Record {
	t.Helper()
	m, err := h.s.ListBySubject(t.Context(), sub)
	if err != nil {
		t.Fatalf("ListBySubject(%q): %v", sub, err)
	}
	return m
}

// wantList fails unless sub's live records are exactly want.
func (h *harness) wantList(t *testing.T, sub string, want map[session.Key]session.Record) {
	t.Helper()
	got := h.list(t, sub)
	if !sameKeys(got, want) {
		t.Fatalf("ListBySubject(%q) keys = %v, want %v", sub, shortKeys(got), shortKeys(want))
	}
	for k, w := range want {
		checkRecord(t, fmt.Sprintf("ListBySubject(%q)[%s]", sub, k.Short()), got[k], w)
	}
}

// waitGone polls Get until k is gone, failing once deadline has passed.
// Polling rather than one sleep lets backends with coarse expiry pass
// without slowing down the precise ones.
func (h *harness) waitGone(t *testing.T, k session.Key, deadline time.Time) {
	t.Helper()
	for {
		_, err := h.s.Get(t.Context(), k)
		if errors.Is(err, session.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get(%s) while waiting for expiry: %v", k.Short(), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("record %s still live %v after its ttl of %v ended", k.Short(), expirySlack, shortTTL)
		}
		time.Sleep(pollEvery)
	}
}

// checkRecord compares Data byte for byte (nil and empty are equal),
// Subject, SID, and Version when want.Version is not 0.
func checkRecord(t *testing.T, what string, got, want session.Record) {
	t.Helper()
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("%s: Data differs: %s", what, describeDiff(got.Data, want.Data))
	}
	if got.Subject != want.Subject || got.SID != want.SID {
		t.Errorf("%s: Subject, SID = %q, %q; want %q, %q", what, got.Subject, got.SID, want.Subject, want.SID)
	}
	if got.Version == 0 {
		t.Errorf("%s: Version is 0", what)
	} else if want.Version != 0 && got.Version != want.Version {
		t.Errorf("%s: Version = %d, want %d", what, got.Version, want.Version)
	}
}

// describeDiff explains a Data mismatch without dumping 64 KiB into the log.
func describeDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("len %d, want %d; first difference at byte %d", len(got), len(want), i)
}

func sameKeys[V any](a, b map[session.Key]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func shortKeys[V any](m map[session.Key]V) []string {
	out := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		out = append(out, k.Short())
	}
	slices.Sort(out)
	return out
}

// start runs n goroutines that begin fn together, to maximise contention,
// and waits for all of them.
func start(n int, fn func(i int)) {
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			fn(i)
		})
	}
	close(gate)
	wg.Wait()
}

func testGetMissing(t *testing.T, h *harness) {
	h.wantGone(t, h.key())

	k := h.key()
	h.set(t, k, session.Record{Data: []byte("x")}, longTTL)
	if err := h.s.Delete(t.Context(), k); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	h.wantGone(t, k)
}

func testSetGet(t *testing.T, h *harness) {
	tests := []struct {
		name string
		rec  session.Record
	}{
		{"session", session.Record{Data: []byte("sealed session"), Subject: random("sub"), SID: random("sid")}},
		{"subject without sid", session.Record{Data: []byte("sealed session"), Subject: random("sub")}},
		{"not a session", session.Record{Data: []byte("login transaction")}},
		{"empty data", session.Record{Subject: random("sub")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := h.key()
			v := h.set(t, k, tc.rec, longTTL)
			want := tc.rec
			want.Version = v
			h.wantRecord(t, k, want)
			h.wantRecord(t, k, want) // reading does not change the version
		})
	}
}

func testSetChangesVersion(t *testing.T, h *harness) {
	k := h.key()
	sub := random("sub")
	seen := map[uint64]bool{}
	for i := range 3 {
		r := session.Record{Data: fmt.Appendf(nil, "write %d", i), Subject: sub}
		v := h.set(t, k, r, longTTL)
		if seen[v] {
			t.Fatalf("Set #%d returned version %d again", i, v)
		}
		seen[v] = true
		r.Version = v
		h.wantRecord(t, k, r)
	}
}

func testDataByteExact(t *testing.T, h *harness) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	large := randomBytes(64 << 10)
	large[0], large[len(large)-1] = 0x00, 0xff
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"zero byte", []byte{0x00}},
		{"0xff byte", []byte{0xff}},
		{"binary", []byte{0x00, 0xff, 0x00, 0x80, 0x7f, '\n', '\r', 0x00}},
		{"every byte value", all},
		{"invalid utf-8", []byte("\xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80")},
		{"trailing zeros", []byte{'a', 0x00, 0x00, 0x00}},
		{"64 KiB", large},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub := random("sub")
			k := h.key()
			want := session.Record{Data: tc.data, Subject: sub, SID: random("sid")}

			want.Version = h.set(t, k, want, longTTL)
			h.wantRecord(t, k, want)
			h.wantList(t, sub, map[session.Key]session.Record{k: want})

			want.Version = h.cas(t, k, want.Version, want, longTTL)
			h.wantRecord(t, k, want)

			got, err := h.s.Take(t.Context(), k)
			if err != nil {
				t.Fatalf("Take: %v", err)
			}
			checkRecord(t, "Take", got, want)

			created := h.key()
			want.Version = h.cas(t, created, 0, want, longTTL)
			h.wantRecord(t, created, want)
		})
	}
}

func testDataNotAliased(t *testing.T, h *harness) {
	sub := random("sub")
	k := h.key()
	orig := []byte("the stored bytes")
	in := bytes.Clone(orig)
	v := h.set(t, k, session.Record{Data: in, Subject: sub}, longTTL)
	want := session.Record{Data: orig, Subject: sub, Version: v}

	in[0] = 'X' // the caller reuses its buffer after Set
	h.wantRecord(t, k, want)

	got := h.get(t, k)
	if len(got.Data) > 0 {
		got.Data[0] = 'Y' // the caller scribbles on what Get returned
	}
	h.wantRecord(t, k, want)

	listed := h.list(t, sub)
	if r := listed[k]; len(r.Data) > 0 {
		r.Data[0] = 'Z'
	}
	h.wantRecord(t, k, want)

	in = bytes.Clone(orig)
	v = h.cas(t, k, v, session.Record{Data: in, Subject: sub}, longTTL)
	in[0] = 'W'
	want.Version = v
	h.wantRecord(t, k, want)
}

func testCompareAndSwap(t *testing.T, h *harness) {
	k := h.key()
	sub, sid := random("sub"), random("sid")
	v1 := h.set(t, k, session.Record{Data: []byte("one"), Subject: sub, SID: sid}, longTTL)

	r2 := session.Record{Data: []byte("two"), Subject: sub, SID: sid}
	v2 := h.cas(t, k, v1, r2, longTTL)
	if v2 == v1 {
		t.Fatalf("CompareAndSwap returned the old version %d", v1)
	}
	r2.Version = v2
	h.wantRecord(t, k, r2)

	r3 := session.Record{Data: []byte("three"), Subject: sub, SID: sid}
	v3 := h.cas(t, k, v2, r3, longTTL)
	if v3 == v2 || v3 == v1 {
		t.Fatalf("CompareAndSwap returned version %d, already used (v1=%d, v2=%d)", v3, v1, v2)
	}
	r3.Version = v3
	h.wantRecord(t, k, r3)
}

func testCompareAndSwapStale(t *testing.T, h *harness) {
	k := h.key()
	sub := random("sub")
	v1 := h.set(t, k, session.Record{Data: []byte("one"), Subject: sub}, longTTL)
	cur := session.Record{Data: []byte("two"), Subject: sub}
	cur.Version = h.cas(t, k, v1, cur, longTTL)

	tests := []struct {
		name string
		old  uint64
	}{
		{"stale version", v1},
		{"never issued", cur.Version + 1_000_003},
		{"max", ^uint64(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.old == cur.Version {
				t.Skip("version collides with the current one")
			}
			lost := session.Record{Data: []byte("lost update"), Subject: random("sub"), SID: random("sid")}
			v, err := h.s.CompareAndSwap(t.Context(), k, tc.old, lost, longTTL)
			if !errors.Is(err, session.ErrConflict) {
				t.Fatalf("CompareAndSwap(old=%d) = %d, %v; want ErrConflict", tc.old, v, err)
			}
			h.wantRecord(t, k, cur)
			h.wantList(t, sub, map[session.Key]session.Record{k: cur})
			h.wantList(t, lost.Subject, nil)
		})
	}
}

func testCompareAndSwapCreate(t *testing.T, h *harness) {
	k := h.key()
	sub := random("sub")
	want := session.Record{Data: []byte("created"), Subject: sub, SID: random("sid")}
	want.Version = h.cas(t, k, 0, want, longTTL)
	h.wantRecord(t, k, want)
	h.wantList(t, sub, map[session.Key]session.Record{k: want})

	v, err := h.s.CompareAndSwap(t.Context(), k, 0, session.Record{Data: []byte("again"), Subject: sub}, longTTL)
	if !errors.Is(err, session.ErrConflict) {
		t.Fatalf("CompareAndSwap(old=0) over a live record = %d, %v; want ErrConflict", v, err)
	}
	h.wantRecord(t, k, want)

	// Also when the live record was written by Set rather than by CAS.
	k2 := h.key()
	want2 := session.Record{Data: []byte("set")}
	want2.Version = h.set(t, k2, want2, longTTL)
	if _, err := h.s.CompareAndSwap(t.Context(), k2, 0, session.Record{Data: []byte("again")}, longTTL); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("CompareAndSwap(old=0) over a Set record: %v; want ErrConflict", err)
	}
	h.wantRecord(t, k2, want2)
}

func testCompareAndSwapMissing(t *testing.T, h *harness) {
	// A real version from another key, so a backend cannot pass by
	// rejecting implausible numbers.
	other := h.key()
	realVersion := h.set(t, other, session.Record{Data: []byte("other")}, longTTL)

	deleted, taken := h.key(), h.key()
	vDeleted := h.set(t, deleted, session.Record{Data: []byte("deleted")}, longTTL)
	if err := h.s.Delete(t.Context(), deleted); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	vTaken := h.set(t, taken, session.Record{Data: []byte("taken")}, longTTL)
	if _, err := h.s.Take(t.Context(), taken); err != nil {
		t.Fatalf("Take: %v", err)
	}

	tests := []struct {
		name string
		key  session.Key
		old  uint64
	}{
		{"never written", h.key(), 1},
		{"never written, real version", h.key(), realVersion},
		{"deleted", deleted, vDeleted},
		{"taken", taken, vTaken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := h.s.CompareAndSwap(t.Context(), tc.key, tc.old, session.Record{Data: []byte("resurrected")}, longTTL)
			if !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("CompareAndSwap(old=%d) on a missing key = %d, %v; want ErrNotFound", tc.old, v, err)
			}
			h.wantGone(t, tc.key)
		})
	}
}

// testCompareAndSwapNoLostUpdates increments a counter from many goroutines
// by read-modify-write with CAS: any lost update shows in the total.
func testCompareAndSwapNoLostUpdates(t *testing.T, h *harness) {
	const increments = 25 // per worker
	const maxAttempts = 100_000
	k := h.key()
	sub := random("sub")
	first := h.set(t, k, session.Record{Data: binary.BigEndian.AppendUint64(nil, 0), Subject: sub}, longTTL)

	var mu sync.Mutex
	versions := map[uint64]bool{first: true}
	start(workers, func(w int) {
		ctx := t.Context()
		for range increments {
			for attempt := 0; ; attempt++ {
				if attempt == maxAttempts {
					t.Errorf("worker %d: no CAS succeeded in %d attempts", w, maxAttempts)
					return
				}
				r, err := h.s.Get(ctx, k)
				if err != nil {
					t.Errorf("worker %d: Get: %v", w, err)
					return
				}
				if len(r.Data) != 8 {
					t.Errorf("worker %d: counter has %d bytes", w, len(r.Data))
					return
				}
				n := binary.BigEndian.Uint64(r.Data)
				next := session.Record{Data: binary.BigEndian.AppendUint64(nil, n+1), Subject: sub}
				v, err := h.s.CompareAndSwap(ctx, k, r.Version, next, longTTL)
				if errors.Is(err, session.ErrConflict) {
					continue
				}
				if err != nil {
					t.Errorf("worker %d: CompareAndSwap: %v", w, err)
					return
				}
				mu.Lock()
				dup := versions[v]
				versions[v] = true
				mu.Unlock()
				if dup {
					t.Errorf("worker %d: CompareAndSwap returned version %d twice", w, v)
				}
				break
			}
		}
	})
	if t.Failed() {
		return
	}
	r := h.get(t, k)
	if got, want := binary.BigEndian.Uint64(r.Data), uint64(workers*increments); got != want {
		t.Fatalf("counter = %d after %d increments: %d updates lost", got, want, want-got)
	}
	if !versions[r.Version] {
		t.Errorf("final version %d was never returned by a write", r.Version)
	}
}

func testCompareAndSwapCreateRace(t *testing.T, h *harness) {
	for round := range rounds {
		k := h.key()
		var mu sync.Mutex
		winners := map[int]uint64{}
		start(workers, func(w int) {
			v, err := h.s.CompareAndSwap(t.Context(), k, 0, session.Record{Data: fmt.Appendf(nil, "worker %d", w)}, longTTL)
			switch {
			case err == nil:
				mu.Lock()
				winners[w] = v
				mu.Unlock()
			case !errors.Is(err, session.ErrConflict):
				t.Errorf("round %d, worker %d: CompareAndSwap(old=0) = %v; want nil or ErrConflict", round, w, err)
			}
		})
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d concurrent CompareAndSwap(old=0) won, want exactly 1", round, len(winners), workers)
		}
		for w, v := range winners {
			h.wantRecord(t, k, session.Record{Data: fmt.Appendf(nil, "worker %d", w), Version: v})
		}
	}
}

func testTake(t *testing.T, h *harness) {
	k := h.key()
	sub, sid := random("sub"), random("sid")
	want := session.Record{Data: []byte("login transaction"), Subject: sub, SID: sid}
	want.Version = h.set(t, k, want, longTTL)

	got, err := h.s.Take(t.Context(), k)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	checkRecord(t, "Take", got, want)
	h.wantGone(t, k)

	if _, err := h.s.Take(t.Context(), k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("second Take = %v; want ErrNotFound", err)
	}
	if _, err := h.s.Take(t.Context(), h.key()); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Take of a never written key = %v; want ErrNotFound", err)
	}
	// The indexes forget the taken record.
	h.wantList(t, sub, nil)
	if n := len(h.deleteBy(t, sub, "")); n != 0 {
		t.Fatalf("DeleteBy(subject of a taken record) = %d, want 0", n)
	}
	if n := len(h.deleteBy(t, "", sid)); n != 0 {
		t.Fatalf("DeleteBy(sid of a taken record) = %d, want 0", n)
	}
	// The key is free again.
	h.cas(t, k, 0, session.Record{Data: []byte("new")}, longTTL)
}

func testTakeRace(t *testing.T, h *harness) {
	for round := range rounds {
		k := h.key()
		want := session.Record{Data: fmt.Appendf(nil, "single use %d", round)}
		want.Version = h.set(t, k, want, longTTL)
		var mu sync.Mutex
		var got []session.Record
		start(workers, func(w int) {
			r, err := h.s.Take(t.Context(), k)
			switch {
			case err == nil:
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
			case !errors.Is(err, session.ErrNotFound):
				t.Errorf("round %d, worker %d: Take = %v; want nil or ErrNotFound", round, w, err)
			}
		})
		if len(got) != 1 {
			t.Fatalf("round %d: %d of %d concurrent Takes got the record, want exactly 1", round, len(got), workers)
		}
		checkRecord(t, "Take", got[0], want)
		h.wantGone(t, k)
	}
}

func testDelete(t *testing.T, h *harness) {
	if err := h.s.Delete(t.Context(), h.key()); err != nil {
		t.Fatalf("Delete of a never written key = %v, want nil", err)
	}

	k := h.key()
	sub, sid := random("sub"), random("sid")
	h.set(t, k, session.Record{Data: []byte("x"), Subject: sub, SID: sid}, longTTL)
	for i := range 2 {
		if err := h.s.Delete(t.Context(), k); err != nil {
			t.Fatalf("Delete #%d = %v, want nil", i+1, err)
		}
		h.wantGone(t, k)
	}
	h.wantList(t, sub, nil)
	if n := len(h.deleteBy(t, "", sid)); n != 0 {
		t.Fatalf("DeleteBy(sid of a deleted record) = %d, want 0", n)
	}
}

func testDeleteBy(t *testing.T, h *harness) {
	// Records are named subject/sid; "-" is empty, a trailing ' marks a
	// second record with the same subject and sid.
	names := []string{"A/s1", "A/s2", "A/s1'", "A/-", "B/s3", "B/s1", "-/-"}
	tests := []struct {
		name     string
		sub, sid string // symbolic: A, B, s1..s3, unknown or ""
		removed  []string
	}{
		{"subject", "A", "", []string{"A/s1", "A/s2", "A/s1'", "A/-"}},
		{"other subject", "B", "", []string{"B/s3", "B/s1"}},
		{"sid", "", "s1", []string{"A/s1", "A/s1'", "B/s1"}},
		{"sid of one subject", "", "s2", []string{"A/s2"}},
		{"subject and sid", "A", "s1", []string{"A/s1", "A/s1'"}},
		{"subject and its other sid", "B", "s3", []string{"B/s3"}},
		{"subject and sid shared with another subject", "B", "s1", []string{"B/s1"}},
		{"subject and sid it does not have", "B", "s2", nil},
		{"subject and sid of another subject", "A", "s3", nil},
		{"unknown subject", "unknown", "", nil},
		{"unknown sid", "", "unknown", nil},
		{"unknown subject, known sid", "unknown", "s1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Fresh random values per case: cases never see each other.
			val := map[string]string{"-": "", "": ""}
			for _, n := range []string{"A", "B", "s1", "s2", "s3", "unknown"} {
				val[n] = random(n)
			}
			keys := map[string]session.Key{}
			recs := map[string]session.Record{}
			for _, name := range names {
				sub, sid, _ := strings.Cut(name, "/")
				sid = strings.TrimSuffix(sid, "'") // A/s1' is a second record of A/s1
				r := session.Record{Data: []byte(name), Subject: val[sub], SID: val[sid]}
				keys[name] = h.key()
				r.Version = h.set(t, keys[name], r, longTTL)
				recs[name] = r
			}

			var want []session.Key
			for _, name := range tc.removed {
				want = append(want, keys[name])
			}
			got := h.deleteBy(t, val[tc.sub], val[tc.sid])
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("DeleteBy(%s, %s) returned %d keys %v, want the %d of %v", tc.sub, tc.sid, len(got), got, len(want), tc.removed)
			}
			for _, name := range names {
				if slices.Contains(tc.removed, name) {
					h.wantGone(t, keys[name])
				} else {
					h.wantRecord(t, keys[name], recs[name])
				}
			}
			for _, sub := range []string{"A", "B"} {
				want := map[session.Key]session.Record{}
				for _, name := range names {
					if s, _, _ := strings.Cut(name, "/"); s == sub && !slices.Contains(tc.removed, name) {
						want[keys[name]] = recs[name]
					}
				}
				h.wantList(t, val[sub], want)
			}
			if again := h.deleteBy(t, val[tc.sub], val[tc.sid]); len(again) != 0 {
				t.Errorf("repeated DeleteBy(%s, %s) = %v, want none", tc.sub, tc.sid, again)
			}
		})
	}
}

func testDeleteByEmptySelector(t *testing.T, h *harness) {
	k := h.key()
	want := session.Record{Data: []byte("x"), Subject: random("sub"), SID: random("sid")}
	want.Version = h.set(t, k, want, longTTL)
	other := h.key()
	wantOther := session.Record{Data: []byte("not a session")}
	wantOther.Version = h.set(t, other, wantOther, longTTL)

	removed, err := h.s.DeleteBy(t.Context(), "", "")
	if !errors.Is(err, session.ErrEmptySelector) {
		t.Fatalf(`DeleteBy("", "") = %v, %v; want ErrEmptySelector`, removed, err)
	}
	if len(removed) != 0 {
		t.Errorf(`DeleteBy("", "") reported removals with its error: %v`, removed)
	}
	h.wantRecord(t, k, want)
	h.wantRecord(t, other, wantOther)
}

// testDeleteByIgnoresEmptySubject checks that records without a Subject,
// which are not sessions, are never removed by DeleteBy, even when they
// carry a SID.
func testDeleteByIgnoresEmptySubject(t *testing.T, h *harness) {
	sid := random("sid")
	plain, withSID := h.key(), h.key()
	wantPlain := session.Record{Data: []byte("login transaction")}
	wantPlain.Version = h.set(t, plain, wantPlain, longTTL)
	wantSID := session.Record{Data: []byte("not a session"), SID: sid}
	wantSID.Version = h.set(t, withSID, wantSID, longTTL)

	if n := len(h.deleteBy(t, "", sid)); n != 0 {
		t.Errorf("DeleteBy(\"\", sid) removed %d records without a subject, want 0", n)
	}
	if n := len(h.deleteBy(t, random("sub"), "")); n != 0 {
		t.Errorf("DeleteBy(unknown subject) = %d, want 0", n)
	}
	h.wantRecord(t, plain, wantPlain)
	h.wantRecord(t, withSID, wantSID)

	// Lenient: an error or an empty list, but never non-session records.
	if m, err := h.s.ListBySubject(t.Context(), ""); err == nil && len(m) != 0 {
		t.Errorf(`ListBySubject("") returned %d records without a subject`, len(m))
	}
}

func testListBySubject(t *testing.T, h *harness) {
	subA, subB := random("sub"), random("sub")
	want := map[session.Key]session.Record{}
	for i, sid := range []string{random("sid"), random("sid"), ""} {
		k := h.key()
		r := session.Record{Data: fmt.Appendf(nil, "session %d\x00\xff", i), Subject: subA, SID: sid}
		r.Version = h.set(t, k, r, longTTL)
		want[k] = r
	}
	kB := h.key()
	rB := session.Record{Data: []byte("B"), Subject: subB, SID: random("sid")}
	rB.Version = h.set(t, kB, rB, longTTL)
	h.set(t, h.key(), session.Record{Data: []byte("not a session")}, longTTL)

	h.wantList(t, subA, want)
	h.wantList(t, subB, map[session.Key]session.Record{kB: rB})
	if m := h.list(t, random("sub")); len(m) != 0 {
		t.Fatalf("ListBySubject(unknown) returned %d records", len(m))
	}

	// Updates and deletions show.
	ks := slices.Collect(maps.Keys(want))
	upd := want[ks[0]]
	upd.Data = []byte("updated")
	upd.Version = h.cas(t, ks[0], upd.Version, upd, longTTL)
	want[ks[0]] = upd
	if err := h.s.Delete(t.Context(), ks[1]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	delete(want, ks[1])
	h.wantList(t, subA, want)
}

func testIndexFollowsWrites(t *testing.T, h *harness) {
	// Subjects and SIDs are symbolic ("A", "s1", "" ...) and made random
	// per case.
	tests := []struct {
		name     string
		write    string // "Set" or "CAS"
		from, to session.Record
	}{
		{"Set moves subject and sid", "Set", session.Record{Subject: "A", SID: "s1"}, session.Record{Subject: "B", SID: "s2"}},
		{"CAS moves subject and sid", "CAS", session.Record{Subject: "A", SID: "s1"}, session.Record{Subject: "B", SID: "s2"}},
		{"CAS moves subject only", "CAS", session.Record{Subject: "A", SID: "s1"}, session.Record{Subject: "B", SID: "s1"}},
		{"CAS changes sid only", "CAS", session.Record{Subject: "A", SID: "s1"}, session.Record{Subject: "A", SID: "s2"}},
		{"CAS drops sid", "CAS", session.Record{Subject: "A", SID: "s1"}, session.Record{Subject: "A"}},
		{"CAS clears subject", "CAS", session.Record{Subject: "A", SID: "s1"}, session.Record{}},
		{"Set clears subject", "Set", session.Record{Subject: "A", SID: "s1"}, session.Record{}},
		{"Set adds subject", "Set", session.Record{}, session.Record{Subject: "A", SID: "s1"}},
		{"CAS adds subject", "CAS", session.Record{}, session.Record{Subject: "A", SID: "s1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			val := map[string]string{"": ""}
			for _, n := range []string{"A", "B", "s1", "s2"} {
				val[n] = random(n)
			}
			from := session.Record{Data: []byte("before"), Subject: val[tc.from.Subject], SID: val[tc.from.SID]}
			to := session.Record{Data: []byte("after"), Subject: val[tc.to.Subject], SID: val[tc.to.SID]}
			k := h.key()
			v := h.set(t, k, from, longTTL)
			if tc.write == "Set" {
				to.Version = h.set(t, k, to, longTTL)
			} else {
				to.Version = h.cas(t, k, v, to, longTTL)
			}
			h.wantRecord(t, k, to)

			if from.Subject != "" && from.Subject != to.Subject {
				h.wantList(t, from.Subject, nil)
				if n := len(h.deleteBy(t, from.Subject, "")); n != 0 {
					t.Fatalf("DeleteBy(old subject) = %d, want 0", n)
				}
			}
			if from.SID != "" && from.SID != to.SID {
				if n := len(h.deleteBy(t, "", from.SID)); n != 0 {
					t.Fatalf("DeleteBy(old sid) = %d, want 0", n)
				}
			}
			h.wantRecord(t, k, to) // none of that touched it

			if to.Subject == "" {
				return
			}
			h.wantList(t, to.Subject, map[session.Key]session.Record{k: to})
			if to.SID != "" {
				if n := len(h.deleteBy(t, "", to.SID)); n != 1 {
					t.Fatalf("DeleteBy(new sid) = %d, want 1", n)
				}
			} else if n := len(h.deleteBy(t, to.Subject, "")); n != 1 {
				t.Fatalf("DeleteBy(new subject) = %d, want 1", n)
			}
			h.wantGone(t, k)
		})
	}
}

func testPing(t *testing.T, h *harness) {
	if err := h.s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// testNonPositiveTTL: a write with a TTL of zero or less is an error and
// writes nothing; it is never a record that lives forever.
func testNonPositiveTTL(t *testing.T, h *harness) {
	k := h.key()
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := h.s.Set(t.Context(), k, session.Record{Data: []byte("x"), Subject: random("sub")}, ttl); err == nil {
			t.Errorf("Set with ttl %v succeeded", ttl)
		}
		if _, err := h.s.CompareAndSwap(t.Context(), k, 0, session.Record{Data: []byte("x")}, ttl); err == nil {
			t.Errorf("CompareAndSwap with ttl %v succeeded", ttl)
		}
	}
	h.wantGone(t, k)
}

// testCancelledContext only requires that operations on a cancelled context
// return: some backends check ctx before doing anything, others only when
// they would block, and both are fine.
func testCancelledContext(t *testing.T, h *harness) {
	k := h.key()
	sub := random("sub")
	v := h.set(t, k, session.Record{Data: []byte("x"), Subject: sub}, longTTL)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	ops := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := h.s.Get(ctx, k); return err }},
		{"Set", func() error { _, err := h.s.Set(ctx, h.key(), session.Record{Data: []byte("x")}, longTTL); return err }},
		{"CompareAndSwap", func() error {
			_, err := h.s.CompareAndSwap(ctx, k, v, session.Record{Data: []byte("y"), Subject: sub}, longTTL)
			return err
		}},
		{"Take", func() error { _, err := h.s.Take(ctx, h.key()); return err }},
		{"Delete", func() error { return h.s.Delete(ctx, h.key()) }},
		{"DeleteBy", func() error { _, err := h.s.DeleteBy(ctx, random("sub"), ""); return err }},
		{"ListBySubject", func() error { _, err := h.s.ListBySubject(ctx, sub); return err }},
		{"Ping", func() error { return h.s.Ping(ctx) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- op.call() }()
			select {
			case err := <-done:
				if err == nil {
					t.Logf("%s with a cancelled context succeeded (allowed)", op.name)
				}
			case <-time.After(hangLimit):
				t.Fatalf("%s with a cancelled context did not return within %v", op.name, hangLimit)
			}
		})
	}
}

// testTTLExpiry checks that an expired record is gone for every operation.
// Each operation gets its own record, so that one operation cleaning up an
// expired record cannot hide another's bug. A witness record written last,
// with the same ttl, expires last; once Get no longer sees it, every other
// short-lived record must be gone too.
func testTTLExpiry(t *testing.T, h *harness) {
	var (
		kGet, kCAS, kCreate, kTake, kShortened, kReuse = h.key(), h.key(), h.key(), h.key(), h.key(), h.key()
		kDelShort, kDelLong, kListShort, kListLong     = h.key(), h.key(), h.key(), h.key()
		witness                                        = h.key()

		subDel, subList, subReuse, subNew = random("sub"), random("sub"), random("sub"), random("sub")
		sidDel, sidList                   = random("sid"), random("sid")
	)
	rec := func(sub, sid string) session.Record {
		return session.Record{Data: []byte("short-lived"), Subject: sub, SID: sid}
	}
	short := map[session.Key]session.Record{
		kGet:       rec(random("sub"), random("sid")),
		kCAS:       rec(random("sub"), ""),
		kCreate:    rec(random("sub"), ""),
		kTake:      rec(random("sub"), ""),
		kReuse:     rec(subReuse, ""),
		kDelShort:  rec(subDel, sidDel),
		kListShort: rec(subList, sidList),
	}
	h.set(t, kShortened, rec("", ""), longTTL) // a write replaces the ttl, even with a shorter one

	begin := time.Now()
	versions := map[session.Key]uint64{}
	for k, r := range short {
		versions[k] = h.set(t, k, r, shortTTL)
	}
	versions[kShortened] = h.set(t, kShortened, rec("", ""), shortTTL)
	long := session.Record{Data: []byte("long-lived"), Subject: subDel}
	long.Version = h.set(t, kDelLong, long, longTTL)
	listLong := session.Record{Data: []byte("long-lived"), Subject: subList}
	listLong.Version = h.set(t, kListLong, listLong, longTTL)
	h.set(t, witness, rec("", ""), shortTTL)

	// Not expired early.
	if time.Since(begin) < shortTTL/2 {
		for k, r := range short {
			r.Version = versions[k]
			h.wantRecord(t, k, r)
		}
	}

	h.waitGone(t, witness, begin.Add(shortTTL+expirySlack))

	t.Run("Get", func(t *testing.T) {
		h.wantGone(t, kGet)
		h.wantGone(t, kShortened)
	})
	t.Run("CompareAndSwap", func(t *testing.T) {
		v, err := h.s.CompareAndSwap(t.Context(), kCAS, versions[kCAS], rec("", ""), longTTL)
		if !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("CompareAndSwap on an expired record = %d, %v; want ErrNotFound", v, err)
		}
		h.wantGone(t, kCAS)
	})
	t.Run("CompareAndSwapCreate", func(t *testing.T) {
		want := session.Record{Data: []byte("created over expired")}
		want.Version = h.cas(t, kCreate, 0, want, longTTL)
		h.wantRecord(t, kCreate, want)
	})
	t.Run("Take", func(t *testing.T) {
		if r, err := h.s.Take(t.Context(), kTake); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Take of an expired record = version %d, %v; want ErrNotFound", r.Version, err)
		}
	})
	t.Run("DeleteBy", func(t *testing.T) {
		if n := len(h.deleteBy(t, "", sidDel)); n != 0 {
			t.Errorf("DeleteBy(sid of an expired record) = %d, want 0", n)
		}
		if n := len(h.deleteBy(t, subDel, "")); n != 1 {
			t.Errorf("DeleteBy(subject with one live and one expired record) = %d, want 1", n)
		}
		h.wantGone(t, kDelLong)
	})
	t.Run("ListBySubject", func(t *testing.T) {
		h.wantList(t, subList, map[session.Key]session.Record{kListLong: listLong})
	})
	t.Run("SetOverExpired", func(t *testing.T) {
		want := session.Record{Data: []byte("new"), Subject: subNew}
		want.Version = h.set(t, kReuse, want, longTTL)
		h.wantList(t, subReuse, nil)
		h.wantList(t, subNew, map[session.Key]session.Record{kReuse: want})
	})
}

// testTTLExtend checks that Set and CompareAndSwap replace the ttl, so that
// a session in use stays alive.
func testTTLExtend(t *testing.T, h *harness) {
	sub := random("sub")
	kSet, kCAS, witness := h.key(), h.key(), h.key()
	begin := time.Now()
	h.set(t, kSet, session.Record{Data: []byte("set"), Subject: sub}, shortTTL)
	vCAS := h.set(t, kCAS, session.Record{Data: []byte("cas"), Subject: sub}, shortTTL)
	h.set(t, witness, session.Record{Data: []byte("witness")}, shortTTL)

	// Half-way through its life the record is still there: the ttl is not
	// cut short by a unit mix-up.
	time.Sleep(time.Until(begin.Add(shortTTL / 2)))
	if time.Since(begin) < shortTTL*3/4 {
		h.get(t, kSet)
		h.get(t, kCAS)
	}
	wantSet := session.Record{Data: []byte("set again"), Subject: sub}
	wantSet.Version = h.set(t, kSet, wantSet, longTTL)
	wantCAS := session.Record{Data: []byte("cas again"), Subject: sub}
	wantCAS.Version = h.cas(t, kCAS, vCAS, wantCAS, longTTL)

	h.waitGone(t, witness, begin.Add(shortTTL+expirySlack))
	h.wantRecord(t, kSet, wantSet)
	h.wantRecord(t, kCAS, wantCAS)
	h.wantList(t, sub, map[session.Key]session.Record{kSet: wantSet, kCAS: wantCAS})
}

// RunBenchmarks benchmarks s with the same workload for every backend: Get
// from many goroutines, Set, and read-free CompareAndSwap on one key. Records
// are 1 KiB, about a sealed session with its tokens.
func RunBenchmarks(b *testing.B, s session.Store) {
	const nKeys = 1024
	data := randomBytes(1 << 10)
	newKeys := func(b *testing.B) []session.Key {
		keys := make([]session.Key, nKeys)
		for i := range keys {
			keys[i] = session.NewID().Key()
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, k := range keys {
				_ = s.Delete(ctx, k)
			}
		})
		return keys
	}
	rec := session.Record{Data: data, Subject: random("sub"), SID: random("sid")}

	b.Run("Get", func(b *testing.B) {
		keys := newKeys(b)
		for _, k := range keys {
			if _, err := s.Set(b.Context(), k, rec, time.Hour); err != nil {
				b.Fatalf("Set: %v", err)
			}
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		b.ResetTimer()
		var mu sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			i := next * 7919 // goroutines start far apart
			next++
			mu.Unlock()
			for pb.Next() {
				if _, err := s.Get(b.Context(), keys[i%nKeys]); err != nil {
					b.Errorf("Get: %v", err)
					return
				}
				i++
			}
		})
	})

	b.Run("Set", func(b *testing.B) {
		keys := newKeys(b)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.Set(b.Context(), keys[i%nKeys], rec, time.Hour); err != nil {
				b.Fatalf("Set: %v", err)
			}
			i++
		}
	})

	b.Run("CAS", func(b *testing.B) {
		k := newKeys(b)[0]
		v, err := s.Set(b.Context(), k, rec, time.Hour)
		if err != nil {
			b.Fatalf("Set: %v", err)
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if v, err = s.CompareAndSwap(b.Context(), k, v, rec, time.Hour); err != nil {
				b.Fatalf("CompareAndSwap: %v", err)
			}
		}
	})
}

// Count turns DeleteBy's results into a count, for tests that only count.
func Count(keys []session.Key, err error) (int, error) { return len(keys), err }
