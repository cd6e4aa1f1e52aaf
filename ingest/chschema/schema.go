// Package chschema owns Sluice's access to ClickHouse for every role: the
// connection (one ConnOptions of address, user, password and TLS, and one
// opener, Connect, so that migrate, export, the rollup, the counter restore
// and the query API reach a ClickHouse that requires TLS or a password the
// same way; errors name the connection, "clickhouse 10.0.0.5:9440: ...", and
// never contain the password), the schema (the tables the rollup consumer
// writes and the query API reads, their versioned migrations, retention by
// dropping old partitions), the offset markers, and the reads the counter
// restore needs (OpenWindowSums, ResumeOffsets).
//
// The DDL is valid on ClickHouse 18.16 (what Debian ships) and on current
// releases: no DateTime64, no TTL, no LowCardinality, and the
// `ENGINE = X PARTITION BY ... ORDER BY ...` syntax.
//
// # Tables
//
// usage_minute, usage_hour, usage_day and usage_month hold the same columns at
// four grains. t is the UTC start of the bucket (minute, hour, UTC day, UTC
// month). A row is either
//
//   - usage: metric != "", reason = "", value = units used (the metric
//     hierarchy already applied: a child's usage is also in its ancestors'
//     rows);
//   - a denial: metric = "", reason = the denial code, value = denied calls;
//   - an offset marker: tenant_id = "" (no real tenant has an empty id), with
//     kp = Kafka partition and ko = the next offset of that partition the
//     table contains (see ingest/rollup's doc for the exactly-once argument).
//     Marker rows have value 1 so that SummingMergeTree never drops them.
//
// The engine is SummingMergeTree on value, so rows with equal keys merge into
// one eventually. Merges are asynchronous: every query must aggregate with
// SumValue (a saturating sum(value), below) and GROUP BY; it is then exact
// whether or not merges happened.
//
// Totals never wrap. No written row is negative or past the largest Int64
// (the rollup drops negative usage and saturates its own sums), but
// ClickHouse sums Int64 modulo 2^64, in queries and in merges, and usage of a
// metric without a limit is bounded by nothing upstream. So readers sum with
// SumValue (SaturatingSum), which presents a total past 9223372036854775807
// as MaxTotal, "at least that", never as a negative or wrapped number; Go
// code adding totals uses AddTotal. The one blind spot is a single key whose
// usage passes 2^64 (1.8e19 units of one application and metric in one
// bucket): a merge can wrap that back to a plausible positive value.
// Every query should also say tenant_id = ? (markers are never matched) and,
// for usage, metric IN (...) or metric != ” (denials are never matched).
//
// The sort key (tenant_id, service_id, metric, app_id, t, ...) serves a series
// for one application and metric, and a top-N of applications for a metric.
//
// Which grain answers a query exactly: usage_minute always; usage_hour for
// buckets whose boundaries are whole hours in UTC (every time zone with a
// whole-hour offset, DST included); usage_day and usage_month only for UTC
// days and months (billing months are UTC months, so usage_month answers the
// billing export; eternity totals are sum over usage_month).
//
// usage_sets holds one row per "#N" set usage (the counter was set to value
// at ts_ms); sets are not summed into the usage tables, since a set is not
// usage. events_raw (optional) holds one row per event as the caller sent it.
// alerts holds the utilization alerts the rollup role stored, one row per
// alert id (or, until merges, a few copies of it): see alertsDDL.
//
// Partitions are by `written`, the UTC date on which the rollup wrote the
// row, not by usage time: all rows of one insert then share one partition, so
// each insert is one part and atomic (see ingest/rollup). Retention therefore
// drops data by when it was written; usage reported with a timestamp far in
// the past lives as long as data written the same day.
package chschema

import "fmt"

// Table names.
const (
	UsageMinute     = "usage_minute"
	UsageHour       = "usage_hour"
	UsageDay        = "usage_day"
	UsageMonth      = "usage_month"
	UsageSets       = "usage_sets"
	EventsRaw       = "events_raw"
	Alerts          = "alerts"
	MigrationsTable = "schema_migrations"
)

