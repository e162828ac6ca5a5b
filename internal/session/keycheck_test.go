package session_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

func codec(t *testing.T, keys ...string) *session.Codec {
	var raw [][]byte
	for _, k := range keys {
		b, _ := session.ParseKey(k)
		raw = append(raw, b)
	}
	c, err := session.NewCodec(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckKeysFollowsRotation(t *testing.T) {
	ctx := context.Background()
	store := memory.New(memory.Options{})
	defer store.Close()
	oldKey, newKey := session.NewKey(), session.NewKey()
	steps := []struct {
		keys  []string
		login bool // a login with these keys (the manager marks the store)
		ok    bool
	}{
		{[]string{session.NewKey()}, false, true}, // a run without a login leaves no trace
		{[]string{oldKey}, true, true},            // the first login writes the marker
		{[]string{oldKey, newKey}, false, true},   // step 1: the new key is added second
		{[]string{newKey, oldKey}, true, true},    // step 2: it seals; a login reseals the marker
		{[]string{oldKey}, false, false},          // a replica left behind cannot read new sessions
		{[]string{newKey}, false, true},           // step 3: the old key is dropped
		{[]string{session.NewKey()}, false, false},
	}
	for i, s := range steps {
		c := codec(t, s.keys...)
		err := session.CheckKeys(ctx, store, c)
		if s.ok != (err == nil) || (!s.ok && !errors.Is(err, session.ErrWrongKeys)) {
			t.Errorf("step %d: err = %v, want ok=%v", i, err, s.ok)
		}
		if s.login {
			m := session.NewManager(session.ManagerOptions{Store: store, Codec: c, IdleTimeout: time.Hour,
				AbsoluteTimeout: 2 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
			if _, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Recovery when no session needs keeping: forget the marker.
	if err := session.ForgetKeys(ctx, store); err != nil {
		t.Fatal(err)
	}
	if err := session.CheckKeys(ctx, store, codec(t, session.NewKey())); err != nil {
		t.Errorf("after ForgetKeys: %v", err)
	}
}

// CheckKeys only reads; the marker a login writes lives longer than any
// session sealed before it, and expires with them, so a store whose
// sessions have all ended takes any key again.
func TestKeyMarkerOutlivesSessionsAndNoMore(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	store := memory.New(memory.Options{Now: clock})
	defer store.Close()
	key := session.NewKey()
	if err := session.CheckKeys(ctx, store, codec(t, key)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, session.KeyOf("keycheck", []byte("v1"))); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("CheckKeys wrote to the store: %v", err)
	}
	m := session.NewManager(session.ManagerOptions{Store: store, Codec: codec(t, key), IdleTimeout: time.Hour,
		AbsoluteTimeout: 2 * time.Hour, Logger: slog.New(slog.DiscardHandler), Now: clock})
	for range 3 { // logins within a minute write the marker once
		if _, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice"}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(20 * time.Second)
	}
	now = now.Add(2 * time.Hour) // the last session's absolute timeout has just passed...
	if err := session.CheckKeys(ctx, store, codec(t, session.NewKey())); !errors.Is(err, session.ErrWrongKeys) {
		t.Fatalf("marker gone before the last session could end: %v", err)
	}
	now = now.Add(3 * time.Minute) // ...and then the marker's margin
	if err := session.CheckKeys(ctx, store, codec(t, session.NewKey())); err != nil {
		t.Fatalf("no session can be live, yet a new key is refused: %v", err)
	}
}

// With the key check pending (the store was down at startup), a record
// that does not open is an outage until the keys are proven: wrong keys
// give ErrUnavailable and ErrWrongKeys for loads and logins alike, the
// record stays for the right keys, and once a key ring that opens the
// store is in place an unreadable record is simply no session.
func TestKeysPending(t *testing.T) {
	ctx := context.Background()
	store := memory.New(memory.Options{})
	defer store.Close()
	right := session.NewKey()
	manager := func(keys ...string) *session.Manager {
		return session.NewManager(session.ManagerOptions{Store: store, Codec: codec(t, keys...),
			IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour, Logger: slog.New(slog.DiscardHandler), KeysPending: true})
	}
	w := httptest.NewRecorder()
	l, err := manager(right).Create(ctx, w, session.Session{Subject: "alice"}) // proves right, writes the marker
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(w.Result().Cookies()[0])

	m := manager(session.NewKey())
	for i := range 2 { // the second answer is the remembered one
		if _, err := m.Load(ctx, req); !errors.Is(err, session.ErrUnavailable) || !errors.Is(err, session.ErrWrongKeys) {
			t.Fatalf("load %d with wrong keys: %v", i, err)
		}
	}
	if _, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "bob"}); !errors.Is(err, session.ErrWrongKeys) {
		t.Fatalf("login with wrong keys: %v", err)
	}
	if _, err := store.Get(ctx, l.Key); err != nil {
		t.Fatalf("the session is gone: %v", err)
	}

	m.SetCodec(codec(t, session.NewKey(), right), true) // a reload adds the key in use
	if got, err := m.Load(ctx, req); err != nil || got.Subject != "alice" {
		t.Fatalf("after the reload: %v", err)
	}
	if _, err := store.Set(ctx, l.Key, session.Record{Data: []byte("not sealed"), Subject: "alice"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, req); err != session.ErrNoSession {
		t.Fatalf("unreadable record with proven keys: %v, want ErrNoSession", err)
	}
}

// noWrites is a Store that fails the test on any write.
type noWrites struct {
	session.Store
	t *testing.T
}

func (s noWrites) Set(context.Context, session.Key, session.Record, time.Duration) (uint64, error) {
	s.t.Error("Set")
	return 0, nil
}
func (s noWrites) CompareAndSwap(context.Context, session.Key, uint64, session.Record, time.Duration) (uint64, error) {
	s.t.Error("CompareAndSwap")
	return 0, nil
}
func (s noWrites) Take(context.Context, session.Key) (session.Record, error) {
	s.t.Error("Take")
	return session.Record{}, nil
}
func (s noWrites) Delete(context.Context, session.Key) error { s.t.Error("Delete"); return nil }
func (s noWrites) DeleteBy(context.Context, string, string) ([]session.Key, error) {
	s.t.Error("DeleteBy")
	return nil, nil
}

// CheckKeys never writes, whether the marker is absent, opens, or not.
func TestCheckKeysNeverWrites(t *testing.T) {
	ctx := context.Background()
	store := memory.New(memory.Options{})
	defer store.Close()
	key := session.NewKey()
	ro := noWrites{store, t}
	for _, k := range []string{key, key, session.NewKey()} {
		session.CheckKeys(ctx, ro, codec(t, k))
		if err := session.MarkKeys(ctx, store, codec(t, key), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
}
