// Package browsertest starts Debian's Chromium for tests: headless, with the
// flags CI needs and a fresh profile per test. It never downloads a browser.
package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is Debian's Chromium (apt-get install chromium).
const Path = "/usr/bin/chromium"

// RequireEnv, set to 1 (as .ci/run does), turns a missing Chromium from a
// skip into a failure.
const RequireEnv = "MOAT_TEST_REQUIRE_BROWSER"

// Require skips t without Chromium, or fails it when RequireEnv=1.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s is required (%s=1) but missing: %v; install Debian's chromium package", Path, RequireEnv, err)
		}
		t.Skipf("%s not found, skipping the browser test (set %s=1 to make this a failure)", Path, RequireEnv)
	}
}

// New calls Require, starts Chromium and returns a tab that lives until
// the timeout or the end of t.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(Path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	return tab
}

// Browser is one Chromium shared by a test's subtests, each in a tab of
// its own browser context: separate cookies, storage and cache, as with a
// fresh profile, without paying for another Chromium start.
type Browser struct{ ctx context.Context }

// Start calls Require and starts Chromium, which lives until the timeout
// or the end of t.
func Start(t testing.TB, timeout time.Duration) *Browser {
	t.Helper()
	ctx := New(t, timeout)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return &Browser{ctx: ctx}
}

// Tab opens a tab in a new browser context that lives until the timeout
// or the end of t.
func (b *Browser) Tab(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	t.Cleanup(cancel)
	tab, cancelTab := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelTab)
	return tab
}
