// Package billing owns the monthly billing export: one row per (tenant,
// service, application, plan, metric) with the month's exact total, streamed
// as CSV, JSON or NDJSON. The query API's /api/v1/export and `sluice export`
// both write it through Export, so their bytes are identical for the same
// rows.
//
// # Where the numbers come from
//
// Billing months are UTC months, so the usage_month rollup table answers the
// export exactly (see ingest/chschema). Its engine merges rows with equal keys
// only eventually, so Export always sums: the totals are exact whether or not
// ClickHouse merged the parts yet. Denial rows (metric = "") and the rollup's
// offset markers (tenant_id = "") are never part of an export. A total past
// 9223372036854775807, the largest int64, is exported as that value, meaning
// "at least that", never as a wrapped negative (chschema.SumValue).
//
// The metric hierarchy is already applied in the rollup tables: a parent
// metric's row includes its children's usage, so an export lists both and a
// consumer must not add a child to its parent again.
//
// A closed month is final once the rollup has consumed the month's events;
// the current month grows until it ends.
//
// # Streaming and errors
//
// Export runs one parameterized query with a server-side max_execution_time
// and writes rows to w as ClickHouse sends them, through one small buffer:
// memory does not grow with the number of rows. Errors are classified for the
// HTTP layer:
//
//   - ErrInvalidFormat, ErrInvalidMonth, ErrFutureMonth, ErrInvalidRequest:
//     bad input (400), nothing written;
//   - ErrUnavailable: ClickHouse could not answer (unreachable, timeout,
//     server error) and nothing was written to w (503);
//   - ErrInterrupted: the export failed after bytes reached w; the output is
//     truncated and the only honest thing left is to abort the response.
package billing

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/limiter"
)

// Format is an export file format.
type Format string

// Formats.
const (
	CSV    Format = "csv"    // RFC 4180, CRLF line ends, header line first
	JSON   Format = "json"   // one array of objects
	NDJSON Format = "ndjson" // one object per line
)

// Columns are the export's columns in order: the CSV header and the JSON keys.
var Columns = []string{"month", "tenant_id", "service_id", "app_id", "plan_id", "metric", "value"}

// DefaultTimeout is the server-side max_execution_time of an export when the
// Request does not set one.
const DefaultTimeout = 60 * time.Second

// blockSize is the max_block_size of the export query: ClickHouse sends the
// result in blocks of at most this many rows, and the client holds a few
// blocks at a time, so it bounds the exporter's memory.
const blockSize = 2048

// Errors, for callers to map with errors.Is.
var (
	// ErrInvalidFormat: the format is not csv, json or ndjson.
	ErrInvalidFormat = errors.New("format must be one of csv, json, ndjson")
	// ErrInvalidMonth: the month is not YYYY-MM.
	ErrInvalidMonth = errors.New("month must be YYYY-MM")
	// ErrFutureMonth: the month has not begun (CheckMonth).
	ErrFutureMonth = errors.New("month has not begun yet")
	// ErrInvalidRequest: the Request itself is wrong (no tenant, a month that
	// is not the first instant of a UTC month); a programming error of the
	// caller rather than of its user.
	ErrInvalidRequest = errors.New("invalid export request")
	// ErrUnavailable: ClickHouse could not run the export (unreachable,
	// deadline, server error). Nothing was written to w.
	ErrUnavailable = errors.New("ClickHouse unavailable")
	// ErrInterrupted: the export failed after some bytes reached w, so the
	// output is truncated.
	ErrInterrupted = errors.New("export interrupted")
)

// Request selects what to export. Tenant scoping is the caller's job: TenantID
// comes from the authenticated credential, never from user input.
type Request struct {
	TenantID  string
	ServiceID string    // "" = every service of the tenant
	Month     time.Time // first instant of a UTC month (ParseMonth)
	Format    Format
	// AllTenants exports every tenant's rows and requires TenantID = "" and
	// ServiceID = "". Only the operator's command line sets it; an empty
	// TenantID without it is refused, so a forgotten tenant never leaks
	// every tenant's data.
	AllTenants bool
	// Timeout is the server-side max_execution_time; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Row is one line of the export. Its JSON encoding is the export's JSON
// object, so a consumer can decode the JSON and NDJSON formats into it.
type Row struct {
	Month     string `json:"month"` // "2026-11"
	TenantID  string `json:"tenant_id"`
	ServiceID string `json:"service_id"`
	AppID     string `json:"app_id"`
	PlanID    string `json:"plan_id"`
	Metric    string `json:"metric"`
	Value     int64  `json:"value"`
}

// ParseFormat parses csv, json or ndjson (exactly, lower case). The empty
// string is an error too: callers apply their own default.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case CSV, JSON, NDJSON:
		return f, nil
	}
	return "", fmt.Errorf("%w, not %q", ErrInvalidFormat, s)
}

