package envoyrls

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// fakeClock is a settable clock shared by the limiter and the service.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// harness is a Service behind a real gRPC server on loopback.
type harness struct {
	svc    *Service
	client rlpb.RateLimitServiceClient
	clock  *fakeClock
	reg    *metrics.Registry
	sink   *event.MemorySink
	conn   *grpc.ClientConn
}

// start0 is a quarter past the start of a UTC day: far from every window's
// edge, so that a test's calls fall in one window unless it moves the clock.
var start0 = time.Date(2026, 3, 10, 0, 15, 0, 0, time.UTC)

func newHarness(t testing.TB, o Options) *harness {
	t.Helper()
	h := &harness{clock: newFakeClock(start0), reg: metrics.NewRegistry(), sink: &event.MemorySink{}}
	if o.Limiter == nil {
		o.Limiter = limiter.New(limiter.Options{Shards: 16, Clock: h.clock.Now})
	}
	o.Clock, o.Metrics = h.clock.Now, h.reg
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Sink == nil {
		o.Sink = h.sink
	}
	h.svc = New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer(h.svc)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(func() { g.Drain(time.Second) })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = rlpb.NewRateLimitServiceClient(conn)
	h.conn = conn
	return h
}

// load puts the files of dir in force.
func (h *harness) load(t testing.TB, dir string) {
	t.Helper()
	if err := h.svc.Reload(dir); err != nil {
		t.Fatal(err)
	}
}

// call sends one request and fails the test on a transport error.
func (h *harness) call(t *testing.T, req *rlpb.RateLimitRequest) *rlpb.RateLimitResponse {
	t.Helper()
	resp, err := h.client.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatalf("ShouldRateLimit(%v): %v", req, err)
	}
	return resp
}

// metric returns the value of one series in /metrics text, or -1.
func (h *harness) metric(t *testing.T, series string) float64 {
	t.Helper()
	var b bytes.Buffer
	if err := h.reg.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b.Bytes(), []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(series+" ")); ok {
			var v float64
			for _, c := range rest {
				if c < '0' || c > '9' {
					break
				}
				v = v*10 + float64(c-'0')
			}
			return v
		}
	}
	return -1
}

// request builds a RateLimitRequest like Envoy ratelimit's test helper:
// descriptors of key/value entries and a request-wide hits_addend.
func request(dom string, descs [][][2]string, hits uint32) *rlpb.RateLimitRequest {
	r := &rlpb.RateLimitRequest{Domain: dom, HitsAddend: hits}
	for _, d := range descs {
		rd := &ratelimitv3.RateLimitDescriptor{}
		for _, e := range d {
			rd.Entries = append(rd.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: e[0], Value: e[1]})
		}
		r.Descriptors = append(r.Descriptors, rd)
	}
	return r
}

// status builds an expected descriptor status with a limit.
func dstatus(code rlpb.RateLimitResponse_Code, rpu uint32, unit rlpb.RateLimitResponse_RateLimit_Unit, remaining uint32, reset int64) *rlpb.RateLimitResponse_DescriptorStatus {
	return &rlpb.RateLimitResponse_DescriptorStatus{
		Code:               code,
		CurrentLimit:       &rlpb.RateLimitResponse_RateLimit{RequestsPerUnit: rpu, Unit: unit},
		LimitRemaining:     remaining,
		DurationUntilReset: &durationpb.Duration{Seconds: reset},
	}
}

func okStatus() *rlpb.RateLimitResponse_DescriptorStatus {
	return &rlpb.RateLimitResponse_DescriptorStatus{Code: rlpb.RateLimitResponse_OK}
}

// wantResp compares responses as protobuf messages.
func wantResp(t *testing.T, what string, got, want *rlpb.RateLimitResponse) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

const (
	ok       = rlpb.RateLimitResponse_OK
	over     = rlpb.RateLimitResponse_OVER_LIMIT
	perSec   = rlpb.RateLimitResponse_RateLimit_SECOND
	perMin   = rlpb.RateLimitResponse_RateLimit_MINUTE
	perHour  = rlpb.RateLimitResponse_RateLimit_HOUR
	perDay   = rlpb.RateLimitResponse_RateLimit_DAY
	perMonth = rlpb.RateLimitResponse_RateLimit_MONTH
)
