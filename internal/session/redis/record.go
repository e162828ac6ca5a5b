package redisstore

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/moat-bff/moat/internal/session"
)

// A record is stored as one Redis string, so that a read is a single GET
// whose reply is one bulk string, cheap to cache on the client later. The
// layout is fixed-width up front so that the Lua scripts can check the
// version and the subject and SID without parsing anything variable:
//
//	[0]      format, formatV1
//	[1:9]    version, big-endian, never 0
//	[9:13]   len(Subject), big-endian uint32
//	[13:17]  len(SID), big-endian uint32
//	[17:]    Subject, then SID, then Data to the end
//
// The scripts' header function (scripts.go) applies the same checks as
// decode, so Go and Lua agree on what is a record.
const (
	formatV1   = 1
	headerSize = 17
)

var errCorrupt = errors.New("not a record of this store")

// encode lays out r with version v.
func encode(v uint64, r session.Record) ([]byte, error) {
	if uint64(len(r.Subject)) > math.MaxUint32 || uint64(len(r.SID)) > math.MaxUint32 {
		return nil, errors.New("subject or sid longer than 4 GiB")
	}
	b := make([]byte, headerSize, headerSize+len(r.Subject)+len(r.SID)+len(r.Data))
	b[0] = formatV1
	binary.BigEndian.PutUint64(b[1:9], v)
	binary.BigEndian.PutUint32(b[9:13], uint32(len(r.Subject)))
	binary.BigEndian.PutUint32(b[13:17], uint32(len(r.SID)))
	b = append(b, r.Subject...)
	b = append(b, r.SID...)
	return append(b, r.Data...), nil
}

// decode parses a stored value. Data is copied out of s; Subject and SID
// share s's memory, which is fine because strings are immutable. Empty Data
// comes back as nil.
func decode(s string) (session.Record, error) {
	if len(s) < headerSize || s[0] != formatV1 {
		return session.Record{}, errCorrupt
	}
	v := binary.BigEndian.Uint64([]byte(s[1:9]))
	ls := uint64(binary.BigEndian.Uint32([]byte(s[9:13])))
	lsid := uint64(binary.BigEndian.Uint32([]byte(s[13:17])))
	if v == 0 || headerSize+ls+lsid > uint64(len(s)) {
		return session.Record{}, errCorrupt
	}
	r := session.Record{
		Version: v,
		Subject: s[headerSize : headerSize+ls],
		SID:     s[headerSize+ls : headerSize+ls+lsid],
	}
	if data := s[headerSize+ls+lsid:]; data != "" {
		r.Data = []byte(data)
	}
	return r, nil
}

// versionBytes is v as the 8 bytes the scripts compare.
func versionBytes(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return string(b[:])
}
