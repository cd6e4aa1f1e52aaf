package envoyrls

import (
	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
)

// NewGRPCServer returns a gRPC server with s registered as
// envoy.service.ratelimit.v3.RateLimitService, receiving messages of at
// most MaxMessageBytes. opts are appended (TLS credentials, for one).
func NewGRPCServer(s *Service, opts ...grpc.ServerOption) *grpc.Server {
	o := append([]grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxConcurrentStreams(1024)}, opts...)
	g := grpc.NewServer(o...)
	rlpb.RegisterRateLimitServiceServer(g, s)
	return g
}
