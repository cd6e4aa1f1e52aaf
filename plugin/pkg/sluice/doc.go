// Package sluice is the backend of the Sluice data source for Grafana: it
// turns Grafana's queries into calls of Sluice's query API and the answers
// into data frames, and it answers health checks and the editors' pick
// lists. It talks to the query API only, over HTTP, with the tenant's token
// from the data source's secure settings; the token is never logged nor put
// into an error or a frame.
//
// # Queries
//
// Each query names a queryType (QueryTypes) and a service:
//
//   - usage and denials: GET /api/v1/usage and /api/v1/denials. Grafana's
//     time range is from and to; the granularity is the finest calendar step
//     (minute, hour, day, week, month) not shorter than the panel's interval
//     that keeps the buckets within max data points and the API's 1,500 (see
//     Granularity); the dashboard's time zone is tz. Each series is one
//     frame (time, value) with its group as labels (timeseries-multi). A
//     query may name up to MaxApps applications: one call each.
//   - top: GET /api/v1/top over the whole range, a table (app_id, value).
//   - utilization: GET /api/v1/utilization, a table of every limit with
//     usage, max and ratio (unit percentunit), or with format numeric one
//     frame per limit holding only its ratio with the limit as labels
//     (numeric-multi), which Grafana alert rules reduce and compare: the
//     plugin declares alerting.
//   - changes: GET /api/v1/changes as an annotation frame (time, title,
//     text, tags).
//
// A failing query answers its own error (status 400 for the query, 502 for
// an unreachable Sluice, the API's status otherwise); the others still
// answer.
//
// # Health and resources
//
// CheckHealth first calls /health without a token (is it reachable, is it
// Sluice?), then /api/v1/services with it (is the token valid?), and its
// message says which step failed. CallResource serves services, metrics and
// applications as {value, label, description} lists for the editors.
package sluice
