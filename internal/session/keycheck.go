package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrWrongKeys means none of the configured keys opens what the store holds:
// starting anyway would log out every user, so moat refuses to start.
var ErrWrongKeys = errors.New("session: none of the configured keys opens the sessions in the store")

var keyCheckKey = KeyOf("keycheck", []byte("v1"))

const keyCheckPlain = "moat session key check"

// CheckKeys proves the codec can open the store's records before moat
// serves anyone, using a small canary record sealed with the newest key in
// use. When the canary opens, it is resealed with the codec's first key, so
// the check follows key rotation: add the new key second everywhere, then
// move it first, then drop the old one. A store that cannot be reached is
// reported as ErrUnavailable and checked again at the next start.
func CheckKeys(ctx context.Context, store Store, codec *Codec) error {
	rec, err := store.Get(ctx, keyCheckKey)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	default:
		plain, err := codec.Open(keyCheckKey, rec.Data)
		if err != nil || string(plain) != keyCheckPlain {
			return ErrWrongKeys
		}
	}
	data := codec.Seal(keyCheckKey, []byte(keyCheckPlain))
	if _, err := store.Set(ctx, keyCheckKey, Record{Data: data}, 10*365*24*time.Hour); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
