package session

import (
	"bytes"
	"errors"
	"testing"
)

func mustCodec(t testing.TB, keys ...string) *Codec {
	t.Helper()
	var raw [][]byte
	for _, k := range keys {
		b, err := ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	c, err := NewCodec(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCodecRotation(t *testing.T) {
	oldKey, newKey := NewKey(), NewKey()
	key := NewID().Key()
	plain := []byte(`{"tokens":{"at":"secret"}}`)

	sealedOld := mustCodec(t, oldKey).Seal(key, plain)
	if bytes.Contains(sealedOld, []byte("secret")) {
		t.Fatal("sealed data contains the plaintext")
	}
	// Step 1 of a rotation: the new key is added second; old records open.
	for name, c := range map[string]*Codec{
		"old only":     mustCodec(t, oldKey),
		"old then new": mustCodec(t, oldKey, newKey),
		"new then old": mustCodec(t, newKey, oldKey),
	} {
		got, err := c.Open(key, sealedOld)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: Open = %q, %v", name, got, err)
		}
	}
	// Step 3: the old key is retired; what it sealed no longer opens.
	if _, err := mustCodec(t, newKey).Open(key, sealedOld); !errors.Is(err, ErrUnsealable) {
		t.Errorf("retired key: err = %v, want ErrUnsealable", err)
	}
	// New records are sealed with the first key.
	sealedNew := mustCodec(t, newKey, oldKey).Seal(key, plain)
	if _, err := mustCodec(t, newKey).Open(key, sealedNew); err != nil {
		t.Errorf("new key: %v", err)
	}
}

func TestCodecRejects(t *testing.T) {
	c := mustCodec(t, NewKey())
	key := NewID().Key()
	sealed := c.Seal(key, []byte("hello"))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	cases := map[string]struct {
		key  Key
		data []byte
	}{
		"empty":         {key, nil},
		"short":         {key, sealed[:3]},
		"truncated":     {key, sealed[:len(sealed)-1]},
		"bit flip":      {key, flipped},
		"other key":     {NewID().Key(), sealed},
		"wrong version": {key, append([]byte{9}, sealed[1:]...)},
		"foreign":       {key, mustCodec(t, NewKey()).Seal(key, []byte("hello"))},
	}
	for name, tc := range cases {
		if _, err := c.Open(tc.key, tc.data); !errors.Is(err, ErrUnsealable) {
			t.Errorf("%s: err = %v, want ErrUnsealable", name, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, bad := range []string{"", "not base64!", "AAAA", NewKey() + "AAAA"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	if _, err := NewCodec(make([]byte, 16)); err == nil {
		t.Error("NewCodec accepted a 16-byte key")
	}
}

func FuzzCodecOpen(f *testing.F) {
	c := mustCodec(f, NewKey())
	key := NewID().Key()
	f.Add(c.Seal(key, []byte("seed")))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c.Open(key, data) // must not panic
	})
}

func FuzzParseID(f *testing.F) {
	f.Add(NewID().Encode())
	f.Add("")
	f.Add("====")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if id.Encode() != s {
			t.Fatalf("ParseID(%q) accepted a non-canonical spelling", s)
		}
	})
}
