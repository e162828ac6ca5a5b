package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/moat-bff/moat/internal/session"
)

// An envelope is how a record is stored in the records bucket. bbolt keeps
// no checksum of its own over values, so the envelope carries one: a value
// damaged on disk reads as "not found" instead of as someone else's
// session. Layout, integers big-endian:
//
//	offset  size  field
//	0       1     format, envelopeFormat
//	1       4     CRC-32C (Castagnoli) of every byte from offset 5 on
//	5       8     version, never 0
//	13      8     expiry, Unix nanoseconds, signed
//	21      4     len(subject)
//	25      4     len(sid)
//	29      ...   subject, sid, then data up to the end
//
// The encoding is canonical: every byte string decodes to at most one
// envelope and encodes back to itself, which FuzzDecodeEnvelope checks.
const (
	envelopeFormat = 1
	offCRC         = 1
	offVersion     = 5
	offExpires     = 13
	offSubjectLen  = 21
	offSIDLen      = 25
	headerSize     = 29
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks every decoding failure.
var errCorrupt = errors.New("corrupt envelope")

// envelope is a decoded record with its expiry.
type envelope struct {
	version uint64
	expires int64 // Unix nanoseconds; live while now < expires
	subject string
	sid     string
	data    []byte // nil unless decoded withData
}

func (e envelope) live(now int64) bool { return now < e.expires }

func (e envelope) record() session.Record {
	return session.Record{Data: e.data, Version: e.version, Subject: e.subject, SID: e.sid}
}

// newEnvelope encodes r with version and expiry zero, for seal to fill in
// inside the write transaction. Building it outside the transaction keeps
// the copy of Data out of the write lock.
func newEnvelope(r session.Record) []byte {
	b := make([]byte, headerSize, headerSize+len(r.Subject)+len(r.SID)+len(r.Data))
	b[0] = envelopeFormat
	binary.BigEndian.PutUint32(b[offSubjectLen:], uint32(len(r.Subject)))
	binary.BigEndian.PutUint32(b[offSIDLen:], uint32(len(r.SID)))
	b = append(b, r.Subject...)
	b = append(b, r.SID...)
	return append(b, r.Data...)
}

// seal sets the version and expiry of an envelope made by newEnvelope and
// computes its checksum.
func seal(b []byte, version uint64, expires int64) {
	binary.BigEndian.PutUint64(b[offVersion:], version)
	binary.BigEndian.PutUint64(b[offExpires:], uint64(expires))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offVersion:], crcTable))
}

// encodeEnvelope returns the stored form of e.
func encodeEnvelope(e envelope) []byte {
	b := newEnvelope(session.Record{Data: e.data, Subject: e.subject, SID: e.sid})
	seal(b, e.version, e.expires)
	return b
}

// decodeEnvelope parses b, which comes from disk and may be anything. The
// result never aliases b: bbolt's values live in its memory map and are
// only valid during the transaction. Data is copied only withData, so that
// writes that only need the index fields of the old record skip the copy.
func decodeEnvelope(b []byte, withData bool) (envelope, error) {
	if len(b) < headerSize {
		return envelope{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errCorrupt, len(b), headerSize)
	}
	if b[0] != envelopeFormat {
		return envelope{}, fmt.Errorf("%w: format %d, want %d", errCorrupt, b[0], envelopeFormat)
	}
	if got, want := crc32.Checksum(b[offVersion:], crcTable), binary.BigEndian.Uint32(b[offCRC:]); got != want {
		return envelope{}, fmt.Errorf("%w: checksum %08x, want %08x", errCorrupt, got, want)
	}
	e := envelope{
		version: binary.BigEndian.Uint64(b[offVersion:]),
		expires: int64(binary.BigEndian.Uint64(b[offExpires:])),
	}
	if e.version == 0 {
		return envelope{}, fmt.Errorf("%w: version 0", errCorrupt)
	}
	// uint64 arithmetic: two uint32 lengths cannot overflow it.
	subLen := uint64(binary.BigEndian.Uint32(b[offSubjectLen:]))
	sidLen := uint64(binary.BigEndian.Uint32(b[offSIDLen:]))
	rest := b[headerSize:]
	if subLen+sidLen > uint64(len(rest)) {
		return envelope{}, fmt.Errorf("%w: subject and sid of %d and %d bytes in %d bytes", errCorrupt, subLen, sidLen, len(rest))
	}
	e.subject = string(rest[:subLen])
	e.sid = string(rest[subLen : subLen+sidLen])
	if data := rest[subLen+sidLen:]; withData && len(data) > 0 {
		e.data = append([]byte(nil), data...)
	}
	return e, nil
}

// expiryAt returns now + ttl in Unix nanoseconds, saturating instead of
// wrapping around for a ttl that reaches past the year 2262.
func expiryAt(now int64, ttl int64) int64 {
	if now > 0 && ttl > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + ttl
}