// ContentType is the HTTP Content-Type of a format.
func ContentType(f Format) string {
	switch f {
	case CSV:
		return "text/csv; charset=utf-8"
	case JSON:
		return "application/json"
	case NDJSON:
		return "application/x-ndjson"
	}
	return "application/octet-stream"
}

// ParseMonth parses "YYYY-MM" strictly (four-digit year from 2000, two-digit
// month 01-12, nothing else) into the first instant of that UTC month.
func ParseMonth(s string) (time.Time, error) {
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("%w, not %q", ErrInvalidMonth, s)
	}
	if len(s) != 7 || s[4] != '-' {
		return bad()
	}
	for i, c := range []byte(s) {
		if i != 4 && (c < '0' || c > '9') {
			return bad()
		}
	}
	y, _ := strconv.Atoi(s[:4])
	m, _ := strconv.Atoi(s[5:])
	// Usage tables hold DateTime (1970-2105); years before 2000 are typos.
	if y < 2000 || m < 1 || m > 12 {
		return bad()
	}
	return time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC), nil
}

// CheckMonth reports ErrFutureMonth when month begins after now: such an
// export is empty by construction and almost certainly a typo. The current
// month is allowed; its totals are not final until it ends.
func CheckMonth(month, now time.Time) error {
	s, _ := limiter.CalendarBounds(limiter.Month, now.Unix())
	cur := time.Unix(s, 0).UTC()
	if month.After(cur) {
		return fmt.Errorf("%w: %s is after the current month %s", ErrFutureMonth, month.UTC().Format("2006-01"), cur.Format("2006-01"))
	}
	return nil
}

// The export query. The WHERE clause is one of two constant fragments chosen
// by code; every value is bound, never spliced. Only the database name is
// spliced, after chschema.CheckDatabase.
//
// The total is chschema.SumValue: ClickHouse sums Int64 modulo 2^64 (and
// so do SummingMergeTree's merges), and metrics without a limit have no
// counter that could have refused the usage upstream, so a total past the
// largest int64 is possible. It is presented as 9223372036854775807 ("at
// least that"), not as an error: one application's absurd usage must not
// make its whole tenant's export (or, with AllTenants, everyone's) fail,
// and the saturated figure is a true lower bound of what was used.
var selectPrefix = `SELECT tenant_id, service_id, app_id, plan_id, metric, ` + chschema.SumValue + ` AS total FROM `

const (
	whereTenant = ` WHERE tenant_id = ? AND metric != '' AND t >= toDateTime(?) AND t < toDateTime(?)`
	whereAll    = ` WHERE tenant_id != '' AND metric != '' AND t >= toDateTime(?) AND t < toDateTime(?)`
	serviceCond = ` AND service_id = ?`
	groupOrder  = ` GROUP BY tenant_id, service_id, app_id, plan_id, metric ORDER BY tenant_id, service_id, app_id, plan_id, metric`
)

// query returns the SQL and arguments of req, which must be valid.
func query(db string, req Request) (string, []any) {
	s, e := limiter.CalendarBounds(limiter.Month, req.Month.Unix())
	from, to := uint32(s), uint32(e)
	sql := selectPrefix + db + "." + chschema.UsageMonth
	var args []any
	if req.AllTenants {
		sql += whereAll
		args = append(args, from, to)
	} else {
		sql += whereTenant
		args = append(args, req.TenantID, from, to)
	}
	if req.ServiceID != "" {
		sql += serviceCond
		args = append(args, req.ServiceID)
	}
	return sql + groupOrder, args
}

