package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/event"
)

// Recovery after a crash. What an earlier process may have left half done:
//
//   - journal frames not marked done: events Append accepted that Kafka had
//     not acknowledged (some may have been written by the broker, the
//     acknowledgement lost with the process) — or that were written to the
//     retry log just before the kill;
//   - the first batch of each spool log: the drainer may have sent it and
//     been killed before committing its cursor.
//
// Before anything is sent again, the drainer reads each partition those
// events hash to, from just after the journal's persisted checkpoint (which
// predates all of those sends) to the current end, and drops every event
// whose id it finds there. Journal frames that are in the retry log's last
// segment are dropped at once (the spool sends them). The rest of the
// journal is sent before the spool, then the spool drains with the found
// ids skipped. Until then the producer spools new events, so nothing
// overtakes the recovered ones.

// candidate is an event that may already be in Kafka.
type candidate struct {
	id  [16]byte
	key []byte
}

type recovery struct {
	frames  []jframe    // journal frames to resend, in write order
	cands   []candidate // frames' and spool first batches' events
	floor   []int64     // persisted checkpoint: per partition, the last offset known before the sends
	checked bool        // Kafka was read; skip holds what it had
	skip    map[[16]byte]struct{}
}

// eventID extracts the id of an encoded event (versions 1 and 2 put it at
// the same place).
func eventID(value []byte) (id [16]byte, ok bool) {
	if len(value) < 18 || (value[0] != event.Version && value[0] != event.Version2) {
		return id, false
	}
	copy(id[:], value[2:18])
	return id, true
}

// planRecovery decides what the drainer must check and resend, from the
// journal's pending frames and the spool's state. nil means nothing to do.
func (p *Producer) planRecovery(pending []jframe, floor []int64) (*recovery, error) {
	if len(pending) == 0 && !p.retry.pending() && !p.main.pending() {
		return nil, nil
	}
	rec := &recovery{floor: floor}
	if len(pending) > 0 {
		inRetry, err := p.retry.lastSegmentIDs()
		if err != nil {
			return nil, err
		}
		inMain, err := p.main.lastSegmentIDs()
		if err != nil {
			return nil, err
		}
		var toMain []jframe
		for _, f := range pending {
			_, key, value, err := parseFrame(f.payload)
			id, ok := eventID(value)
			if err != nil || !ok {
				p.corrupt.Add(1) // cannot happen: the frame's checksum held
				p.jr.done(f.ref)
				continue
			}
			if f.kind == jMain {
				if _, ok := inMain[id]; ok {
					p.jr.done(f.ref) // killed between the flush and done
				} else {
					toMain = append(toMain, f) // still in the write buffer
				}
				continue
			}
			if _, dup := inRetry[id]; dup {
				p.jr.done(f.ref) // killed between the retry log write and done
				continue
			}
			rec.frames = append(rec.frames, f)
			rec.cands = append(rec.cands, candidate{id: id, key: key})
		}
		if err := p.restoreMainTail(toMain); err != nil {
			return nil, err
		}
	}
	if len(rec.frames) == 0 && !p.retry.pending() && !p.main.pending() {
		return nil, nil
	}
	for _, l := range []*segLog{p.retry, p.main} {
		c, err := l.peekCandidates(drainBatchRecords, drainBatchBytes)
		if err != nil {
			return nil, err
		}
		rec.cands = append(rec.cands, c...)
	}
	return rec, nil
}

