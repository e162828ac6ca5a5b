package backend

import (
	"strings"
	"testing"
)

// A store URL that is wrong is refused with an error that names what is
// wrong and never repeats the password in it: configuration errors are
// printed by moat check and logged at startup.
func TestCheckURLNeverShowsThePassword(t *testing.T) {
	for _, spec := range []string{
		"redis://u:s3cret@127.0.0.1:6379/0?bogus=1",
		"redis://u:s3cret@127.0.0.1:notaport/0",
		"redis://u:s3cret@%zz/0",
		"redis+cluster://u:s3cret@h1:x,h2/",
		"rediss+sentinel://u:s3cret@h1,h2/m?bogus=1",
		"postgres://u:s3cret@127.0.0.1/db?table=Bad-Name",
		"postgres://u:s3cret@127.0.0.1:notaport/db",
		"postgres://u:s3cret@[::1/db",
		"postgres://u:s3cret@h/db?sslmode=bogus",
		"bolt://u:s3cret@host/x.db",
		"bolt://u:s3cret@[::1/x.db",
		"cassandra://u:s3cret@x",
	} {
		err := CheckURL(spec)
		if err == nil {
			t.Errorf("%s: accepted", spec)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", spec, err)
		}
	}
	for _, spec := range []string{"memory", "bolt:///var/lib/moat/s.db", "redis://u:p@127.0.0.1:6379/0", "postgres://u:p@127.0.0.1/db"} {
		if err := CheckURL(spec); err != nil {
			t.Errorf("%s: %v", spec, err)
		}
	}
}
