// Package billing owns the monthly billing export: one row per (service,
// application, plan, metric) with the month's exact total, streamed as CSV,
// JSON or NDJSON. The query API's /api/v1/export and `sluice export` both
// write it through Export, so their bytes are identical.
package billing

import (
	"context"
	"io"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Format is an export file format.
type Format string

// Formats.
const (
	CSV    Format = "csv"
	JSON   Format = "json"
	NDJSON Format = "ndjson"
)

// Request selects what to export. Tenant scoping is the caller's job: TenantID
// comes from the authenticated credential, never from user input.
type Request struct {
	TenantID  string
	ServiceID string    // "" = every service of the tenant
	Month     time.Time // first instant of a UTC month (ParseMonth)
	Format    Format
}

// Row is one line of the export.
type Row struct {
	Month     string // "2026-11"
	ServiceID string
	AppID     string
	PlanID    string
	Metric    string
	Value     int64
}

// The functions below are the contract the query API and the command line
// build on; the billing helper fills in their bodies.
//
//	ParseFormat(s string) (Format, error)       // "" → CSV? no: "" is an error for the API; callers default
//	ParseMonth(s string) (time.Time, error)     // "2026-11" → 2026-11-01T00:00:00Z
//	ContentType(f Format) string                // text/csv; charset=utf-8, application/json, application/x-ndjson
//	Export(ctx, conn, db, req, w) (rows int, err error)
//
// Export runs one parameterized query on usage_month (max_execution_time
// set), and writes nothing when the query cannot start, so an HTTP handler can
// still answer 503. Rows stream to w as they arrive: memory does not grow
// with the number of rows.
var (
	_ = context.Background
	_ io.Writer
	_ driver.Conn
)
