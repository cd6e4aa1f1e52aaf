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
// Direct: Append encodes the event into a pooled record and hands it to
// franz-go with TryProduce, which never blocks; a promise counts the
// acknowledgement and recycles the record. Nothing allocates per call.
//
// Spooling: when MaxBuffered events are already waiting for Kafka, or a
// record fails (deadline, unknown topic, any error), the producer switches to
// spooling. New events are appended to the spool's main log; records that
// franz-go fails are appended, in promise order, to the spool's retry log.
// Append then costs one buffered write under a mutex: it does not wait for
// the network or for fsync.
//
// A background drainer waits until no direct record is in flight, then sends
// the retry log and then the main log, oldest first, in batches; each batch
// is committed (cursor file, fsync'd) only when Kafka acknowledged it, and
// failed records of a batch are resent after a backoff (franz-go fails
// records per partition as a suffix, so resending keeps order). When both
// logs are empty the producer returns to direct mode. A new Producer on the
// same SpoolDir drains what an earlier process left, before any new event.
//
// Order per key holds across all of this: direct records precede the records
// spooled while they were in flight, and the retry log is drained first. The
// exception is a window of one promise latency after a failure, during which
// a later event of the same key can still go direct and overtake the failed
// one.
//
// # What Append's nil guarantees
//
//   - Broker outages of any length, up to SpoolMaxBytes of spooled events:
//     no loss. Events wait in the spool and are sent when Kafka returns.
//   - Graceful shutdown (Close): no loss. Close waits for Kafka while it
//     makes progress, then moves everything still buffered into the spool
//     and fsyncs it.
//   - A crash of the process (SIGKILL, OOM) or of the machine loses what was
//     only in memory: events in franz-go's buffer not yet acknowledged
//     (normally a few milliseconds' worth: linger plus a round trip; at most
//     MaxBuffered events, and only for up to 1.5×DeliveryTimeout once the
//     broker stops answering, after which they are moved to disk), and spooled
//     events not yet fsync'd (at most SpoolSyncInterval, default 100 ms).
//     An event acknowledged by Kafka survives a crash of Sluice.
//
// Delivery is at-least-once. Duplicates arise when franz-go has to abandon
// records the broker may have written (the broker died mid-request, or Close
// ran out of time), and when a crash hits between Kafka's acknowledgement of
// a spooled batch and the cursor commit. Consumers that need exact totals
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
