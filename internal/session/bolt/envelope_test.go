package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []envelope{
		{version: 1, expires: 0},
		{version: math.MaxUint64, expires: math.MaxInt64, subject: "alice", sid: "a1", data: []byte("sealed")},
		{version: 42, expires: math.MinInt64, subject: "\x00sub\xff", data: []byte{0, 0xff, 0}},
		{version: 7, expires: -1, sid: "sid without subject"},
	} {
		b := encodeEnvelope(e)
		got, err := decodeEnvelope(b, true)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", e, err)
		}
		if got.version != e.version || got.expires != e.expires || got.subject != e.subject || got.sid != e.sid || !bytes.Equal(got.data, e.data) {
			t.Fatalf("decode(encode(%+v)) = %+v", e, got)
		}
		if noData, err := decodeEnvelope(b, false); err != nil || noData.data != nil || noData.subject != e.subject {
			t.Fatalf("decode without data = %+v, %v", noData, err)
		}
		// The result must not alias the input, which is bbolt's memory map.
		for i := range b {
			b[i] = 0xAA
		}
		if !bytes.Equal(got.data, e.data) || got.subject != e.subject {
			t.Fatalf("decoded envelope changed with its input: %+v", got)
		}
	}
}

// withCRC returns b with its checksum field set to match, so that the
// fuzzer reaches the parsing behind the checksum instead of spending its
// time on CRC collisions.
func withCRC(b []byte) []byte {
	if len(b) < offVersion {
		return b
	}
	b = bytes.Clone(b)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offVersion:], crcTable))
	return b
}

func FuzzDecodeEnvelope(f *testing.F) {
	valid := encodeEnvelope(envelope{version: 3, expires: 1_700_000_000_000_000_000, subject: "alice", sid: "a1", data: []byte("sealed\x00data")})
	f.Add(valid)
	f.Add(encodeEnvelope(envelope{version: 1}))
	f.Add(encodeEnvelope(envelope{version: 9, expires: -5, subject: "s", data: bytes.Repeat([]byte{0xff}, 16)}))
	f.Add([]byte{})
	f.Add([]byte{envelopeFormat})
	f.Add(valid[:headerSize])
	f.Add(valid[:len(valid)-1])
	f.Add(append(bytes.Clone(valid), 0))
	huge := bytes.Clone(valid)
	binary.BigEndian.PutUint32(huge[offSubjectLen:], math.MaxUint32)
	binary.BigEndian.PutUint32(huge[offSIDLen:], math.MaxUint32)
	f.Add(withCRC(huge))
	zero := bytes.Clone(valid)
	binary.BigEndian.PutUint64(zero[offVersion:], 0)
	f.Add(withCRC(zero))
	f.Add(bytes.Repeat([]byte{0xff}, headerSize+8))

	f.Fuzz(func(t *testing.T, b []byte) {
		// Every branch of the decoder is reachable in a few dozen bytes.
		// Longer inputs only slow the fuzzer down: it spends its time
		// minimizing them, quadratically in their length.
		if len(b) > 256 {
			t.Skip()
		}
		for _, in := range [][]byte{b, withCRC(b)} {
			orig := bytes.Clone(in)
			e, err := decodeEnvelope(in, true)
			if !bytes.Equal(in, orig) {
				t.Fatal("decodeEnvelope modified its input")
			}
			if err != nil {
				if !errors.Is(err, errCorrupt) {
					t.Fatalf("error %v does not wrap errCorrupt", err)
				}
				continue
			}
			if e.version == 0 {
				t.Fatal("decoded version 0")
			}
			// Canonical: what decodes encodes back to the same bytes.
			if re := encodeEnvelope(e); !bytes.Equal(re, in) {
				t.Fatalf("encode(decode(%x)) = %x", in, re)
			}
			noData, err := decodeEnvelope(in, false)
			if err != nil || noData.version != e.version || noData.expires != e.expires || noData.subject != e.subject || noData.sid != e.sid {
				t.Fatalf("decoding without data = %+v, %v; with data %+v", noData, err, e)
			}
		}
	})
}
