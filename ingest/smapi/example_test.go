package smapi_test

import (
	"log/slog"
	"net"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/smapi"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// Mounting the API: one limiter, the catalog store, a sink, and NewServer
// for the package's size limits.
func ExampleNewServer() {
	doc, _ := catalog.DemoDocument(catalog.DemoCredentials{})
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		panic(err)
	}
	reg := metrics.NewRegistry()
	api := smapi.New(smapi.Options{
		Catalog: catalog.NewStore(snap),
		Limiter: limiter.New(limiter.Options{}),
		Sink:    &event.MemorySink{},
		Version: "dev",
		Metrics: reg, // also served at GET /metrics
	})
	srv := smapi.NewServer(api.Handler, smapi.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	slog.Info("service management API listening", "addr", ln.Addr().String())
	go srv.Serve(ln)
	srv.Shutdown()
}
