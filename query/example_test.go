package query_test

import (
	"context"
	"log/slog"
	"net"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/query"
)

// Starting the query API in-process (a benchmark or another role does the
// same): a catalog store for tokens and services, a ClickHouse connection,
// and a listener. Serve returns when ctx is done.
func ExampleServer_Serve() {
	doc, _ := catalog.DemoDocument(catalog.DemoCredentials{})
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		panic(err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:9000"}})
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	srv, err := query.New(query.Options{Catalog: catalog.NewStore(snap), Conn: conn, Database: "sluice"})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	slog.Info("query API listening", "addr", ln.Addr().String())
	cancel() // a real caller cancels on shutdown
	if err := srv.Serve(ctx, ln); err != nil {
		panic(err)
	}
}
