// Package query is Sluice's query API over the ClickHouse rollups
// (docs/query-api.md in the repository): usage series with calendar buckets in a time zone,
// top applications, denials by reason, each application's usage against its
// plan's limits (utilization.go), configuration changes for annotations
// (changes.go: a ChangeFeed derives them from the configuration log), the
// tenant's services and applications for pick lists (listing.go), the billing
// export (streamed through package billing), and 3scale-style stats endpoints
// so that tools written for 3scale's analytics API can read Sluice. openapi.json, served at
// /openapi.json, describes every endpoint; the package tests hold the API to
// it.
//
// # Model
//
// A call is authenticated by a tenant's admin or query token; the tenant
// becomes a scope, and the scope is the only way this package builds SQL:
// every table read's WHERE starts with `tenant_id = ?` bound to that tenant
// (see scope.selectFrom; top-N reads put only their time spans before it, as
// PREWHERE, see scope.selectPre). Every value from a request is a bound argument
// or a row of an external table (see Statement size); only constant SQL
// written here is ever concatenated, and service and metric names are
// resolved in the catalog before any query runs.
//
// # Buckets and tables
//
// Buckets are calendar units in the requested time zone (minute, hour, day,
// week starting Monday, month) or one total, computed in Go with
// time.Location, so DST changes give 23- and 25-hour days and a repeated
// hour is two hourly buckets. The range is widened to whole buckets, and the
// answer says which range it covers. Empty buckets are present with 0.
//
// The rollup tables hold the same usage at four UTC grains (ingest/chschema).
// Every bucket is split into the coarsest rows that lie wholly inside it:
// whole UTC months from usage_month, whole UTC days from usage_day, whole
// hours from usage_hour, and usage_minute only for the minutes left at its
// ends (zones with half-hour offsets). So a UTC daily chart reads usage_day,
// a New York daily or hourly chart reads usage_hour, a Kolkata daily chart
// reads usage_hour plus half an hour of minutes per day, and the answer is
// exact whichever tables it reads. Rows are summed with chschema.SumValue
// and GROUP BY (the tables merge only eventually), then folded into buckets
// in Go with chschema.AddTotal: a value or total past 9223372036854775807,
// the largest int64, reads as that value ("at least that"), never negative.
//
// A series has at most MaxBuckets buckets (a longer range is a 400
// too_many_buckets before any query) and an answer at most MaxPoints points
// (series × buckets; more is a 400 too_many_groups, as more than MaxGroups
// series is).
//
// # Statement size
//
// The SQL text of every statement is bounded by a constant, whatever the
// range, the zone, the number of metrics or of top-N candidates: ClickHouse
// never refuses it as too big, and analysing it is instant. (ClickHouse
// 18.16 analyses a WHERE of N OR'ed ranges in time growing faster than N —
// 256 take a second, 2,400 over a minute — and no deadline or KILL QUERY
// reaches a query there.) A table read of a series narrows t to at most maxReadSpans
// ranges, the plan's spans of that table with their smallest gaps filled in
// (coverSpans); a constant condition then keeps exactly the plan's rows
// (rowsOfPlan): a unit (UTC month, day, hour) is "cut" when a bucket edge
// lies strictly inside it, and the plan reads the uncut months, the uncut
// days of cut months, the uncut hours of cut days and the minutes of cut
// hours. The cut units (at most one per bucket edge), the metrics of a
// group_by=metric and the top-N candidates travel beside the SQL as
// ClickHouse external tables (native protocol external data, in every
// release from 18.16 on), never in its text.
//
// # Top applications
//
// /api/v1/top is one bucket over [from, to). When both ends are whole UTC
// hours, one query sums the day and hour rows per application. When an end
// is ragged ("the last 30 days" ending now), the minutes at the ends would
// have to come from usage_minute filtered on t alone, which its sort key
// (…, metric, app_id, t) cannot narrow: every minute row of the metric is
// read. Instead the answer is computed from bounds (topApps): the sum over
// the whole hours inside the range is a lower bound of each application's
// total, and adding the (at most two) partial hours at the ends from
// usage_hour gives an upper bound. With T the limit-th largest lower bound,
// only applications whose upper bound reaches T can be in the answer, and
// only their edge minutes are read (app_id IN the candidates, an external
// table). The answer is exact, ties included; with no whole hour in the
// range or more than MaxTopCandidates candidates, the single query answers.
// Top-N reads give their time condition as PREWHERE, so the rows the sort
// key cannot exclude cost one column (t), not all of them.
//
// The metric hierarchy is already applied in the rollups (a parent's rows
// include its children), so a series of hits reads metric = 'hits' only.
//
// # Deadlines
//
// A call answers within QueryTimeout (one budget for the queries of one
// call). A query may run until the budget less killGrace (a quarter of it, at
// most a second); still running then, it is killed on the server by its
// query_id (KILL QUERY ... ASYNC) and the call waits, up to killGrace, for
// system.processes to confirm it gone before it answers 503 query_timeout: a
// context deadline alone would leave it running there. Every query also
// carries max_execution_time (its share of the budget, whole seconds rounded
// up), which stops it on the server if the kill cannot be sent. A statement
// ClickHouse refuses for its shape (syntax, AST too big or too deep) is a
// bug here and answers 500, never a 503 that invites a retry.
//
// # HTTP
//
// HTTPServer serves through internal/httpserver: requests the server cannot
// read are JSON errors like every other (400 bad_request, 413
// body_too_large, 414 uri_too_long over MaxURLLength, 431
// header_too_large), broken HTTP is refused at once, and no log line quotes
// a request (tokens travel in its headers and, for the stats endpoints, in
// its URL).
package query
