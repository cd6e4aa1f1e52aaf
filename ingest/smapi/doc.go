// Package smapi serves the 3scale-compatible Service Management API
// (docs/service-management-api.md in the repository) over fasthttp: authorize, authrep, their
// OAuth variants, the batch report, /status, /check.txt and /available.
//
// # Model
//
// A call is parsed into pooled scratch state without copying beyond one
// decode arena, checked in 3scale's order — service credentials, (usage
// well-formedness,) application, app key or OAuth redirect URL, referrer,
// application state, service state, limits — and answered with an
// append-style XML encoder (AppendStatus). The first failing check decides
// the answer: an <error> with a 3scale code and status for malformed or
// unauthenticated calls, a 409 <status> with a <reason> for a denial. The
// hot path (authrep: parse → limiter.Do → event hand-off → response) does not
// allocate; BenchmarkAuthrepServe proves it.
//
// # Decisions where 3scale leaves room
//
//   - usage[M]=#N (set) is accepted by the batch report only; on authorize
//     and authrep it is 403 usage_value_invalid (the limiter cannot set a
//     counter while checking it).
//   - A repeated parameter keeps its last value (Rack's rule), usage too.
//   - Usage is validated (metric_invalid, usage_value_invalid) right after
//     the service credentials, before the application is looked up.
//   - In user_key mode the app is found by user_key (missing or unknown:
//     user_key_invalid); in app_id and oauth modes, and always on the oauth
//     endpoints, by app_id (application_not_found). app_key is checked only
//     in app_id/oauth modes on the plain endpoints, and only if the app has
//     keys. The oauth endpoints check redirect_url/redirect_uri, when sent,
//     against the app's; a mismatch is a 409 redirect_url_invalid /
//     redirect_uri_invalid, as 3scale.
//   - Referrer filters apply when the service requires them and the app has
//     some (3scale). An empty referrer is "referrer is missing"; an empty
//     filter in the config is 422 referrer_filter_invalid.
//   - Error messages never quote secrets the caller sent (provider keys,
//     service tokens, user keys); ids, metric names and values are quoted.
//   - Both service credentials present: provider_key wins.
//   - Limits outside the 3scale table: URL over 1 MiB (the body limit: the
//     3scale Go client sends batch reports in the URL) → 414
//     request_uri_too_long (a request line far over it is refused before it
//     is read whole); body over 1 MiB → 413 request_entity_too_large;
//     headers over 8 KiB → 431 request_header_too_large (NewServer's read
//     buffer is held only by connections in the middle of a request, never
//     by idle ones); more than 1,000 transactions or 64 usage
//     entries → 400 bad_request. Unknown path → 404 not_found, wrong method
//     → 405 method_not_allowed.
//   - Malformed HTTP → 400 bad_request, at once: header lines ending in a
//     bare LF are refused, not held until the read timeout; a TLS handshake
//     on the plain port is closed without an answer (NewServer, through
//     internal/httpserver). Nothing the server logs quotes a request.
//   - Not ready, no configuration, or a sink that refuses events → 503
//     service_unavailable (XML like every other error).
//   - Usage that cannot be counted: a call or transaction whose usage,
//     summed for one metric with its children (as the limiter and the
//     rollups count it; "#N" counting on its own metric only), would pass
//     9223372036854775807, the largest int64, is 422 usage_overflow naming
//     the metric; in a batch report that refuses the whole batch before
//     anything is recorded, like every other invalid transaction. Counters
//     never wrap: a batch transaction that would take one of its
//     application's counters past that value is found only while the batch
//     is recorded, and is refused alone: it counts nowhere (no counter, no
//     event), the other transactions count, and the answer is 422
//     usage_overflow quoting the first refused transaction's label and how
//     many were refused. (3scale answers such batches 202 and files the
//     error in a per-service error log, which Sluice does not have; an
//     answer that says what was dropped beats a silent 202.) Authrep and
//     authorize never reach a counter's overflow: current+usage <= max is
//     checked first, and usage past it is a 409 limits_exceeded.
//   - Batch report: query parameters and then the body (none, urlencoded or
//     multipart) are merged. transactions[][...] (array form) is
//     transactions_format_invalid; transactions[I] or transactions[I]= alone
//     is transactions_has_nil_transaction. Timestamps (unix seconds, 3scale's
//     "2006-01-02 15:04:05 -0700", or RFC 3339) outside now−24h..now+1h, or
//     unparsable, are 422 not_valid_data. The app key is not checked on
//     report, as 3scale. A content type other than urlencoded or multipart
//     with a body is content_type_invalid; a body without a content type is
//     read as urlencoded.
//
// # Events
//
// An authorized authrep yields one KindAuthrep event, each batch transaction
// a KindReport event (TS = its timestamp), and every denial (409) of
// authorize or authrep a KindDenied event with Reason = the rejection code
// and no usage (so that no rollup can count it). Errors (4xx) yield none.
//
// Usage is counted in the limiter before its event is handed to the sink,
// so that usage the limiter refuses (usage_overflow) never becomes an event.
// A sink that implements SinkHealth is asked before usage is counted: when
// it is not accepting, authrep and report answer 503 and count nothing. If
// Append still fails afterwards (a race), authrep answers 503 with its usage
// already counted in the limiter (counters err on the strict side until the
// window closes; the event log, which rebuilds them, has no such unit), and
// a report keeps the transactions before the failing one recorded, the
// failing one counted in the limiter only, and answers 503 (a retry may
// record those again: at-least-once).
package smapi
