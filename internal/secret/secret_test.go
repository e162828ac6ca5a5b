package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStringNeverPrints(t *testing.T) {
	const clear = "s3cr3t-value"
	s := String(clear)
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("x", "secret", s)
	logger.Info("x", slog.Any("secret", s))
	j, err := json.Marshal(struct{ S String }{s})
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v %q", s, s, s, s, s),
		fmt.Sprintf("%v", struct{ S String }{s}), buf.String(), string(j),
	}
	for _, out := range outputs {
		if strings.Contains(out, clear) {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != clear {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
}
