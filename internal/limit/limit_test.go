package limit

import (
	"fmt"
	"testing"
	"time"
)

func TestBucketAndRetryAfter(t *testing.T) {
	now := time.Unix(0, 0)
	k := New(2, 3, 10, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := k.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := k.Allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := k.Allow("b"); !ok {
		t.Error("another key shares a's bucket")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := k.Allow("a"); !ok {
		t.Error("the bucket did not refill")
	}
}

func TestBounded(t *testing.T) {
	k := New(1, 1, 100, nil)
	for i := range 10_000 {
		k.Allow(fmt.Sprint(i))
	}
	if k.Len() != 100 {
		t.Errorf("tracking %d keys, want at most 100", k.Len())
	}
}
