package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// drainer sends spooled records back to Kafka, oldest first: the retry log
// (records Kafka failed while the producer was sending directly) before the
// main log (records that arrived while spooling). It runs only while no
// direct record is in flight, so a record spooled later can never overtake
// one still in franz-go's buffer.
type drainer struct {
	p       *Producer
	buf     []byte
	recs    []kgo.Record
	offs    []int64 // end offset (relative to the batch) of each frame
	pending atomic.Int64
	done    chan struct{}
	promise func(*kgo.Record, error)
	lastErr error

	backoff    time.Duration
	lastErrLog time.Time

	// rec is the crash recovery still to finish (nil when there is none
	// or it is done): it runs before the spool drains, and its skip set
	// (events found already in Kafka) applies to the spool's frames.
	rec *recovery
}

func (p *Producer) drainLoop() {
	defer p.wg.Done()
	d := &drainer{
		p:    p,
		buf:  make([]byte, drainBatchBytes),
		recs: make([]kgo.Record, drainBatchRecords),
		offs: make([]int64, drainBatchRecords),
		done: make(chan struct{}, 1),
		rec:  p.rec,
	}
	p.rec = nil // the drainer owns it now
	d.promise = func(r *kgo.Record, err error) {
		if err == nil {
			p.noteAck(r.Partition, r.Offset)
		} else {
			r.Offset = -1 // marks "not acknowledged" for the retry pass
			d.lastErr = err
		}
		if d.pending.Add(-1) == 0 {
			d.done <- struct{}{}
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		case <-tick.C:
		}
		for p.state.Load() == stateSpooling && p.inflight.Load() == 0 {
			progressed, err := d.drainOnce()
			if err != nil {
				p.errs.Add(1)
				p.log.Error("draining spool", "err", err)
			}
			if !progressed {
				break
			}
			select {
			case <-p.stop:
				return
			default:
			}
		}
	}
}

// drainOnce sends one batch from the spool and commits it. progressed is
// false when there was nothing to send (or the producer is stopping).
func (d *drainer) drainOnce() (progressed bool, err error) {
	p := d.p
	defer p.unpinDrain()
	if d.rec != nil && (!d.rec.checked || len(d.rec.frames) > 0) {
		done, err := d.recoverStep()
		return done, err
	}
	p.mu.Lock()
	l := p.retry
	if !l.pending() {
		l = p.main
	}
	if !l.pending() {
		// Both logs are empty and Append writes to them only under this
		// lock while spooling: safe to go back to direct sends.
		err := errors.Join(p.retry.reset(), p.main.reset())
		p.state.Store(stateDirect)
		p.full.Store(false)
		p.mu.Unlock()
		if d.rec != nil {
			d.rec = nil
			p.startPin.Store(math.MaxUint64) // the previous run's sends are all settled
			p.log.Info("recovery finished", "resent_from_journal", p.recovered.Load(), "already_in_kafka", p.deduped.Load())
		}
		p.log.Info("spool drained; sending events directly again", "spool_drained_total", p.drained.Load())
		return false, err
	}
	seq, off, end, ok, err := l.readable()
	p.mu.Unlock()
	if err != nil || !ok {
		return false, err
	}

	n, consumed, bad, err := d.read(l.dir, seq, off, end)
	if err != nil {
		return false, err
	}
	if bad > 0 {
		p.corrupt.Add(uint64(bad))
		p.log.Error("skipped corrupt spool frames (their events are lost)", "segment", filepath.Join(l.dir, segName(seq)), "frames", bad)
	}
	acked := d.send(n)
	// Commit the acknowledged prefix; if stopping left a suffix unsent, it
	// stays in the spool for the next start.
	commitTo := off + consumed
	if acked < n {
		commitTo = off
		if acked > 0 {
			commitTo = off + d.offs[acked-1]
		}
	}
	p.mu.Lock()
	cerr := l.commit(seq, commitTo)
	if p.full.Load() && p.retry.bytes()+p.main.bytes() < p.opts.SpoolMaxBytes {
		p.full.Store(false) // Accepting turns true again: the API stops refusing
	}
	p.mu.Unlock()
	p.drained.Add(uint64(acked))
	p.produced.Add(uint64(acked))
	return acked == n && cerr == nil, cerr
}