// UsageKey is the sorting key of the rollup tables. Their SummingMergeTree
// engine folds rows with equal keys into one as parts merge in the
// background (and drops rows whose value sums to zero), so rows are only
// comparable grouped by it.
const UsageKey = "tenant_id, service_id, metric, app_id, t, plan_id, reason, code, region, kp, ko"

// RollupTables are the tables with usage rows, finest grain first.
var RollupTables = []string{UsageMinute, UsageHour, UsageDay, UsageMonth}

// TableInfo describes a table the rollup writes: how its partition ids are
// computed (for retention) and whether marker rows carry value = 1.
type TableInfo struct {
	Name string
	// PartitionID is an SQL expression over `written` equal to the table's
	// partition_id as a number (YYYYMMDD, YYYYMM or YYYY).
	PartitionID string
	HasValue    bool
}

// Tables lists every table that carries offset markers.
var Tables = []TableInfo{
	{UsageMinute, "toYYYYMMDD(written)", true},
	{UsageHour, "toYYYYMM(written)", true},
	{UsageDay, "toYYYYMM(written)", true},
	{UsageMonth, "toYear(written)", true},
	{UsageSets, "toYYYYMM(written)", true},
	{EventsRaw, "toYYYYMMDD(written)", false},
}

// Info returns the TableInfo of a table name, and false if unknown.
func Info(name string) (TableInfo, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return TableInfo{}, false
}

// Migration is one versioned schema change. Its statements must be
// idempotent (IF NOT EXISTS), so that a migration interrupted half-way, or run
// by two processes at once, can simply be run again.
type Migration struct {
	Version int
	Name    string
	// Statements use {db} for the database name.
	Statements []string
}

// usageTable is the DDL of one usage grain. partition is the partition
// expression over `written`.
func usageTable(name, partition string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS {db}.%s (
    written    Date,
    tenant_id  String,
    service_id String,
    app_id     String,
    plan_id    String,
    metric     String,
    reason     String,
    code       Int16,
    region     String,
    t          DateTime('UTC'),
    kp         Int32,
    ko         Int64,
    value      Int64
) ENGINE = SummingMergeTree((value))
PARTITION BY %s
ORDER BY (%s)`, name, partition, UsageKey)
}

// Migrations is the ordered list of schema versions. Append only: never edit
// a released migration, add a new one.
var Migrations = []Migration{
	{
		Version: 1,
		Name:    "rollup tables, sets, raw events",
		Statements: []string{
			usageTable(UsageMinute, "written"),
			usageTable(UsageHour, "toYYYYMM(written)"),
			usageTable(UsageDay, "toYYYYMM(written)"),
			usageTable(UsageMonth, "toYear(written)"),
			`CREATE TABLE IF NOT EXISTS {db}.usage_sets (
    written    Date,
    tenant_id  String,
    service_id String,
    app_id     String,
    plan_id    String,
    metric     String,
    t          DateTime('UTC'),
    ts_ms      Int64,
    value      Int64,
    kp         Int32,
    ko         Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(written)
ORDER BY (tenant_id, service_id, app_id, metric, ts_ms, kp, ko)`,
			`CREATE TABLE IF NOT EXISTS {db}.events_raw (
    written     Date,
    t           DateTime('UTC'),
    ts_ms       Int64,
    received_ms Int64,
    id          FixedString(16),
    kind        UInt8,
    tenant_id   String,
    service_id  String,
    app_id      String,
    plan_id     String,
    metrics     Array(String),
    values      Array(Int64),
    sets        Array(UInt8),
    code        Int16,
    reason      String,
    region      String,
    node        String,
    kp          Int32,
    ko          Int64
) ENGINE = MergeTree
PARTITION BY written
ORDER BY (tenant_id, service_id, app_id, t)`,
		},
	},
	{
		Version:    2,
		Name:       "utilization alerts",
		Statements: []string{alertsDDL},
	},
}
