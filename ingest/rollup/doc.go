// Package rollup is the rollup role: a Kafka consumer group (default group
// "sluice-rollup" on topic "sluice.usage") that folds usage events into
// ClickHouse rollups exactly once, however it is killed.
//
// # What it writes
//
// Each batch of records (up to Options.MaxBatchEvents, or what arrived within
// Options.MaxBatchWait) is decoded and aggregated in memory per (tenant,
// service, app, plan, metric, reason, code, region, minute). The metric
// hierarchy is applied from the configuration in force at rollup time
// (Hierarchy): a child's usage is added to each ancestor too, except for
// flat entries (event.Usage.Flat: the caller sent flat_usage and already
// added it into the ancestors). Denied events
// become denial rows (metric "", reason set, value = calls). The batch is then
// written as ONE insert into each table: usage_minute, usage_hour, usage_day,
// usage_month (the minute rows regrained in memory), usage_sets and, with
// Options.Raw, events_raw. The tables are described in ingest/chschema.
//
// Rows never wrap and are never negative: usage values below zero (which
// the API never accepts; only a foreign or broken producer can write them)
// are dropped and counted (Stats.Negative), and a batch's sum for one row
// that would pass 9223372036854775807, the largest Int64, is stored as that
// value and counted (Stats.Saturated), both logged. The check costs one
// compare per usage entry until the batch's whole usage passes the largest
// Int64, and a compare per add after that. A row of at least 2^32 units is
// also checked against what its key already holds in the table (one SELECT
// per table for such a batch) and cut to what is left up to the largest
// Int64: ClickHouse sums a key's parts modulo 2^64 when it merges them, and
// a key past 2^64 would come back as a plausible positive total no reader
// could tell from a true one. A key past the largest Int64 but below 2^64
// merges into a negative row, which readers present as 9223372036854775807
// ("at least that"; see ingest/chschema); small rows alone would need 2^31
// inserts into one key to get further.
//
// Sets ("#N", which replace a counter instead of adding to it) are not usage
// and are not summed: each becomes one usage_sets row (tenant, service, app,
// metric, ts, value), raw as sent, without the hierarchy. chschema.OpenWindowSums does
// not apply them; it returns the latest set per metric (chschema.OpenWindows.Sets) so
// that a limiter restore can honour them.
//
// # Why replays never double count
//
// Kafka delivery is at-least-once: after a crash, records are read again.
// The argument that this is harmless rests on three facts.
//
//  1. An insert of one block into one MergeTree table is atomic: the server
//     writes the block as one new part and makes it visible at once, or not at
//     all. A block splits into several parts only when its rows fall into
//     several partitions; every table is partitioned by `written`, the UTC
//     date of the batch, which is the same for every row of an insert, so each
//     insert is exactly one part. A client killed mid-insert leaves either the
//     whole part (the server got the whole block) or nothing.
//  2. Each insert carries, in the same block, one marker row per Kafka
//     partition of the batch (tenant_id "", kp = partition, ko = last offset +
//     1). So a table contains the records of partition p below M exactly,
//     where M is the largest marker for p in that table: records are written
//     in offset order, and a record's rows land in the same part as the marker
//     that covers it.
//  3. Inserts into different tables are not atomic together, so the writer
//     keeps M per table, not one per batch. A record below a table's M is
//     skipped for that table only. A batch that reached usage_minute but not
//     usage_hour (a kill between the two inserts, or a failed insert) is
//     completed on replay for usage_hour alone.
//
// On assignment of a partition (kgo AdjustFetchOffsetsFn), the consumer reads
// every table's markers and seeks to the smallest M: the group's committed
// offsets are ignored (they are committed after each write only as a hint for
// lag monitoring), so ClickHouse being ahead or behind Kafka's view, or a new
// group name, changes nothing. A partition some table has no marker for is
// read from the start of the log. When an insert fails, its outcome is
// unknown (it may have landed before the connection broke), so the writer
// rereads the markers before retrying; the retry then writes only the tables
// that lack the batch. A batch that cannot be written for
// Options.WriteRetryFor ends the session: the client leaves the group and a
// new session resumes from ClickHouse. Consumption never advances past a
// batch that is not in ClickHouse.
//
// A writer killed right after sending a block leaves the server to finish
// that insert on its own (the block may still be in the socket buffers);
// if the next owner read the markers before it committed, the block would be
// counted twice (the crash test caught exactly this). So before reading
// markers, the writer fences: every insert carries a query_id naming the
// database, table and Kafka partitions it covers, and the new owner runs
// KILL QUERY ... SYNC on the inserts touching its partitions. When that
// returns, each such insert is either committed, with its markers visible,
// or gone for good. What remains is a window of a few milliseconds in which
// the server has not yet read the dead writer's query from its socket at
// all; the new owner starts well after that (process start, group join).
//
// Rebalances cannot move a partition mid-batch: the client blocks rebalances
// while a batch is in hand (kgo.BlockRebalanceOnPoll) and allows them between
// batches, after which a new owner starts from the markers. The other way
// to get two writers for one partition is a member removed from the group
// without knowing it: its heartbeats stopped getting through (a stalled or
// partitioned process, an overloaded broker) for the session timeout, the
// coordinator gave its partitions to another member, and it learns so only
// when a heartbeat finally gets an answer. Until then it would go on
// polling and writing batches the new owner also writes (the rebalance test
// caught this with a 6 s session). So the writer holds a lease (see lease):
// before every insert it checks that some heartbeat, join or sync sent less
// than three quarters of the session timeout ago was answered. The
// coordinator cannot have removed a member within the session timeout of a
// request it answered, so an insert sent under the lease reaches the server
// before the new owner's fence, which then waits for it or kills it. A
// member whose lease ran out ends its session and resumes from the markers.
// WriteRetryFor is kept below the rebalance timeout so that waiting for
// ClickHouse does not hold up a rebalance.
//
// Markers and retention: old partitions are dropped by
// chschema.DropExpired, which first copies each Kafka partition's newest
// marker forward if it would be dropped (markers are maxima, so a duplicate
// copy is harmless). Marker rows cost one row per table, Kafka partition and
// batch.
//
// Records Kafka deleted before they were written (the topic's retention
// is shorter than the rollup's downtime, or someone ran DeleteRecords) cannot
// be rolled up: the consumer asks for the offset ClickHouse needs and Kafka
// answers from its log start. Such a gap is never passed over silently: the
// usage producers are idempotent and not transactional, so a partition's
// offsets are dense, and an offset past the one expected is logged as an
// error and counted (Stats.Missing, sluice_rollup_missing_total). A log
// behind the markers (a topic deleted and created again) is logged too: its
// records below the markers are skipped as already counted.
//
// What this does not cover: ClickHouse losing data it acknowledged (it does
// not fsync parts by default, so a power loss can lose recent parts; a
// process kill of ClickHouse cannot) and a restore of ClickHouse from an old
// backup (then the consumer resumes from the backup's markers, which is
// right as long as Kafka still has the records).
//
// # Restoring counters
//
// chschema.ResumeOffsets says where every table is complete. chschema.OpenWindowSums reads the
// usage of every open calendar window (minute to eternity) together with,
// per unit, the markers of the table it was read from, in the same SELECT,
// so sums and offsets come from one snapshot; a tail replay applies a record
// to a unit's counters only when chschema.OpenWindows.Includes is false.
package rollup
