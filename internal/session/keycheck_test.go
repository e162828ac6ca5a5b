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
		keys []string
		ok   bool
	}{
		{[]string{oldKey}, true},            // first start writes the canary
		{[]string{oldKey, newKey}, true},    // step 1: the new key is added second
		{[]string{newKey, oldKey}, true},    // step 2: it seals; the canary is resealed
		{[]string{oldKey}, false},           // a replica left behind cannot read new sessions
		{[]string{newKey}, true},            // step 3: the old key is dropped
		{[]string{session.NewKey()}, false}, // a wrong key
	}
	for i, s := range steps {
		err := session.CheckKeys(ctx, store, codec(t, s.keys...))
		if s.ok != (err == nil) || (!s.ok && !errors.Is(err, session.ErrWrongKeys)) {
			t.Errorf("step %d: err = %v, want ok=%v", i, err, s.ok)
		}
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
	l, err := manager(right).Create(ctx, w, session.Session{Subject: "alice"}) // proves right, writes the canary
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
