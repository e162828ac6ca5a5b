package redisstore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

func TestEncodeDecode(t *testing.T) {
	for _, r := range []session.Record{
		{},
		{Data: []byte("x")},
		{Subject: "alice"},
		{Subject: "alice", SID: "s1", Data: []byte{0, 0xff, 0, '\n'}},
		{SID: "sid without subject", Data: bytes.Repeat([]byte{7}, 1<<16)},
		{Subject: "ü\x00\xff", SID: "\x00"},
	} {
		for _, v := range []uint64{1, 1 << 62, 1<<63 - 1, ^uint64(0)} {
			b, err := encode(v, r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decode(string(b))
			if err != nil {
				t.Fatalf("decode(encode(%d, %+v)): %v", v, r, err)
			}
			if got.Version != v || got.Subject != r.Subject || got.SID != r.SID || !bytes.Equal(got.Data, r.Data) {
				t.Fatalf("round trip of %+v, version %d = %+v", r, v, got)
			}
			if len(r.Data) == 0 && got.Data != nil {
				t.Fatalf("empty Data decoded as %#v, want nil", got.Data)
			}
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	valid, _ := encode(42, session.Record{Subject: "sub", SID: "sid", Data: []byte("data")})
	tests := map[string]string{
		"empty":            "",
		"short":            string(valid[:headerSize-1]),
		"wrong format":     "\x02" + string(valid[1:]),
		"zero version":     string(valid[:1]) + "\x00\x00\x00\x00\x00\x00\x00\x00" + string(valid[9:]),
		"subject too long": string(valid[:9]) + "\x00\x00\x01\x00" + string(valid[13:]),
		"sid too long":     string(valid[:13]) + "\xff\xff\xff\xff" + string(valid[17:]),
		"lengths overflow": string(valid[:9]) + "\xff\xff\xff\xff\xff\xff\xff\xff" + string(valid[17:]),
		"truncated":        string(valid[:headerSize+4]),
		"text":             "this is not a record at all",
	}
	for name, s := range tests {
		if r, err := decode(s); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decode = %+v, %v; want errCorrupt", name, r, err)
		}
	}
}

func TestDecodedDataIsACopy(t *testing.T) {
	b, _ := encode(1, session.Record{Data: []byte("abc")})
	s := string(b)
	r, _ := decode(s)
	r.Data[0] = 'X'
	if again, _ := decode(s); string(again.Data) != "abc" {
		t.Fatalf("writing to decoded Data changed the source: %q", again.Data)
	}
}

// FuzzDecode checks that decode never panics on stored bytes, and that what
// it accepts is exactly what encode produces.
func FuzzDecode(f *testing.F) {
	for _, r := range []session.Record{{}, {Subject: "a", SID: "b", Data: []byte("c")}, {Data: []byte{0, 1, 2}}} {
		b, _ := encode(7, r)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(string(b))
		if err != nil {
			return
		}
		if r.Version == 0 {
			t.Fatal("decoded version 0")
		}
		again, err := encode(r.Version, r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("encode(decode(b)) = %x, want %x", again, b)
		}
	})
}
