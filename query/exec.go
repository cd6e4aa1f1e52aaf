package query

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// timeoutExceeded is ClickHouse's TIMEOUT_EXCEEDED (max_execution_time).
const timeoutExceeded = 159

// queryIDPrefix starts the query_id of every query this package runs, so an
// operator can find them in system.processes.
const queryIDPrefix = "sluice-query-"

func newQueryID() string {
	var b [12]byte
	rand.Read(b[:])
	return queryIDPrefix + hex.EncodeToString(b[:])
}

// run executes q with the server's deadline: max_execution_time on the
// server, a Go deadline on the client. scan is called for each row. When the
// Go deadline passes first, the server query is killed by its query_id (KILL
// QUERY ... SYNC) before run returns, so no query outlives its answer. Errors
// are *apiError with status 503.
func (s *Server) run(ctx context.Context, q *stmt, scan func(driver.Rows) error) *apiError {
	id := newQueryID()
	secs := int((s.timeout + time.Second - 1) / time.Second)
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	settings := clickhouse.Settings{"max_execution_time": secs}
	if s.slowdown != "" {
		settings["max_block_size"] = 16 // the slow test query notices a kill at once
	}
	qctx = clickhouse.Context(qctx, clickhouse.WithQueryID(id), clickhouse.WithSettings(settings))
	start := time.Now()
	err := func() error {
		rows, err := s.conn.Query(qctx, q.sql.String(), q.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}()
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) { // from scan: a bound was exceeded
		if qctx.Err() == nil {
			cancel()
			s.kill(id)
		}
		return ae
	}
	// The driver turns the deadline into the connection's read deadline, so
	// its i/o timeout may come a moment before qctx reports the deadline.
	dl, _ := qctx.Deadline()
	var ne net.Error
	deadline := qctx.Err() != nil || !time.Now().Before(dl) || errors.As(err, &ne) && ne.Timeout()
	var ex *clickhouse.Exception
	switch {
	case deadline && ctx.Err() == nil, errors.As(err, &ex) && ex.Code == timeoutExceeded:
		// The Go deadline passed (or the server's): a context does not stop
		// the server's query, so kill it.
		s.kill(id)
		s.log.Warn("query timed out", "query_id", id, "after", time.Since(start).Round(time.Millisecond), "timeout", s.timeout)
		return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
	default:
		if ctx.Err() != nil {
			s.kill(id)
		}
		s.log.Error("query failed", "query_id", id, "err", err)
		return errf(503, "clickhouse_unavailable", "ClickHouse could not answer; try again")
	}
}

// kill ends the server query id and waits until it is gone (SYNC). It is
// bounded: when ClickHouse does not answer, the query will still stop at its
// max_execution_time.
func (s *Server) kill(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.conn.Exec(ctx, "KILL QUERY WHERE query_id = ? SYNC", id); err != nil {
		s.log.Warn("kill timed-out query", "query_id", id, "err", err)
	}
}
