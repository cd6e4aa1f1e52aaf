// Package envoyrls answers Envoy's global rate limit protocol: the gRPC
// service envoy.service.ratelimit.v3.RateLimitService (ShouldRateLimit),
// which Envoy, Istio and every Envoy-based gateway call, and Envoy
// ratelimit's HTTP form of it, POST /json, with the standard gRPC health
// service beside it (NewGRPCServer). Its configuration is Envoy
// ratelimit's own YAML files, unchanged; its counters are Sluice's limiter;
// every call's usage is a Sluice usage event.
//
// # Configuration
//
// Parse and Load read Envoy ratelimit's files: a domain per file, a tree
// of descriptors (key, optional value, rate_limit with unit,
// requests_per_unit, name, replaces, unlimited; shadow_mode, quota_mode,
// detailed_metric, value_to_metric, share_threshold, metadata). They refuse
// what Envoy ratelimit refuses (unknown keys, duplicate domains or
// descriptors, invalid units, a unit beside unlimited, share_threshold
// without a wildcard, empty or self-naming replaces), refusing the whole set
// on one bad file. Units are Envoy's (second to year) plus Sluice's
// "sliding:<duration>" (1s to 24h). Service.Reload and Service.Watch put a
// directory's files in force; a set that does not load is reported and the
// previous one kept.
//
// # Matching
//
// As in Envoy ratelimit: at each level of the tree, a request entry
// matches the descriptor with its key and value, else the first wildcard
// value ("files/*", "a*b") that matches, else the descriptor with its key
// alone; a descriptor's limit applies only when the request's last entry
// lands on it. An unknown domain, or a descriptor nothing matches, is OK
// without a limit; unlimited is OK with limit_remaining 4294967295; a limit
// named in another matched limit's replaces does not apply.
//
// # Counters: the "application" is the values
//
// Each matched limit is counted in one limiter application per distinct
// combination of the values the configuration did not fix (a key-only or
// wildcard entry's value; for share_threshold, its pattern). Such a value
// set is created on first use and dropped by Sweep once every window it
// counted in has closed. Its limiter key is drawn from a range the catalog
// never uses (from 2^63 up) and never reused. Memory per active value: the
// limiter's 128-byte record, an entry of about 100 bytes plus the path and
// values (its identity) and the application id (at most MaxAppIDBytes).
// Options.MaxValues (default DefaultMaxValues) caps a domain's active
// values: past it, a limit's new values share one counter set (application
// "~overflow"), so limits stay enforced, more strictly, memory stays
// bounded, and /metrics counts the calls that overflowed.
//
// # Decisions
//
// Each descriptor is decided on its own, atomically in the limiter: its
// hits (the descriptor's hits_addend if set, zero included, else the
// request's, else 1) are counted only if they fit under requests_per_unit,
// so hits refused are never counted (Envoy ratelimit with Redis counts
// them, so a refused large hits_addend keeps later calls out until the
// window ends; here they pass again when they fit); zero hits are a check
// that counts nothing and records no event. Other descriptors of
// the same call are counted whatever this one's answer, as in Envoy
// ratelimit by default. The overall code is OVER_LIMIT when a descriptor
// not in shadow or quota mode is over, or every quota-mode descriptor is.
// A shadow-mode descriptor over its limit is answered OK and its hits are
// counted all the same. Each status carries current_limit,
// limit_remaining (requests_per_unit minus the count, never below 0) and
// duration_until_reset (the calendar window's end, or when a sliding
// window's oldest usage leaves it). Calendar windows are UTC: second,
// minute, hour and day as in Envoy ratelimit; week starts on Monday, month
// and year are calendar months and years (Envoy ratelimit uses 7, 30 and
// 365 days from the epoch).
//
// # Events
//
// Every descriptor with a limit and hits yields one usage event: tenant
// Options.Tenant, service = the domain, application = the values (escaped,
// "/"-joined; "~" when there are none), metric = MetricName of the
// descriptor's path; kind authrep with hits as its value, or denied
// (reason limits_exceeded) when refused. AddToCatalog declares the domains
// and metrics in the catalog so the query API serves them. A sink that is
// not accepting events makes calls Unavailable before anything is counted.
//
// # Bounds
//
// A request has at most MaxDescriptors descriptors of MaxEntries entries,
// keys of MaxKeyBytes and values of MaxValueBytes; hits_addend is at most
// 2^63-1; a message is at most MaxMessageBytes. Anything else, a limit
// override in the request, or negative hits, is InvalidArgument (400 on
// POST /json) without side effects.
//
// # Cluster and restarts
//
// Counters live in the node's limiter, which decides every call it
// receives (no ownership or forwarding: those route catalog applications).
// ApplyRemote, fed by the cluster's projection of the usage topic, counts
// the other API nodes' usage of Envoy domains too, so the nodes converge:
// the bound is that of the catalog's "consistency: local" limits, at most
// what the other nodes admit within one replication lag over
// requests_per_unit. Point the gateway at one node where a limit must
// never be passed.
//
// After a restart, Restore seeds the calendar windows (minute and longer)
// from the rollups' sums, before the node serves: what the rollup had not
// yet written (its lag, seconds) and second and sliding windows start from
// zero. The usage events are complete either way.
package envoyrls
