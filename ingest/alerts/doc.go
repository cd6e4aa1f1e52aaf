// Package alerts raises utilization alerts: when an application's usage of a
// limit reaches one of its service's thresholds (a percentage of the limit's
// max; 3scale's 50, 80, 90, 100, 120, 150, 200 and 300 % by default) within a
// window, one alert names the tenant, service, application, metric, period,
// window, threshold, the counter's value and max, and the time it was seen.
//
// # Model
//
// Detection happens on the API nodes, on their limiter counters. A Detector
// is handed every counter that moved: the reports of an admitted authrep
// (limiter.Report carries each counter's value before and after the call),
// the changes of a reported transaction (limiter.RecordChanges), and, in a
// cluster, the changes the node's projection of the usage log makes when it
// applies the other nodes' usage. For each it compares the value before and
// after with the thresholds' marks, ceil(max × pct / 100) (Mark): a counter
// below its lowest mark costs one compare, and a crossing is a mark m with
// before < m <= after. Crossings go, without blocking, into a bounded queue;
// a goroutine writes them to the alerts topic (Topic, "sluice.alerts"), keyed
// by the alert's id. The hot path allocates nothing for it.
//
// Limits on sliding windows raise no alert: a sliding window has no start of
// its own, so "once per window" would mean nothing. Limits with max 0 (a
// disabled metric) raise none either.
//
// Storage and delivery happen in the rollup role: a Sink reads the alerts
// topic as the consumer group "sluice-alerts", keeps the first copy of every
// id, POSTs it to its tenant's webhook (if the tenant has one), stores it in
// ClickHouse (the table chschema.Alerts) and commits its offsets. The query
// API lists the stored alerts (GET /api/v1/alerts).
//
// # Guarantee: each threshold once per window
//
// An alert's id is a function of (tenant, service, application, metric,
// period, window start, threshold) alone (KeyOf). So
//
//	for every window of a limit and every threshold that the application's
//	usage in that window reaches, the alerts table holds exactly one alert,
//	and the webhook is called with it until it accepts it once,
//
// however many API nodes observe the crossing, with these bounds: a
// crossing no node has written to the alerts topic is lost (below), and a
// webhook call can repeat across a crash of the rollup node (below).
//
// At least one copy reaches the topic. Every API node's counters are a
// projection of the whole usage log: its own admitted calls and reports in
// its hot path, every other node's through its projection (ingest/cluster).
// Within one window a counter only grows (a "#N" set may lower it; it then
// crosses marks again, and the id makes those copies of the same alert), so
// every node's counter passes every mark the window's usage reaches, once,
// and that node's Detector sees it. A Detector's queue is in memory (Close
// tries to write it for 5 s), so a node can stop with crossings unwritten;
// but a node that starts rebuilds its counters by seeding ClickHouse's sums
// and replaying the Kafka tail the rollups do not have yet through its
// Detector (ingest/restore), so it reports again every crossing made by
// usage in that tail, its own last accepted usage included (a killed
// node's acknowledged events reach Kafka from its journal before it
// restores). An alert is therefore lost only when no running node saw the
// crossing, its node stopped before writing it, and the rollup stored the
// crossing usage in ClickHouse before that node restarted (in a cluster the
// other nodes' projections see every crossing, so all of them must stop);
// or when a Detector's queue was full (sluice_alerts_dropped_total).
//
// At most one copy is kept. Every copy of an alert has the same id and so
// the same record key: all copies are in one partition of the alerts topic,
// read in order by one member of the group at a time. The Sink skips an id
// it stored lately (an in-memory set) or that ClickHouse already holds
// (asked once per batch), and otherwise delivers and stores the first copy
// of the batch. Two members can only meet on one id across a rebalance of
// the group, when the new member re-reads records after the old member's
// last commit; whatever the old member stored is then in ClickHouse, and a
// row that is written twice anyway (the old member's insert and the new
// member's lookup overlapping) is the same alert: the table is a
// ReplacingMergeTree on the id, and every reader groups by id.
//
// Copies differ only in what each node saw: the value just after the
// crossing and the time. The first copy stored wins (readers take the
// earliest time).
//
// # Webhooks
//
// A tenant with webhook_url gets every alert of its services as a POST of
// the alert's JSON (the Alert type) with the headers
//
//	Content-Type: application/json
//	X-Sluice-Alert-Id: <id>            (the same for every copy and attempt)
//	X-Sluice-Attempt: <n>              (1, 2, ...)
//	X-Sluice-Signature: sha256=<hex>   (HMAC-SHA256 of the body, keyed with webhook_secret)
//
// A receiver verifies the signature by computing the HMAC-SHA256 of the raw
// body bytes with its secret, hex-encoding it in lowercase, and comparing
// "sha256=" + that with the header in constant time (Verify does exactly
// this). The body carries the alert's time, so a replayed old request is
// recognisable by it and by its id.
//
// A 2xx answer is success. A connection error, a timeout, 408, 429 or a 5xx
// is retried with exponential backoff (DefaultRetry: 8 attempts, 1 s
// doubling to at most 30 s between them, 10 s per attempt); any other answer,
// including a redirect (never followed), is final. An alert whose delivery
// fails for good is still stored and counted
// (sluice_alerts_webhook_failed_total). The Sink stores a batch after its
// deliveries end, so a receiver that is down delays the alerts behind it by
// at most the retry budget. If the rollup node stops after a delivery and
// before the store, the next member delivers the alert again, with the same
// X-Sluice-Alert-Id: receivers that must act once deduplicate on it.
//
// The webhook secret is never logged, and neither is the webhook URL (a URL
// may carry a token in its path or query): errors name its host only.
package alerts