// validate checks what the caller, not its user, must get right.
func validate(db string, req Request) error {
	if err := chschema.CheckDatabase(db); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if _, err := ParseFormat(string(req.Format)); err != nil {
		return err
	}
	switch {
	case req.AllTenants && (req.TenantID != "" || req.ServiceID != ""):
		return fmt.Errorf("%w: AllTenants with a tenant or service", ErrInvalidRequest)
	case !req.AllTenants && req.TenantID == "":
		return fmt.Errorf("%w: no tenant", ErrInvalidRequest)
	}
	m := req.Month
	if s, _ := limiter.CalendarBounds(limiter.Month, m.Unix()); m.IsZero() || m.Unix() != s || m.Nanosecond() != 0 {
		return fmt.Errorf("%w: month %v is not the start of a UTC month", ErrInvalidRequest, m)
	}
	if y := m.UTC().Year(); y < 2000 || y > 2100 {
		return fmt.Errorf("%w: month %v out of range", ErrInvalidRequest, m)
	}
	return nil
}

// Export writes the export selected by req to w and returns the number of
// rows written. It runs one parameterized query on db.usage_month and streams
// the rows as they arrive.
//
// The query's server-side max_execution_time is req.Timeout, or less when ctx
// has an earlier deadline, so the server stops it by itself. Nothing reaches
// w unless the query has started and produced its first row (or finished
// empty); an error wrapping ErrUnavailable guarantees that w got no byte, so
// an HTTP handler can still answer 503. Once bytes reached w, errors wrap
// ErrInterrupted. Canceling ctx stops the export at the next row.
func Export(ctx context.Context, conn driver.Conn, db string, req Request, w io.Writer) (rows int, err error) {
	if err := validate(db, req); err != nil {
		return 0, err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := ctx.Err(); err != nil || timeout <= 0 {
		return 0, fmt.Errorf("%w: export query: %w", ErrUnavailable, cmp.Or(err, context.DeadlineExceeded))
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	// The driver never sees ctx's cancellation or deadline: clickhouse-go
	// v2.50 closes its block channel when the context ends while its reader
	// goroutine may still be sending on it, a "send on closed channel" panic
	// that would take the whole process down (clickhouse-go PR #1677). A
	// canceled export instead stops reading, and rs.Close drains what the
	// server still sends; max_execution_time, set to ctx's deadline, bounds
	// both on the server.
	qctx := clickhouse.Context(context.WithoutCancel(ctx), clickhouse.WithSettings(clickhouse.Settings{
		"max_execution_time": secs,
		"max_block_size":     blockSize,
	}))
	sql, args := query(db, req)
	rs, err := conn.Query(qctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("%w: export query: %w", ErrUnavailable, err)
	}
	defer rs.Close()

	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	enc := encoder{format: req.Format, month: req.Month.UTC().Format("2006-01")}
	// fail classifies an error: if no byte reached w yet, drop the buffer and
	// report ErrUnavailable (the caller may still answer cleanly).
	fail := func(what string, err error) (int, error) {
		if cw.n == 0 && cw.err == nil {
			return 0, fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
		}
		return rows, fmt.Errorf("%w after %d rows: %s: %w", ErrInterrupted, rows, what, err)
	}
	buf := make([]byte, 0, 512)
	var r Row
	buf = enc.begin(buf)
	for rs.Next() {
		if rows%64 == 0 {
			if err := ctx.Err(); err != nil {
				return fail("export", err)
			}
		}
		if err := rs.Scan(&r.TenantID, &r.ServiceID, &r.AppID, &r.PlanID, &r.Metric, &r.Value); err != nil {
			return fail("scan", err)
		}
		buf = enc.row(buf, &r, rows == 0)
		rows++
		if _, err := bw.Write(buf); err != nil {
			return fail("write", err)
		}
		buf = buf[:0]
	}
	if err := rs.Err(); err != nil {
		return fail("export query", err)
	}
	buf = enc.end(buf, rows == 0)
	if _, err := bw.Write(buf); err != nil {
		return fail("write", err)
	}
	if err := bw.Flush(); err != nil {
		return fail("write", err)
	}
	return rows, nil
}

// countWriter counts the bytes that reached the caller's writer.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}
