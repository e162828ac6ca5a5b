// Command bareproxy is the reference in moat's load harness
// (bench/cmd/moatbench): a tuned httputil.ReverseProxy that forwards every
// request to one upstream and adds a fixed Authorization: Bearer header.
// It is what a BFF hop costs at the least: keep-alive pool sized to the
// load, pooled copy buffers, no logging. It prints "listening ADDR" once it
// accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/moat-bff/moat/internal/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:8081")
	conns := flag.Int("conns", 256, "idle keep-alive connections kept to the upstream (size it to the load)")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("-upstream %q: want an absolute URL", *upstream)
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          *conns,
		MaxIdleConnsPerHost:   *conns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header["Authorization"] = []string{"Bearer fixed-token-for-the-bare-proxy"}
		},
		Transport:  tr,
		BufferPool: &proxy.BufferPool{}, // moat's own, so that only what moat adds differs
		// Like moat, answer 502 without logging: wrk closing its
		// connections at the end of a run cancels requests in flight.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) },
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.Serve(ln))
}
