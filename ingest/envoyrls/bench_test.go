package envoyrls

import (
	"context"
	"log/slog"
	"strconv"
	"testing"

	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// BenchmarkDecide measures one ShouldRateLimit decision in process (no
// gRPC): matching, the value table, the limiter and the event, over 1,000
// values of a key-only descriptor. The allocations are the response's
// protobuf messages.
func BenchmarkDecide(b *testing.B) {
	lim := limiter.New(limiter.Options{})
	s := New(Options{Limiter: lim, Sink: discard{}, Logger: slog.New(slog.DiscardHandler)})
	c, err := Parse([]File{{Name: "b.yaml", Data: []byte("domain: bench\ndescriptors:\n  - key: app\n    rate_limit: {unit: minute, requests_per_unit: 1000000000}\n")}})
	if err != nil {
		b.Fatal(err)
	}
	s.SetConfig(c)
	rs := make([]*rlpb.RateLimitRequest, 1000)
	for i := range rs {
		rs[i] = request("bench", [][][2]string{{{"app", "v" + strconv.Itoa(i)}}}, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.decide(rs[i%len(rs)]); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Append(*event.Event) error { return nil }

// BenchmarkShouldRateLimitGRPC measures a call over gRPC on loopback,
// client and server in this process (so ns/op is both sides' CPU when the
// cores are busy), from GOMAXPROCS×8 callers over one connection.
func BenchmarkShouldRateLimitGRPC(b *testing.B) {
	lim := limiter.New(limiter.Options{})
	h := newHarness(b, Options{Limiter: lim, Sink: discard{}})
	c, err := Parse([]File{{Name: "b.yaml", Data: []byte("domain: bench\ndescriptors:\n  - key: app\n    rate_limit: {unit: minute, requests_per_unit: 1000000000}\n")}})
	if err != nil {
		b.Fatal(err)
	}
	h.svc.SetConfig(c)
	req := request("bench", [][][2]string{{{"app", "v"}}}, 1)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.client.ShouldRateLimit(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
