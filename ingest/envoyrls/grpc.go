package envoyrls

import (
	"runtime"
	"time"

	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// HealthService is the name the gRPC health service reports the rate limit
// service under, besides the server as a whole (""), as Envoy ratelimit
// does, so that gateways' gRPC health checks of either kind pass.
const HealthService = "ratelimit"

// GRPCServer serves s as envoy.service.ratelimit.v3.RateLimitService and
// the standard grpc.health.v1.Health service on one gRPC server.
type GRPCServer struct {
	*grpc.Server
	health *health.Server
}

// NewGRPCServer returns a gRPC server with s registered, receiving messages
// of at most MaxMessageBytes, and reporting SERVING until Drain. opts are
// appended (TLS credentials, for one).
func NewGRPCServer(s *Service, opts ...grpc.ServerOption) *GRPCServer {
	o := append([]grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxConcurrentStreams(1024),
		// Calls run on long-lived workers whose stacks have grown already:
		// a goroutine per call grows a fresh stack on every call, which
		// took a fifth of the server's CPU (runtime.morestack).
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0)))}, opts...)
	g := &GRPCServer{Server: grpc.NewServer(o...), health: health.NewServer()}
	rlpb.RegisterRateLimitServiceServer(g.Server, s)
	healthpb.RegisterHealthServer(g.Server, g.health)
	g.health.SetServingStatus(HealthService, healthpb.HealthCheckResponse_SERVING)
	return g
}

// Drain reports NOT_SERVING, so that health-checking clients move away,
// then stops the server once its calls have finished, or at timeout.
func (g *GRPCServer) Drain(timeout time.Duration) {
	g.health.Shutdown()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		g.Stop()
	}
}
