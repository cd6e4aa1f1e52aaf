// Package region makes one limit hold across regions while every call is
// answered in its own region: each API node tails the usage topic of every
// peer region's Kafka cluster and counts that usage toward its limits with
// scope global.
//
// # Model
//
// Every region runs its own Sluice cluster (API, rollup and query nodes) and
// its own Kafka cluster, named by --region. A region's usage topic holds
// only the usage admitted in that region. --peer-region NAME=BROKERS names
// another region's Kafka cluster; every API node reads the usage topic of
// every peer directly (one consumer per peer, no consumer group: each node
// needs every partition) and applies each event to the limits of the
// application's plan whose scope is global (catalog.Plan.Global), at the
// event's own time, exactly as the cluster projection applies the usage of
// the other nodes of its own region. Limits with scope region never see a
// peer's usage. Calls are never forwarded across regions.
//
// # Direct consumption, not MirrorMaker 2
//
// The nodes read the peers' topics over the network instead of a local
// copy made by MirrorMaker 2:
//
//   - one hop instead of two: the replication lag that bounds the overshoot
//     below is the fetch from the peer, not a mirror's fetch and produce plus
//     a local fetch;
//   - the lag is measured where it matters, per peer, from each event's
//     receive time to its application here (sluice_region_peer_lag_seconds);
//   - a region's usage topic holds its own usage only, so the rollups, the
//     counter restore and the cluster projection stay as in one region, and
//     no event can loop back (an event of this region met in a peer's log is
//     skipped and counted in sluice_region_peer_loop_events_total);
//   - nothing more to deploy, configure or monitor.
//
// The price is one connection per API node and peer broker across regions,
// and a peer's brokers must be reachable (advertised listeners) from every
// API node of the other regions, with the same TLS and SASL settings as the
// node's own (Options.KafkaOpts).
//
// # Each event once, in order
//
// A peer's tail is one Kafka client consuming every partition of the peer's
// usage topic from a listed offset: it returns each partition's records in
// order and, across broken connections and a peer that is down for a while,
// resumes after the last record it returned. So while a node runs, every
// event of a peer is applied once. A node that restarts starts from empty
// counters for the peers' part: its own region's ClickHouse and usage topic
// restore only its own region's usage (the rollups never see a peer's
// events), and the peers' part is read again from their logs, from the start
// of the oldest window open now among the global limits (ReplayFrom), at
// most --peer-restore-span back (default 24 h), found by the records'
// timestamps (the events' receive times). Every peer event received since
// then is applied once more into empty counters, which is once. Peer offsets
// therefore need no storage: the peer's log is the snapshot. Readiness waits
// for the peers to be read to where their logs ended at start, up to
// --peer-restore-timeout; a peer unreachable then is caught up in the
// background.
//
// Global limits with windows longer than the restore span (week, month,
// year, eternity with the default) lose, on a restart, the peers' usage
// older than the span: until their windows end they may admit that much
// more. Raise --peer-restore-span to cover them, at the cost of reading that
// much more of the peers' logs at start (the Kafka retention bounds it too).
//
// # Bound: global limits
//
// A node decides a global limit from its own region's usage (exact within the
// region, see ingest/cluster) plus the peers' usage it has applied. What it
// lacks is what each peer admitted within that peer's replication lag, so for
// one window
//
//	overshoot <= sum over the other regions r of (rate_r × lag_r)
//
// where rate_r is region r's admission rate for the application and lag_r the
// time its events take to reach this region's nodes (its producer's linger
// and Kafka's acknowledgement, plus the cross-region fetch: up to one and a
// half round trips plus the fetch wait of 100 ms, as an event can reach the
// peer's broker just after it answered an empty fetch). While a peer is cut off, lag_r
// is the length of the cut: the overshoot is at most what the peer admits
// during it, and both sides catch up from each other's logs once it heals,
// counting nothing twice. Each region measures its lags
// (sluice_region_peer_lag_seconds, sluice_region_peer_lag_max_seconds,
// sluice_region_peer_lag_records, sluice_region_peer_up).
//
// The receive times are the peer's clock: a peer whose clock runs ahead makes
// the measured lag look shorter by the skew. Keep the regions' clocks in sync
// (NTP) when the lag metrics feed the bound.
//
// # Strict global limits
//
// A global limit with strict: true (calendar periods, consistency exact)
// never lets the regions' admissions within one window add up past max,
// whatever the lag and however long a peer is cut off. Each region may admit
// at most its share of the window. Shares start at max/N for N regions (the
// regions named first in byte order get one unit more when N does not divide
// max, so they add up to max exactly; every region must therefore name the
// same set of peers), and then follow demand:
//
//	share_r = max/N (+1) + units granted to r by the others - units r granted
//
// The check is the limiter's own atomic check-and-increment on the
// application's counter (every region's usage), against
//
//	share_r + (the peers' usage applied to this window so far)
//
// instead of max (Shares.Cap), which is "r's own usage + delta <= share_r":
// the peers' usage is summed per window as the tails apply it, and since it
// only grows and is read before the limiter counts, a check that reads it a
// moment early is stricter, never laxer.
//
// # Shares follow demand, through the log
//
// Every second (DefaultRebalance) the node that decides an application (the
// owner of its partition in its region) publishes, on its region's shares
// topic (SharesTopic, beside the usage topic), its status of each open
// strict window someone wants: its free share (share less own usage) and its
// demand (calls in the last second). The other regions read it like the
// usage. With F the free units of the regions heard from within three
// seconds and D their demand, a region holding more than its demand's part
// of F, free_r > F × demand_r / D, grants the surplus to the regions short of
// theirs, in proportion to what they lack, as grant records on its shares
// topic; a region counts a grant to it when it reads it from the granter's
// log. Granting is an escrow: a region gives only units it holds, and
// before it writes the grant it takes the units from its share, waits for
// every decision that may have read the higher share (an epoch of decisions
// in flight, Shares.Done), and takes back whatever those decisions used. So
// at every moment
//
//	sum over regions of share_r + units in grants not yet read <= max,
//
// each region admits within its own share, and the regions' admissions add
// up within max, with any lag, lost records (a grant that could not be
// written stays taken: units lost, never doubled) or partition (a region
// cut off keeps its share and gets no more). A restarted node reads its own
// region's shares topic before it decides (its earlier grants, or those of
// the application's previous owner), and the peers' grants to it as they
// come.
//
// The price is under-admission. Units move one rebalance interval plus one
// replication lag (L, the grant's way to the receiver) after demand appears
// where they are not, so within a window the units left unadmitted while some
// region's callers are refused are at most
//
//	the units that regions without demand held during the last I + L of
//	the window (I the rebalance interval), plus the units in grants not yet
//	read when the window ends,
//
// and, while a region is cut off, the share it holds (nobody else can use
// it) or lacks (it cannot be given more). With demand in every region
// throughout, or in one region from more than I + L before the window
// ends, every unit is admitted but for the rounding of grants (at most one
// unit per region and interval). Answers show the plan's max; a call refused
// for the share gets "usage limits are exceeded" with a current value below
// max. Within a region the guarantees of exact limits apply (ingest/cluster)
// with their stated exceptions; in addition, if an application's partition
// moves to another node of the region while its owner is writing a grant,
// the new owner may decide once with the share before the grant (it reads
// the grant within a lag): that handoff can over-admit by that grant. Usage
// reported with report is counted, never refused, as everywhere.
//
// # Known gaps
//
// Partitions added to a peer's usage topic while a node runs are read from
// its next start. The peers' part of a restored counter comes from their
// logs, so it is as complete as their retention (keep more than
// --peer-restore-span). The first decision of an application's strict
// window on a node adds the window to its table (one allocation).
//
// # Configuration across regions
//
// Each region has its own configuration topic. The supported way to keep
// regions' configuration equal is to apply the same change to each region:
// the same --config file at every region's start, or the same admin API
// call to an API node of each region (the admin API's PUT routes are
// idempotent, so retrying a region is safe). Rollups and queries stay per
// region: a region's query API answers for the usage admitted there, with
// region as a group-by, and a total across regions is the sum of each
// region's answer.
package region
