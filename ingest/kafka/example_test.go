package kafka_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/kafka"
)

// Example shows the wiring: one Producer per process, its Append as the
// API's EventSink, Stats for /metrics, Close on shutdown. (Compiled, not
// run: it needs a broker.)
func Example() {
	p, err := kafka.New(kafka.Options{
		Brokers:    []string{"127.0.0.1:9092"},
		SpoolDir:   "/var/lib/sluice/spool",
		FullPolicy: kafka.FullRefuse, // 503 rather than lose usage
	})
	if err != nil {
		panic(err)
	}
	ids := event.NewIDGenerator()
	now := time.Now().UnixMilli()
	e := event.Event{
		ID: ids.Next(), Kind: event.KindAuthrep, TS: now, Received: now,
		TenantID: "t1", ServiceID: "svc", AppID: "app", PlanID: "basic",
		Usage: []event.Usage{{Metric: "hits", Value: 1}},
	}
	if err := p.Append(&e); err != nil {
		fmt.Println("answer 503:", err) // ErrSpoolFull, ErrClosed
	}
	st := p.Stats()
	fmt.Println(st.Produced, st.Spooled, st.SpoolBytes, st.SpoolFull)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.Close(ctx) // sends or spools everything buffered
}
