package dlockhttp_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/dlockhttp"
)

// Serving health, readiness and Prometheus metrics next to an embedded
// server (dlockd does this with -http-addr).
func ExampleNewHandler() {
	srv, err := dlockserver.New(dlockserver.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	web := httptest.NewServer(dlockhttp.NewHandler(srv)) // or http.ListenAndServe(addr, ...)
	defer web.Close()

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s: %d %s", path, resp.StatusCode, body)
	}
	// Output:
	// /healthz: 200 ok
	// /readyz: 200 ready
}
