// Package chtest starts a throwaway ClickHouse server for a test: the one way
// every package's integration tests get a real server.
package chtest

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/internal/chlocal"
)

// Start starts a ClickHouse server with its data in a temporary directory and
// returns it with an open native connection; both are closed when the test
// ends. A missing server fails the test with the command that installs it;
// only -short skips it.
func Start(t testing.TB) (*chlocal.Server, driver.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs clickhouse-server")
	}
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start ClickHouse (apt-get install -y clickhouse-server clickhouse-client): %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn
}
