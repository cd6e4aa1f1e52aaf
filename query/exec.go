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

// run executes q within the server's deadline and calls scan for each row.
// Errors are *apiError: 503 when ClickHouse cannot answer in time, or the
// one scan returned.
//
// The deadline is budget = s.timeout (ctx's deadline when it is earlier, so
// that the queries of one request share one budget), and the answer comes
// within it: the query may run until budget minus killGrace(budget); still
// running then, it is killed on the server by its query_id and run waits up
// to killGrace for ClickHouse to confirm that it is gone (system.processes)
// before answering 503 query_timeout. max_execution_time (whole seconds,
// rounded up) stops it on the server even if the kill cannot be sent.
//
// The driver never sees a cancellable context: clickhouse-go v2.50 can panic
// with "send on closed channel" when a query's context ends while its reader
// goroutine still delivers blocks (upstream PR #1677), and that panic is in a
// goroutine of its own, so it would take the whole process down. Instead the
// query runs in a goroutine of run's own; run stops waiting for it at the
// deadline, kills the server query (which ends the driver's read), and the
// goroutine stops calling scan from then on.
func (s *Server) run(ctx context.Context, q *stmt, scan func(driver.Rows) error) *apiError {
	if q.err != nil { // a bug: never "try again"
		s.log.Error("query not built", "err", q.err)
		return errf(500, "internal_error", "internal error")
	}
	id := newQueryID()
	budget := s.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < budget {
		budget = time.Until(d) // a request running several queries shares one deadline
	}
	grace := killGrace(budget)
	wait := budget - grace
	if wait <= 0 {
		return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
	}
	secs := int((wait + time.Second - 1) / time.Second)
	settings := clickhouse.Settings{"max_execution_time": secs}
	if s.slowdown != "" {
		settings["max_block_size"] = 16 // the slow test query notices a kill at once
	}
	opts := []clickhouse.QueryOption{clickhouse.WithQueryID(id), clickhouse.WithSettings(settings)}
	if len(q.ext) > 0 {
		opts = append(opts, clickhouse.WithExternalTable(q.ext...))
	}
	qctx := clickhouse.Context(context.WithoutCancel(ctx), opts...)

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
	// stop abandons the query, kills it on the server and waits up to grace
	// for it to be gone.
	stop := func() {
		mu.Lock()
		abandoned = true
		mu.Unlock()
		gone := s.kill(id)
		select {
		case <-gone:
		case <-time.After(grace):
			s.log.Warn("killed query still on the server", "query_id", id, "waited", grace)
		}
	}
	timedOut := func() *apiError {
		s.log.Warn("query timed out", "query_id", id, "after", time.Since(start).Round(time.Millisecond), "timeout", s.timeout)
		return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		stop()
		return timedOut()
	case <-ctx.Done():
		stop()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) { // the request's deadline: as the timer
			return timedOut()
		}
		return errf(503, "clickhouse_unavailable", "the request was cancelled")
	}
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) { // from scan: a bound was exceeded
		s.kill(id) // the rest of the answer is not wanted; no need to wait
		return ae
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch {
		case ex.Code == timeoutExceeded:
			s.log.Warn("query timed out on the server", "query_id", id, "after", time.Since(start).Round(time.Millisecond), "timeout", s.timeout)
			return errf(503, "query_timeout", "the query did not finish within "+s.timeout.String())
		case statementRefused[ex.Code]:
			// The same statement would be refused again: a bug of this
			// package (every statement's size is bounded), not a reason for
			// the client to retry.
			s.log.Error("ClickHouse refused the query", "query_id", id, "code", ex.Code, "err", err)
			return errf(500, "internal_error", "internal error")
		}
	}
	s.log.Error("query failed", "query_id", id, "err", err)
	return errf(503, "clickhouse_unavailable", "ClickHouse could not answer; try again")
}

// statementRefused are ClickHouse error codes that refuse a statement for
// its text or shape, whatever the load: SYNTAX_ERROR (also "Max query size
// exceeded"), TOO_DEEP_AST, TOO_BIG_AST, TOO_DEEP_RECURSION.
var statementRefused = map[int32]bool{62: true, 167: true, 168: true, 306: true}

// killGrace is the part of a query's budget kept for killing it: a quarter of
// the budget, at most a second. A query is asked to stop in well under that
// (it checks between blocks; the KILL and the check of system.processes are
// two round trips).
func killGrace(budget time.Duration) time.Duration {
	return min(budget/4, time.Second)
}

// errAbandoned ends a query goroutine whose caller stopped waiting.
var errAbandoned = errors.New("query: abandoned after its deadline")

// kill asks ClickHouse to stop the query id (KILL QUERY ... ASYNC, which
// returns at once) and then checks system.processes every 10 ms until the
// query is gone; the returned channel is closed then. The check runs in a
// goroutine of its own, bounded by 5 s, so a caller may stop waiting for it
// at any time: when ClickHouse does not answer, the query still stops at
// its max_execution_time.
//
// KILL QUERY SYNC would wait for the same thing, but ClickHouse 18.16 looks
// again only every 100 ms, a tenth of a second added to every timed-out
// answer.
func (s *Server) kill(id string) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		deadline := time.Now().Add(5 * time.Second)
		kctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if err := s.conn.Exec(kctx, "KILL QUERY WHERE query_id = ? ASYNC", id); err != nil {
			s.log.Warn("kill timed-out query", "query_id", id, "err", err)
			return
		}
		for time.Now().Before(deadline) {
			// A SELECT: no cancellable context (see run); it is one row of
			// an in-memory table, answered at once.
			var n uint64
			if err := s.conn.QueryRow(context.Background(), "SELECT count() FROM system.processes WHERE query_id = ?", id).Scan(&n); err != nil {
				s.log.Warn("check killed query", "query_id", id, "err", err)
				return
			}
			if n == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.log.Warn("killed query still running after 5 s", "query_id", id)
	}()
	return gone
}
