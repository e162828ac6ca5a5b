package session

import (
	"encoding/json"
	"testing"
)

// TestClaimsMap: copies of one loaded session share one decoding, and a
// copy whose Claims were replaced is judged by its own.
func TestClaimsMap(t *testing.T) {
	l := &Loaded{Session: Session{Claims: json.RawMessage(`{"groups":["a"]}`)}}
	l.memo = &claimsMemo{raw: l.Claims}
	c1, c2 := *l, *l
	m1, _ := c1.ClaimsMap()
	m2, _ := c2.ClaimsMap()
	if m1["groups"] == nil || len(m2) != 1 {
		t.Fatalf("decoded %v, %v", m1, m2)
	}
	m1["x"] = 1 // shared: the second copy sees the same map
	if _, shared := m2["x"]; !shared {
		t.Error("copies decoded the claims twice")
	}
	c3 := *l
	c3.Claims = json.RawMessage(`{"groups":["b"]}`)
	m3, _ := c3.ClaimsMap()
	if g := m3["groups"].([]any); g[0] != "b" {
		t.Errorf("a session with new claims was judged by the old ones: %v", m3)
	}
	if _, err := (&Loaded{Session: Session{Claims: json.RawMessage(`{`)}}).ClaimsMap(); err == nil {
		t.Error("malformed claims decoded")
	}
	if m, err := (&Loaded{}).ClaimsMap(); err != nil || len(m) != 0 {
		t.Errorf("no claims = %v, %v", m, err)
	}
}