// restoreMainTail appends to the main log the frames that were in its
// write buffer when the process died: they are the log's suffix, in journal
// order. One flush writes them all into the last segment, so that if this
// is interrupted the next recovery finds them there.
func (p *Producer) restoreMainTail(fs []jframe) error {
	if len(fs) == 0 {
		return nil
	}
	for _, f := range fs {
		start := len(p.main.wbuf)
		p.main.wbuf = append(p.main.wbuf, make([]byte, frameHeader)...)
		p.main.wbuf = append(p.main.wbuf, f.payload...)
		if err := p.main.endFrame(start); err != nil {
			return err
		}
	}
	tail, retired, err := p.main.syncTargets()
	for _, f := range retired {
		err = errors.Join(err, f.Sync(), f.Close())
	}
	if tail != nil {
		err = errors.Join(err, tail.Sync())
	}
	if err != nil {
		return fmt.Errorf("spool: restoring the main log's unwritten tail: %w", err)
	}
	for _, f := range fs {
		p.jr.done(f.ref)
	}
	p.log.Info("recovery: restored spooled events that were not yet written to the spool file", "events", len(fs))
	return nil
}

// lastSegmentIDs returns the ids of the events in the log's last segment.
func (l *segLog) lastSegmentIDs() (map[[16]byte]struct{}, error) {
	ids := map[[16]byte]struct{}{}
	if len(l.segs) == 0 {
		return ids, nil
	}
	b, err := os.ReadFile(filepath.Join(l.dir, segName(l.segs[len(l.segs)-1].seq)))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	eachFrameEvent(b, func(_ int, _ []byte, id [16]byte, ok bool) bool {
		if ok {
			ids[id] = struct{}{}
		}
		return true
	})
	return ids, nil
}

// eachFrameEvent walks the spool frames in b up to the first incomplete one,
// calling fn with each frame's length and, when the frame is intact and its
// value carries an event id, its key and id (ok true). fn returns false to
// stop the walk.
func eachFrameEvent(b []byte, fn func(n int, key []byte, id [16]byte, ok bool) bool) {
	for len(b) > 0 {
		n, err := frameAt(b)
		if n == 0 {
			return
		}
		var (
			key []byte
			id  [16]byte
			ok  bool
		)
		if err == nil {
			if _, k, value, perr := parseFrame(b[frameHeader:n]); perr == nil {
				key = k
				id, ok = eventID(value)
			}
		}
		if !fn(n, key, id, ok) {
			return
		}
		b = b[n:]
	}
}

// peekCandidates returns the events of the first frames after the cursor,
// at least as many as one drain batch reads.
func (l *segLog) peekCandidates(maxFrames int, maxBytes int64) ([]candidate, error) {
	var out []candidate
	var read int64
	for _, s := range l.segs {
		if s.seq < l.readSeq {
			continue
		}
		b, err := os.ReadFile(filepath.Join(l.dir, segName(s.seq)))
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if s.seq == l.readSeq {
			b = b[min(int64(len(b)), l.readOff):]
		}
		full := false
		eachFrameEvent(b, func(n int, key []byte, id [16]byte, ok bool) bool {
			if ok {
				out = append(out, candidate{id: id, key: append([]byte(nil), key...)})
			}
			read += int64(n)
			full = len(out) >= maxFrames || read >= maxBytes
			return !full
		})
		if full {
			return out, nil
		}
	}
	return out, nil
}

