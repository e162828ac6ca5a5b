// Command upstream is the API behind the proxies in moat's load harness
// (bench/cmd/moatbench): it answers every request with the same 1 KiB of
// JSON. It prints "listening ADDR" once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	body := []byte(`{"data":"` + strings.Repeat("x", 1024-len(`{"data":""}`)) + `"}`)
	size := strconv.Itoa(len(body))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{size}
		w.Write(body)
	})))
}
