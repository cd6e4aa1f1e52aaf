package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal"
)

// queryLogXML turns on system.query_log, so the benchmark can say which table
// every query of the query API read and how many rows. ClickHouse merges
// config.d/*.xml and users.d/*.xml next to the files chlocal writes.
const queryLogXML = `<?xml version="1.0"?>
<yandex>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
</yandex>
`

const logQueriesXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <log_queries>1</log_queries>
        </default>
    </profiles>
</yandex>
`

// clickHouse is the server the benchmark uses: a scratch one it started, or
// one given by address.
type clickHouse struct {
	addr   string
	server *chlocal.Server // nil for an external server
	conn   driver.Conn
}

// openClickHouse starts a local server on dir (with the query log on) unless
// addr names one, and connects.
func openClickHouse(ctx context.Context, addr, dir string) (*clickHouse, error) {
	ch := &clickHouse{addr: addr}
	if addr == "" {
		for sub, body := range map[string]string{"config.d": queryLogXML, "users.d": logQueriesXML} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, sub, "bench.xml"), []byte(body), 0o644); err != nil {
				return nil, err
			}
		}
		f, err := os.OpenFile(filepath.Join(dir, "server.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		s, err := chlocal.Start(ctx, chlocal.Options{Dir: dir, Stderr: f})
		if err != nil {
			return nil, fmt.Errorf("start ClickHouse in %s: %w", dir, err)
		}
		ch.server, ch.addr = s, s.Addr()
	}
	conn, err := chschema.Connect(ctx, chschema.ConnOptions{Addr: ch.addr, User: "default"})
	if err != nil {
		ch.close()
		return nil, err
	}
	ch.conn = conn
	return ch, nil
}

func (ch *clickHouse) close() {
	if ch.conn != nil {
		ch.conn.Close()
	}
	if ch.server != nil {
		ch.server.Stop()
	}
}
