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
//   - usage[M]=#N sets M's counters to N, as in 3scale: authorize and
//     authrep check N (plus the call's other usage of M) against M's
//     limits whatever the counters hold, authrep and report set them. A
//     set on a child sets each ancestor too, as its own Set entry in the
//     call (and so in the event), unless flat_usage; 3scale lets a later
//     plain child entry in the same call clobber the parent's set (order
//     of parameters decides), Sluice adds it on top.
//   - A repeated parameter keeps its last value (Rack's rule), usage too.
//   - Usage is validated (metric_invalid, usage_value_invalid) right after
//     the service credentials, before the application is looked up.
//   - In user_key mode the app is found by user_key (missing or unknown:
//     user_key_invalid); in app_id and oauth modes, and always on the oauth
//     endpoints, by app_id (application_not_found). app_key follows
//     3scale's two rules: in app_id mode on the plain endpoints, an app with
//     keys needs one ("application key is missing" / "... is invalid"); on
//     the oauth endpoints, and on the plain ones for an oauth service (what
//     OpenID Connect gateways call), it is the client secret, checked only
//     when sent (an empty one is missing, also for an app without keys).
//     The oauth endpoints check redirect_url, or else redirect_uri, when
//     sent and not empty, against the app's (409 redirect_url_invalid /
//     redirect_uri_invalid), and name the element of the answer after the
//     parameter sent.
//   - no_body is read from the 3scale-options header and, when the header
//     does not name it, from the query (any value but 0 and false), as
//     3scale does. limit_headers without any limit in play sends
//     remaining and reset -1 and no 3scale-limit-max-value.
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
//     headers over 8 KiB → 431 request_header_too_large. A connection
//     reads with a 16 KiB buffer (ServerReadBufferSize); one that sends a
//     longer request line moves to a second server whose buffer holds the
//     longest line and is held only while a request is read and answered
//     (NewServer, internal/httpserver Options.LongLines). More than 1,000
//     transactions or 64 usage
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
//     is transactions_has_nil_transaction. A content type other than
//     urlencoded or multipart, with a body or without, is
//     content_type_invalid; a body without a content type is read as
//     urlencoded. The app key is not checked on report, as 3scale.
//     Timestamps are read as 3scale reads them (unix seconds, or a date
//     with optional time and zone: "2010-04-26 19:30:25 -02:00",
//     "2012/10/01", ...); an empty or unreadable one is the time of the
//     report. What 3scale checks on arrival (structure, credentials,
//     user_id) refuses the batch; what it finds only in its worker (unknown
//     application or user key, app_id with user_key, unknown metric, bad
//     usage value, timestamp outside now−24h..now+1h) drops that
//     transaction: the batch is 202 and the error goes to the service's
//     report error log, GET /services/{id}/errors.xml (last
//     MaxServiceErrors per service, per node, in memory, lost on restart).
//
// # Differences from 3scale's backend (apisonator), kept on purpose
//
// Apisonator's integration tests for authorize, authrep, oauth and report
// run translated against this package (TestApisonatorIntegrationCases).
// Where Sluice answers otherwise, it does so to protect the user:
//
//   - A wrong app_key is "application key is invalid": apisonator quotes
//     the key (application key "…" is invalid), a client secret that
//     gateways then log. Error messages never quote credentials either.
//   - A batch report transaction that apisonator's worker rejects drops
//     that transaction alone, and the others count: apisonator drops the
//     whole batch after its 202, so one stale app id loses everyone's
//     usage. The error log says which transaction went and why.
//   - Usage that cannot be counted (usage_overflow) is a 422 answer, not a
//     202: no counter of Sluice wraps (see "Decisions" above).
//   - The report error log is read with the service's own credentials at
//     GET /services/{id}/errors.xml; apisonator's sits on its internal API
//     behind the 3scale admin portal, which Sluice does not have.
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
