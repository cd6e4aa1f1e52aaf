// Package kafka is Sluice's usage-event producer: it sends every event the
// API accepts to the usage topic, and keeps events on disk while Kafka cannot
// take them. *Producer implements the API's EventSink (Append) and SinkHealth
// (Accepting).
//
// # Records
//
// One record per event: value = event.AppendEvent (ingest/event/FORMAT.md),
// key = "service_id/app_id", timestamp = the event's Received time (never its
// usage time, so the broker's time-based retention cannot delete a
// just-accepted event that reports old usage). Partition =
// (uint32(xxhash64(key)) & 0x7fffffff) % partitions, so one application's
// events share a partition and stay ordered. The franz-go client is
// idempotent with acks=all, lingers 5 ms and compresses batches with lz4.
//
// # Two modes
//
// Direct: Append encodes the event into a pooled buffer, copies the frame
// into the ack journal (below) and hands the record to franz-go with
// TryProduce, which never blocks; a promise marks the journal frame done
// and recycles the record. Nothing allocates per call.
//
// Spooling: when MaxBuffered events are already waiting for Kafka, a record
// fails (deadline, unknown topic, any error), or the journal is full, the
// producer switches to spooling. New events are appended to the spool's main
// log; records that franz-go fails are appended, in promise order, to the
// spool's retry log. Append then costs a buffered write under a mutex plus
// the journal copy: it does not wait for the network or for fsync.
//
// A background drainer waits until no direct record is in flight, then sends
// the retry log and then the main log, oldest first, in batches; each batch
// is committed (cursor file, fsync'd) only when Kafka acknowledged it, and
// failed records of a batch are resent after a backoff (franz-go fails
// records per partition as a suffix, so resending keeps order). When both
// logs are empty the producer returns to direct mode.
//
// # The ack journal
//
// SpoolDir/journal is a fixed-size file (JournalBytes, default 64 MiB)
// mapped MAP_SHARED. Before Append returns nil, the event's frame (CRC-32C,
// sequence number, payload) is copied into the mapping: a memcpy into the
// page cache, no system call, and the kernel keeps those pages when the
// process dies. A frame is marked done when the event is durable elsewhere:
// Kafka acknowledged it, or it was written to a spool file. The file is 16
// segments used round robin; a segment is reused only when all its frames
// are done. A full journal (more than about JournalBytes of unacknowledged
// events — MaxBuffered should fit several times over) sends new events to
// the spool, written through to the file at once, and counts them in
// Stats.JournalFull with a rate-limited error log: slower, equally safe.
//
// # Recovery
//
// New, before it returns, recovers what an earlier process left: journal
// frames not done, and the first batch of each spool log (the drainer may
// have sent it and died before committing). Kafka may already hold some of
// them, so first it reads each partition they hash to, from just after an
// offset checkpoint kept in the journal's header (the highest offsets Kafka
// had acknowledged before any of those sends began) to the current end, and
// drops every event whose id it finds. Then it sends the journal's remaining
// events, then drains the spool, skipping the ids found. Spooled frames that
// had not reached the spool file are appended to it from the journal first.
// New waits for all of this up to RecoverWait (default 30s; less if Kafka
// makes no progress for DeliveryTimeout, at least 5s), so that a counter restore run right
// after New sees these events in Kafka; if Kafka is down, the check runs when
// it returns, before anything is resent, while new events spool.
//
// Order per key holds across all of this: direct records precede the records
// spooled while they were in flight, and the retry log is drained first. The
// exceptions: a window of one promise latency after a failure, during which
// a later event of the same key can still go direct and overtake the failed
// one; and after a crash, events recovered from the journal are sent before
// the retry log.
//
// # What Append's nil guarantees
//
//   - A crash of the process (SIGKILL, OOM kill, panic) loses nothing and
//     duplicates nothing: every accepted event is in Kafka exactly once after
//     a new Producer on the same SpoolDir has recovered (TestSIGKILLLosesNothing
//     kills producers at random moments, while sending, spooling, draining,
//     recovering, with a full journal and during broker outages, and checks
//     this against kfake and against Apache Kafka 3.9.1).
//   - Broker outages of any length, up to SpoolMaxBytes of spooled events:
//     no loss, no duplicate. Events wait in the spool and are sent when Kafka
//     returns. Records in a request the broker never answered are never
//     abandoned: franz-go resends them with the same producer id and
//     sequence numbers, which the broker deduplicates, and the journal keeps
//     them safe meanwhile.
//   - Graceful shutdown (Close): no loss. Close waits for Kafka while it
//     makes progress, moves to the spool what franz-go knows it never sent,
//     and leaves the rest in the journal (fsync'd) for the next start.
//   - A crash of the machine (power loss, kernel panic) is out of scope: it
//     can lose journal pages and spool writes the kernel had not written back
//     (the spool is fsync'd every SpoolSyncInterval, the journal never).
//
// Exactly-once rests on two assumptions: the broker keeps its idempotent
// producer state across restarts (Apache Kafka rebuilds it from the log and
// expires it after producer.id.expiration.ms, 1 day by default; kfake saves
// it when closed), and the usage topic's offsets are contiguous (no
// transactions or compaction), as the counter restore assumes too. If a
// broker forgets a producer mid-outage, franz-go starts a new producer id
// and may write a batch twice; consumers that must be exact can still
// deduplicate by event id.
//
// # Full spool
//
// A full spool is loud: Stats.SpoolFull, a rate-limited error log line, and
// the policy: FullRefuse (default) makes Append return ErrSpoolFull and
// Accepting false, so the API answers 503 and nothing acknowledged is lost;
// FullDrop accepts and drops the event, counted in Stats.Dropped. Records
// that were already accepted and then fail in Kafka are always spooled, even
// past the bound.
//
// Spool frames carry a CRC-32C; a torn write at the end of the last segment
// is truncated on open, and a damaged frame is skipped and counted in
// Stats.Corrupt (its event is lost, which the counter makes visible).
package kafka
