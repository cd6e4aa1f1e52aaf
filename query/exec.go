package query

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
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
// server and a Go deadline in run (ctx's deadline when it is earlier, so that
// the queries of one request share one budget). scan is called for each row. When the Go
// deadline passes first (or the caller's context ends), the server query is
// killed by its query_id (KILL QUERY ... SYNC) before run returns, so no
// query outlives its answer. Errors are *apiError with status 503.
//
// The driver never sees a cancellable context: clickhouse-go v2.50 can panic
// with "send on closed channel" when a query's context ends while its reader
// goroutine still delivers blocks (upstream PR #1677), and that panic is in a
// goroutine of its own, so it would take the whole process down. Instead the
// query runs in a goroutine of run's own; run stops waiting for it at the
// deadline, kills the server query (which ends the driver's read), and the
// goroutine stops calling scan from then on.
func (s *Server) run(ctx context.Context, q *stmt, scan func(driver.Rows) error) *apiError {
	id := newQueryID()
	wait := s.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d) // a request running several queries shares one deadline
	}
	if wait <= 0 {
		return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
	}
	secs := int((wait + time.Second - 1) / time.Second)
	settings := clickhouse.Settings{"max_execution_time": secs}
	if s.slowdown != "" {
		settings["max_block_size"] = 16 // the slow test query notices a kill at once
	}
	qctx := clickhouse.Context(context.WithoutCancel(ctx), clickhouse.WithQueryID(id), clickhouse.WithSettings(settings))

	var (
		mu        sync.Mutex // held while scan runs; abandoned is set under it
		abandoned bool
		done      = make(chan error, 1)
	)
	start := time.Now()
	go func() {
		done <- func() error {
			rows, err := s.conn.Query(qctx, q.sql.String(), q.args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				mu.Lock()
				if abandoned {
					mu.Unlock()
					return errAbandoned
				}
				err := scan(rows)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			return rows.Err()
		}()
	}()
	abandon := func() {
		mu.Lock()
		abandoned = true
		mu.Unlock()
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		abandon()
		s.kill(id)
		s.log.Warn("query timed out", "query_id", id, "after", time.Since(start).Round(time.Millisecond), "timeout", s.timeout)
		return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
	case <-ctx.Done():
		abandon()
		s.kill(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) { // the request's deadline: as the timer
			s.log.Warn("query timed out", "query_id", id, "after", time.Since(start).Round(time.Millisecond), "timeout", s.timeout)
			return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
		}
		return errf(503, "clickhouse_unavailable", "the request was cancelled")
	}
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) { // from scan: a bound was exceeded
		s.kill(id)
		return ae
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && ex.Code == timeoutExceeded {
		s.log.Warn("query timed out on the server", "query_id", id, "after", time.Since(start).Round(time.Millisecond), "timeout", s.timeout)
		return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
	}
	s.log.Error("query failed", "query_id", id, "err", err)
	return errf(503, "clickhouse_unavailable", "ClickHouse could not answer; try again")
}

// errAbandoned ends a query goroutine whose caller stopped waiting.
var errAbandoned = errors.New("query: abandoned after its deadline")

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
