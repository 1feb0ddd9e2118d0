// A stand-in for Chaos Mesh's chaos-daemon in the test control plane (see main.go): Chaos Mesh's
// own gRPC service definition at the controller-manager's pin, answering success, shaping nothing.
module bascule.invalid/controlplane/chaos-daemon-standin

go 1.26.0

require (
	github.com/chaos-mesh/chaos-mesh v0.9.1-0.20260902003049-47411975a8cb
	github.com/golang/protobuf v1.5.4
	google.golang.org/grpc v1.79.3
	google.golang.org/protobuf v1.36.11
)

require (
	golang.org/x/net v0.52.0 // indirect
	golang.org/x/sys v0.42.0 // indirect
	golang.org/x/text v0.35.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260319201613-d00831a3d3e7 // indirect
)

// Chaos Mesh requires its api module as v0.0.0 (replaced by ./api there), which no proxy serves.
replace github.com/chaos-mesh/chaos-mesh/api => github.com/chaos-mesh/chaos-mesh/api v0.0.0-20260906172039-d70b66ad97ac
