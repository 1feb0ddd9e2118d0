// Command chaosmesh-webhook serves Chaos Mesh's admission webhooks: the defaulting and the
// validation that Chaos Mesh's controller-manager registers for its chaos kinds, taken from Chaos
// Mesh's own module (github.com/chaos-mesh/chaos-mesh/api, the Default and ValidateCreate /
// ValidateUpdate methods of each kind) and served through controller-runtime's admission handler,
// as the controller-manager serves them. The controllers themselves are not run: a test API
// server admits chaos objects as a cluster with Chaos Mesh installed does, and nothing injects.
//
//	chaosmesh-webhook -listen 127.0.0.1:0 -cert server.crt -key server.key
//
// prints "listening on https://HOST:PORT" once it accepts connections; paths are
// /mutate-<plural> and /validate-<plural> (networkchaos, httpchaos, dnschaos, podchaos).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

type chaosKind interface {
	runtime.Object
	webhook.CustomDefaulter
	webhook.CustomValidator
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	certFile := flag.String("cert", "", "TLS certificate (PEM)")
	keyFile := flag.String("key", "", "TLS private key (PEM)")
	flag.Parse()

	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		log.Fatalf("scheme: %v", err)
	}
	kinds := map[string]chaosKind{
		"networkchaos": &v1alpha1.NetworkChaos{},
		"httpchaos":    &v1alpha1.HTTPChaos{},
		"dnschaos":     &v1alpha1.DNSChaos{},
		"podchaos":     &v1alpha1.PodChaos{},
	}
	mux := http.NewServeMux()
	for plural, kind := range kinds {
		mux.Handle("/mutate-"+plural, admission.WithCustomDefaulter(scheme, kind, kind))
		mux.Handle("/validate-"+plural, admission.WithCustomValidator(scheme, kind, kind))
	}

	pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	fmt.Fprintf(os.Stdout, "listening on https://%s\n", listener.Addr())
	server := &http.Server{
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}
	log.Fatal(server.ServeTLS(listener, "", ""))
}
