// Command chaos-daemon-standin stands in for Chaos Mesh's chaos-daemon in the test control plane.
// The real daemon enters a container's namespaces through its container runtime to shape its
// packets (tc, iptables, ipset) or to proxy its HTTP; no container runs here, so this stand-in
// shapes nothing: it serves Chaos Mesh's own gRPC service definition (the ChaosDaemon service of
// github.com/chaos-mesh/chaos-mesh/pkg/chaosdaemon/pb, at the pin of the controller-manager),
// answers every call with success, and appends each call to a file as one JSON line — what Chaos
// Mesh's controller-manager decided to inject or recover, and for which pod:
//
//	{"time": 1764770000.123, "method": "SetTcs", "chaos": "rag/retriever-…-00000", "request": {…}}
//
// "time" is seconds since the epoch, "chaos" the namespaced name the controller sends in its
// "namespaced-name" metadata (its PodNetworkChaos or PodHttpChaos, named after the pod; empty when
// it sends none), "request" the request in protobuf's JSON
// mapping, every field present (zero values too).
//
//	chaos-daemon-standin -listen 127.0.0.1:0 -record calls.jsonl [-ca ca.crt -cert tls.crt -key tls.key]
//
// prints "listening on HOST:PORT" (on standard output and error) once it accepts connections. With
// -ca, -cert and -key it requires mutual TLS as the real daemon does (pkg/chaosdaemon/server.go:
// its certificate, client certificates verified against the CA, TLS 1.3), which Chaos Mesh's chart
// turns on by default (chaosDaemon.mtls.enabled); without them, plain gRPC, as with it off.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaos-mesh/chaos-mesh/pkg/chaosdaemon/pb"
	"github.com/golang/protobuf/ptypes/empty"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// recorder appends one JSON line per call, flushed before the call is answered.
type recorder struct {
	mu   sync.Mutex
	file *os.File
}

func (r *recorder) record(ctx context.Context, method string, request any) error {
	line := map[string]any{
		"time":   float64(time.Now().UnixNano()) / 1e9,
		"method": method[strings.LastIndex(method, "/")+1:],
		"chaos":  "",
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if values := md.Get("namespaced-name"); len(values) > 0 {
			line["chaos"] = values[0]
		}
	}
	if message, ok := request.(proto.Message); ok {
		encoded, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(message)
		if err != nil {
			return err
		}
		line["request"] = json.RawMessage(encoded)
	}
	encoded, err := json.Marshal(line)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.file.Write(append(encoded, '\n')); err != nil {
		return err
	}
	return r.file.Sync()
}

func (r *recorder) intercept(
	ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler,
) (any, error) {
	if err := r.record(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// daemon answers every method of the service with success: an empty answer, or for the methods
// whose answer the controller reads, a status of 200 and an instance number of its own.
type daemon struct {
	pb.UnimplementedChaosDaemonServer
	instances atomic.Int64
}

func (d *daemon) instance() (int64, int64) {
	return d.instances.Add(1), time.Now().Unix()
}

func (d *daemon) SetTcs(context.Context, *pb.TcsRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) FlushIPSets(context.Context, *pb.IPSetsRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) SetIptablesChains(context.Context, *pb.IptablesChainsRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) SetTimeOffset(context.Context, *pb.TimeRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) RecoverTimeOffset(context.Context, *pb.TimeRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) ContainerKill(context.Context, *pb.ContainerRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) ContainerGetPid(context.Context, *pb.ContainerRequest) (*pb.ContainerResponse, error) {
	instance, _ := d.instance()
	return &pb.ContainerResponse{Pid: uint32(instance)}, nil
}

func (d *daemon) ExecStressors(context.Context, *pb.ExecStressRequest) (*pb.ExecStressResponse, error) {
	instance, start := d.instance()
	name := fmt.Sprint(instance)
	return &pb.ExecStressResponse{
		CpuInstance: name, CpuStartTime: start, MemoryInstance: name, MemoryStartTime: start,
	}, nil
}

func (d *daemon) CancelStressors(context.Context, *pb.CancelStressRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) ApplyIOChaos(context.Context, *pb.ApplyIOChaosRequest) (*pb.ApplyIOChaosResponse, error) {
	instance, start := d.instance()
	return &pb.ApplyIOChaosResponse{Instance: instance, StartTime: start}, nil
}

func (d *daemon) ApplyHttpChaos(context.Context, *pb.ApplyHttpChaosRequest) (*pb.ApplyHttpChaosResponse, error) {
	instance, start := d.instance()
	return &pb.ApplyHttpChaosResponse{Instance: instance, StartTime: start, StatusCode: http.StatusOK}, nil
}

func (d *daemon) ApplyBlockChaos(context.Context, *pb.ApplyBlockChaosRequest) (*pb.ApplyBlockChaosResponse, error) {
	instance, _ := d.instance()
	return &pb.ApplyBlockChaosResponse{InjectionId: int32(instance)}, nil
}

func (d *daemon) RecoverBlockChaos(context.Context, *pb.RecoverBlockChaosRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) SetDNSServer(context.Context, *pb.SetDNSServerRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) InstallJVMRules(context.Context, *pb.InstallJVMRulesRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func (d *daemon) UninstallJVMRules(context.Context, *pb.UninstallJVMRulesRequest) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	recordTo := flag.String("record", "", "file to append each call to, one JSON line each")
	caFile := flag.String("ca", "", "CA certificate the clients' certificates must chain to (PEM)")
	certFile := flag.String("cert", "", "server certificate (PEM)")
	keyFile := flag.String("key", "", "server key (PEM)")
	flag.Parse()
	if *recordTo == "" {
		log.Fatal("-record is required")
	}
	file, err := os.OpenFile(*recordTo, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatalf("record: %v", err)
	}
	calls := &recorder{file: file}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	options := []grpc.ServerOption{grpc.UnaryInterceptor(calls.intercept)}
	if *caFile != "" {
		ca, err := os.ReadFile(*caFile)
		if err != nil {
			log.Fatalf("ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			log.Fatalf("ca: no certificate in %s", *caFile)
		}
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatalf("certificate: %v", err)
		}
		options = append(options, grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS13,
		})))
	}
	server := grpc.NewServer(options...)
	pb.RegisterChaosDaemonServer(server, &daemon{})
	// On standard error, the log the fixture reads (standard output too, as the other servers).
	fmt.Fprintf(os.Stdout, "listening on %s\n", listener.Addr())
	fmt.Fprintf(os.Stderr, "listening on %s\n", listener.Addr())
	log.Fatal(server.Serve(listener))
}