// read loads up to one batch of whole frames from segment seq, starting at
// off and ending before end, into d.recs. consumed is the bytes covered by
// the batch, including skipped frames; bad counts frames that failed their
// checksum (skipped alone when their length is plausible, otherwise with the
// rest of the segment, since frame boundaries are lost).
func (d *drainer) read(dir string, seq uint64, off, end int64) (n int, consumed int64, bad int, err error) {
	f, err := os.Open(filepath.Join(dir, segName(seq)))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	want := min(end-off, int64(len(d.buf)))
	b := d.buf[:want]
	if _, err := f.ReadAt(b, off); err != nil {
		return 0, 0, 0, fmt.Errorf("spool: reading segment: %w", err)
	}
	// A single frame larger than the buffer: grow it and read again.
	if len(b) >= frameHeader {
		if need := int64(frameHeader) + int64(binary.LittleEndian.Uint32(b)); need > want && need <= end-off && need <= maxFrameBytes+frameHeader {
			d.buf = make([]byte, need)
			b = d.buf
			if _, err := f.ReadAt(b, off); err != nil {
				return 0, 0, 0, fmt.Errorf("spool: reading segment: %w", err)
			}
		}
	}
	readAll := int64(len(b)) == end-off
	var pos int64
	for n < len(d.recs) && pos < int64(len(b)) {
		fl, ferr := frameAt(b[pos:])
		if ferr == nil {
			ts, key, value, perr := parseFrame(b[pos+frameHeader : pos+int64(fl)])
			if perr == nil && d.skipped(value) {
				pos += int64(fl)
				if n > 0 {
					d.offs[n-1] = pos
				}
				continue
			}
			if perr == nil {
				d.recs[n] = kgo.Record{Key: key, Value: value, Timestamp: time.UnixMilli(ts), Topic: d.p.opts.Topic, Offset: -1}
				pos += int64(fl)
				d.offs[n] = pos
				n++
				continue
			}
			ferr = errCorrupt
		}
		if !errors.Is(ferr, errCorrupt) && !readAll {
			break // only the batch's byte limit: frames below end are whole
		}
		bad++
		if fl > 0 {
			pos += int64(fl) // checksum failed but the length is usable
			continue
		}
		pos = int64(len(b)) // boundaries lost: give up on the rest
		if !readAll {
			pos = end - off
		}
		break
	}
	return n, pos, bad, nil
}

// skipped reports whether a recovery found this event already in Kafka,
// counting it: the drainer then commits it without sending it again.
func (d *drainer) skipped(value []byte) bool {
	if d.rec == nil || len(d.rec.skip) == 0 {
		return false
	}
	id, ok := eventID(value)
	if !ok {
		return false
	}
	if _, found := d.rec.skip[id]; !found {
		return false
	}
	// Kept in the set: a batch that is not committed is read again.
	d.p.deduped.Add(1)
	return true
}

// send produces recs[:n] and waits for all of them, resending those Kafka
// failed (after a backoff) until all are acknowledged or the producer stops.
// It returns the length of the acknowledged prefix.
func (d *drainer) send(n int) int {
	p := d.p
	p.pinDrain()
	for {
		todo := 0
		for i := 0; i < n; i++ {
			if d.recs[i].Offset < 0 {
				todo++
			}
		}
		if todo == 0 {
			return n
		}
		d.pending.Store(int64(todo))
		d.lastErr = nil
		ctx, cancel := context.WithTimeout(p.drainCtx, p.opts.DeliveryTimeout)
		for i := 0; i < n; i++ {
			r := &d.recs[i]
			if r.Offset >= 0 {
				continue
			}
			// Reset what franz-go filled in on a failed attempt.
			*r = kgo.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Topic: r.Topic, Offset: -1}
			p.cl.Produce(ctx, r, d.promise)
		}
		<-d.done
		cancel()
		acked := 0
		for acked < n && d.recs[acked].Offset >= 0 {
			acked++
		}
		if acked == n {
			d.backoff = 0
			return n
		}
		p.errs.Add(1)
		if time.Since(d.lastErrLog) > 30*time.Second {
			d.lastErrLog = time.Now()
			p.log.Warn("kafka still unavailable; spooled events wait", "err", d.lastErr,
				"spool_bytes", p.Stats().SpoolBytes)
		}
		d.sleepBackoff()
		select {
		case <-p.stop:
			return acked
		default:
		}
	}
}
