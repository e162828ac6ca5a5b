package token_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/token"
)

// BenchmarkRefreshWait: 1000 requests of one session whose access token
// has just expired ask for it at once, spread over three replicas that
// share a store, and the IdP's token endpoint takes idpDelay to answer.
// Exactly one refresh may reach the IdP (the benchmark fails otherwise).
// It reports the p99 and the longest of the callers' waits: what the
// refresh adds to a request, the goal being idpDelay + 10 ms. Waiters on
// the holder's replica share its refresh (singleflight); the others
// reread the session until the lease is released (fastPoll).
//
// BenchmarkRefreshStorm (internal/gateway) measures the same over HTTP,
// where serving 1000 requests at all takes most of the time on 2 cores.
//
//	go test -run '^$' -bench RefreshWait -benchtime 5x ./internal/token/
func BenchmarkRefreshWait(b *testing.B) {
	const (
		callers  = 1000
		replicas = 3
		idpDelay = 50 * time.Millisecond
	)
	var waits []time.Duration
	for range b.N {
		b.StopTimer()
		f := newFixture(b, session.Lease{})
		f.idp.during = func() { time.Sleep(idpDelay) }
		f.poll = 0 // moat's default
		type replica struct {
			tm *token.Manager
			l  *session.Loaded
		}
		var rs []replica
		for range replicas {
			tm, sm := f.replica()
			l, err := sm.LoadKey(context.Background(), f.key)
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, replica{tm, l})
		}
		lat := make([]time.Duration, callers)
		errs := make([]error, callers)
		got := make([]string, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range callers {
			r := rs[i%replicas]
			l := *r.l // each request has its own copy, as the session cache hands out
			wg.Go(func() {
				<-start
				t0 := time.Now()
				got[i], errs[i] = r.tm.AccessToken(context.Background(), &l)
				lat[i] = time.Since(t0)
			})
		}
		b.StartTimer()
		close(start)
		wg.Wait()
		b.StopTimer()
		for i, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
			if got[i] != "at-1" {
				b.Fatalf("a caller got %q, want the refreshed at-1", got[i])
			}
		}
		if got := f.idp.presented(); len(got) != 1 {
			b.Fatalf("%d refreshes reached the IdP, want 1", len(got))
		}
		waits = append(waits, lat...)
	}
	slices.Sort(waits)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(idpDelay), "idp-delay-ms")
	b.ReportMetric(ms(waits[int(0.99*float64(len(waits)-1))]), "p99-wait-ms")
	b.ReportMetric(ms(waits[len(waits)-1]), "max-wait-ms")
}
