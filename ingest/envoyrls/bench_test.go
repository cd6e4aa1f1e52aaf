package envoyrls

import (
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