// findInKafka reads, in every partition the candidates hash to, the records
// after floor (the partition's start where floor does not know it) up to the
// end offset at the time of the call, and returns the candidates' ids it
// found. A topic that does not exist holds nothing.
func (p *Producer) findInKafka(ctx context.Context, cands []candidate, floor []int64) (map[[16]byte]struct{}, error) {
	found := map[[16]byte]struct{}{}
	if len(cands) == 0 {
		return found, nil
	}
	topic := p.opts.Topic
	adm := kadm.NewClient(p.cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: listing end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return found, nil
		}
		return nil, fmt.Errorf("kafka: listing end offsets: %w", err)
	}
	tends := ends[topic]
	nparts := len(tends)
	if nparts == 0 {
		return found, nil
	}
	want := make(map[[16]byte]struct{}, len(cands))
	parts := map[int32]bool{}
	for _, c := range cands {
		want[c.id] = struct{}{}
		parts[Partition(c.key, nparts)] = true
	}
	var starts kadm.ListedOffsets
	for part := range parts {
		if int(part) >= len(floor) || floor[part] < 0 {
			if starts, err = adm.ListStartOffsets(ctx, topic); err != nil {
				return nil, fmt.Errorf("kafka: listing start offsets: %w", err)
			}
			break
		}
	}
	assign := map[int32]kgo.Offset{}
	endOf := map[int32]int64{}
	for part := range parts {
		end := tends[part].Offset
		var from int64
		if int(part) < len(floor) && floor[part] >= 0 {
			from = floor[part] + 1
		} else if so, ok := starts.Lookup(topic, part); ok {
			from = so.Offset
		}
		if from >= end {
			continue
		}
		assign[part] = kgo.NewOffset().At(from)
		endOf[part] = end
	}
	if len(assign) == 0 {
		return found, nil
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(p.opts.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // retention deleted the floor
		kgo.FetchMaxWait(250 * time.Millisecond),
	}, p.opts.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: consumer for recovery: %w", err)
	}
	defer cl.Close()
	read := 0
	for len(endOf) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("kafka: reading partitions for recovery (%d records read, %d partitions left): %w", read, len(endOf), err)
		}
		p.recProgress.Add(uint64(fs.NumRecords())) // New's wait sees a long read as progress
		fs.EachRecord(func(r *kgo.Record) {
			read++
			if id, ok := eventID(r.Value); ok {
				if _, w := want[id]; w {
					found[id] = struct{}{}
				}
			}
			if end, ok := endOf[r.Partition]; ok && r.Offset >= end-1 {
				delete(endOf, r.Partition)
			}
		})
	}
	p.log.Info("recovery: read Kafka after the last checkpoint", "partitions", len(assign),
		"records", read, "candidates", len(cands), "already_in_kafka", len(found))
	return found, nil
}

// recoverStep runs the recovery's Kafka check and resends the journal's
// frames; done is true once both are finished.
func (d *drainer) recoverStep() (done bool, err error) {
	p, rec := d.p, d.rec
	if !rec.checked {
		ctx, cancel := context.WithTimeout(p.drainCtx, max(2*p.opts.DeliveryTimeout, 30*time.Second))
		found, err := p.findInKafka(ctx, rec.cands, rec.floor)
		cancel()
		if err != nil {
			d.sleepBackoff()
			return false, fmt.Errorf("kafka: recovery cannot check what Kafka already has (events wait): %w", err)
		}
		d.backoff = 0
		rec.checked = true
		rec.skip = found
		kept := rec.frames[:0]
		for _, f := range rec.frames {
			_, _, value, _ := parseFrame(f.payload)
			id, _ := eventID(value)
			if _, ok := found[id]; ok {
				p.jr.done(f.ref)
				p.deduped.Add(1)
				continue
			}
			kept = append(kept, f)
		}
		rec.frames = kept
		p.recProgress.Add(1)
	}
	for len(rec.frames) > 0 {
		batch := rec.frames[:min(len(rec.frames), len(d.recs))]
		for i, f := range batch {
			ts, key, value, _ := parseFrame(f.payload)
			d.recs[i] = kgo.Record{Key: key, Value: value, Timestamp: time.UnixMilli(ts), Topic: p.opts.Topic, Offset: -1}
		}
		acked := d.send(len(batch))
		for i := range acked {
			p.jr.done(batch[i].ref)
		}
		p.recovered.Add(uint64(acked))
		p.produced.Add(uint64(acked))
		rec.frames = rec.frames[acked:]
		if acked < len(batch) {
			return false, nil // stopping: the rest stays in the journal
		}
	}
	return true, nil
}

func (d *drainer) sleepBackoff() {
	d.backoff = min(max(2*d.backoff, 100*time.Millisecond), 5*time.Second)
	select {
	case <-d.p.stop:
	case <-time.After(d.backoff):
	}
}
