package session_test

import (
	"context"
	"errors"
	"testing"

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
