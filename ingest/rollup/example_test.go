package rollup_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/rollup"
)

// The rollup role as `sluice serve --roles rollup` wires it: a hierarchy
// from the catalog, retention, and Run until shutdown.
func ExampleNew() {
	r, err := rollup.New(rollup.Options{
		Brokers:        []string{"127.0.0.1:9092"},
		ClickHouseAddr: "127.0.0.1:9000",
		Database:       "sluice",
		Hierarchy:      rollup.MapHierarchy{"search": "hits"}, // the integrator adapts the catalog
		Retention:      chschema.DefaultRetention,
		InstanceID:     "rollup-0",
		Logger:         slog.Default(),
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx) // returns nil once ctx is done
	_ = r.Stats()
}

// Seeding the limiter: sums of every open window, then the Kafka tail after
// each unit's offsets.
func ExampleOpenWindowSums() {
	ctx := context.Background()
	conn, err := chschema.Connect(ctx, chschema.ConnOptions{Addr: "127.0.0.1:9000", User: "default"})
	if err != nil {
		return
	}
	ow, err := chschema.OpenWindowSums(ctx, conn, "sluice", time.Now())
	if err != nil {
		return
	}
	for _, s := range ow.Sums {
		_ = s // seed counter (s.Tenant, s.Service, s.App, s.Metric, s.Unit) with s.Sum
	}
	from := ow.From() // consume each partition from here, and for each record
	_ = from          // apply it to unit u only if !ow.Includes(u, partition, offset)
}
