// A client of tests/test_own_dns.py, run as an own service: Go's net/http (nobody here wrote it)
// asks SERVER_URL — a name in the run's zone — with Go's own resolver, which reads
// /etc/resolv.conf and /etc/nsswitch.conf.
//
//	SERVER_URL=http://pong.scaleway-fr-par.bascule.internal:PORT goclient -port PORT
//
// GET /ask asks SERVER_URL/pong over the client's pooled keep-alive connection; GET /ask?fresh=1
// with a new transport, so a new connection and a new lookup. Either answers
// {"ok": bool, "status": int|null, "error": string|null}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

type answer struct {
	Ok     bool    `json:"ok"`
	Status *int    `json:"status"`
	Error  *string `json:"error"`
}

var (
	server = os.Getenv("SERVER_URL")
	pooled = &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute},
		Timeout:   20 * time.Second,
	}
	poolLock sync.Mutex
)

func ask(fresh bool) answer {
	client := pooled
	if fresh {
		transport := &http.Transport{}
		defer transport.CloseIdleConnections()
		client = &http.Client{Transport: transport, Timeout: 20 * time.Second}
	} else {
		poolLock.Lock()
		defer poolLock.Unlock()
	}
	response, err := client.Get(server + "/pong")
	if err != nil {
		text := err.Error()
		return answer{Error: &text}
	}
	defer response.Body.Close()
	io.Copy(io.Discard, response.Body)
	status := response.StatusCode
	return answer{Ok: status == 200, Status: &status}
}

func main() {
	port := flag.Int("port", 0, "the port to listen on")
	flag.Parse()
	http.HandleFunc("/ask", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(ask(r.URL.Query().Get("fresh") == "1"))
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	if err := http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *port), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
