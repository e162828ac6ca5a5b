package main

import (
	"context"
	"github.com/moat-bff/moat/internal/logtest"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDemoCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr logtest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--bff-port", "0", "--idp-port", "0", "--api-port", "0", "--admin-port", "0", "--access-token-ttl", "10s"}, &stdout, &stderr)
	}()
	open := regexp.MustCompile(`Open +(http://127\.0\.0\.1:\d+/)`)
	deadline := time.Now().Add(10 * time.Second)
	var m []string
	for m = open.FindStringSubmatch(stdout.String()); m == nil; m = open.FindStringSubmatch(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 10s\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(m[1] + "auth/checksession")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %sauth/checksession: %v %v", m[1], resp, err)
	}
	resp.Body.Close()
	if !strings.Contains(stdout.String(), "Access tokens live 10s") {
		t.Errorf("--access-token-ttl not applied:\n%s", stdout.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("moat demo: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("moat demo did not stop after its context ended")
	}
}

func TestDemoCommandRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--csrf-mode", "token"},
		{"demo", "--frontend-origin", "http://127.0.0.1:5173/app"},
		{"demo", "--no-such-flag"},
		{"demo", "extra"},
	} {
		var stdout, stderr logtest.Buffer
		if err := run(t.Context(), args, &stdout, &stderr); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	var stdout, stderr logtest.Buffer
	if err := run(t.Context(), []string{"demo", "-h"}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "-frontend-origin") {
		t.Errorf("demo -h: %v\n%s", err, stdout.String())
	}
}
