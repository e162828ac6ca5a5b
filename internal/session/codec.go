package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of a session sealing key: AES-256.
const KeySize = 32

const (
	sealVersion = 1
	keyIDSize   = 4
	headerSize  = 1 + keyIDSize
)

// ErrUnsealable is returned by Codec.Open for data that no key in the ring
// opens: tampered, foreign, or sealed with a retired key.
var ErrUnsealable = errors.New("session: record cannot be opened with any configured key")

// Codec seals and opens records with AES-256-GCM under a key ring. The first
// key seals; every key opens, so a new key can be rolled out before the old
// one is retired without logging anybody out. The store Key is authenticated
// as additional data, so a sealed record moved to another key does not open.
type Codec struct {
	keys []ringKey
}

type ringKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// NewCodec builds a Codec from raw 32-byte keys, the sealing key first.
func NewCodec(keys ...[]byte) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("session: at least one key is required")
	}
	c := &Codec{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("session: key %d has %d bytes, want %d", i, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("session: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session: key %d: %w", i, err)
		}
		sum := sha256.Sum256(k)
		var rk ringKey
		copy(rk.id[:], sum[:keyIDSize])
		rk.aead = aead
		c.keys = append(c.keys, rk)
	}
	return c, nil
}

// ParseKey decodes a session key given as base64 (standard or URL alphabet,
// padded or not) of exactly KeySize bytes, as `moat keygen` prints it.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (generate one with `moat keygen`)", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("is not base64 (generate one with `moat keygen`)")
}

// NewKey returns a fresh random key encoded as ParseKey reads it.
func NewKey() string {
	b := make([]byte, KeySize)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// Seal encrypts plaintext for the record under key with the first ring key.
func (c *Codec) Seal(key Key, plaintext []byte) []byte {
	k := c.keys[0]
	ns := k.aead.NonceSize()
	out := make([]byte, headerSize+ns, headerSize+ns+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:headerSize], k.id[:])
	rand.Read(out[headerSize:]) // 96-bit random nonce; a key seals far fewer than 2^32 records between rotations
	return k.aead.Seal(out, out[headerSize:], plaintext, c.aad(key, out[:headerSize]))
}

// Open decrypts data sealed for key by any key of the ring.
func (c *Codec) Open(key Key, data []byte) ([]byte, error) {
	if len(data) < headerSize || data[0] != sealVersion {
		return nil, ErrUnsealable
	}
	for _, k := range c.keys {
		if [keyIDSize]byte(data[1:headerSize]) != k.id {
			continue
		}
		ns := k.aead.NonceSize()
		if len(data) < headerSize+ns {
			return nil, ErrUnsealable
		}
		plain, err := k.aead.Open(nil, data[headerSize:headerSize+ns], data[headerSize+ns:], c.aad(key, data[:headerSize]))
		if err == nil {
			return plain, nil
		}
	}
	return nil, ErrUnsealable
}

func (c *Codec) aad(key Key, header []byte) []byte {
	aad := make([]byte, 0, len(header)+len(key))
	return append(append(aad, header...), key...)
}
