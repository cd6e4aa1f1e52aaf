package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/event"
)

// FullPolicy says what Append does with a new event when the spool is full.
type FullPolicy uint8

const (
	// FullRefuse makes Append return ErrSpoolFull, so the API answers 503
	// and the caller retries later: nothing acknowledged is lost. Default.
	FullRefuse FullPolicy = iota
	// FullDrop makes Append count the event as dropped and return nil: the
	// API keeps answering 200 but that usage is lost.
	FullDrop
)

// ParseFullPolicy parses "refuse" or "drop" (for flags and config files).
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "refuse", "":
		return FullRefuse, nil
	case "drop":
		return FullDrop, nil
	}
	return 0, fmt.Errorf("kafka: full-spool policy %q: want refuse or drop", s)
}

// String returns "refuse" or "drop".
func (p FullPolicy) String() string {
	if p == FullDrop {
		return "drop"
	}
	return "refuse"
}

// Errors returned by Append.
var (
	// ErrSpoolFull means the broker has been unreachable long enough to fill
	// the spool and the policy is FullRefuse: the event was not accepted.
	ErrSpoolFull = errors.New("kafka: event spool is full")
	// ErrClosed means Close has been called.
	ErrClosed = errors.New("kafka: producer closed")
)

// Options configure a Producer. Zero values take the documented defaults.
type Options struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic receives the events. Default event.Topic.
	Topic string
	// Linger is how long a partition waits for more records before a batch
	// is sent. Default 5ms: batches well at thousands of events/s and adds
	// little to end-to-end freshness. Negative means no linger.
	Linger time.Duration
	// MaxBuffered is how many events may wait in memory (and in the ack
	// journal) for Kafka's acknowledgement before new events go to the
	// spool instead. Default 50,000. The journal must hold this many events
	// with room to spare (see JournalBytes).
	MaxBuffered int
	// DeliveryTimeout is how long an event may wait for Kafka's
	// acknowledgement before it is moved to the spool, if franz-go has not
	// sent it yet; one in a request the broker has not answered waits for
	// the broker (in the journal). Default 10s.
	DeliveryTimeout time.Duration
	// Compression is "lz4" (default: cheap, supported by every Kafka broker
	// since 0.10), "zstd" (smaller, brokers 2.1+), "snappy" or "none".
	Compression string

	// SpoolDir holds the on-disk spool (segment files). Required; use a
	// directory under the data dir that only this producer uses.
	SpoolDir string
	// SpoolMaxBytes bounds the spool. Default 1 GiB. Events that were
	// already accepted and then fail in Kafka are spooled even past this
	// bound (by at most MaxBuffered events); the bound applies to new events.
	SpoolMaxBytes int64
	// SpoolSegmentBytes is the size at which a spool segment file is closed
	// and a new one started; drained segments are deleted whole. Default
	// 64 MiB (or SpoolMaxBytes/8 if that is smaller).
	SpoolSegmentBytes int64
	// SpoolSyncInterval bounds how long a spooled event stays only in the
	// write buffer (and the ack journal) or the page cache: the spool is
	// written and fsync'd at least this often. Default 100ms.
	SpoolSyncInterval time.Duration
	// FullPolicy chooses between refusing and dropping new events while the
	// spool is full. Default FullRefuse.
	FullPolicy FullPolicy

	// JournalBytes is the size of the ack journal (SpoolDir/journal), the
	// memory-mapped file that holds every event handed to Kafka until Kafka
	// acknowledges it (and every spooled event until it is written to the
	// spool file), so that a killed process loses none. Default 64 MiB.
	// It must hold MaxBuffered events with room to spare; when it is full,
	// new events go to the spool (slower, equally safe) and Stats.JournalFull
	// counts them. An existing journal keeps the size it was created with.
	JournalBytes int64
	// RecoverWait bounds how long New waits, when an earlier process left
	// events behind (journal or spool), for them to reach Kafka, so that a
	// counter restore run right after New sees them. New stops waiting
	// earlier if Kafka makes no progress for DeliveryTimeout (at least 5s).
	// Default 30s;
	// negative means do not wait.
	RecoverWait time.Duration

	// Logger receives the producer's own log lines (spool full, outage,
	// drain progress; rate limited). Default slog.Default().
	Logger *slog.Logger
	// ClientOpts are extra franz-go options, applied after Sluice's (for
	// TLS, SASL, client id, ...).
	ClientOpts []kgo.Opt
	// Partitions is the usage topic's partition count. With it the producer
	// tracks, per partition, the events it handed to Kafka and those Kafka
	// acknowledged, for FlushPartitions. Zero disables that tracking.
	Partitions int32
}

func (o *Options) setDefaults() error {
	if len(o.Brokers) == 0 {
		return errors.New("kafka: Options.Brokers is empty")
	}
	if o.SpoolDir == "" {
		return errors.New("kafka: Options.SpoolDir is empty")
	}
	if o.Topic == "" {
		o.Topic = event.Topic
	}
	if o.Linger == 0 {
		o.Linger = 5 * time.Millisecond
	} else if o.Linger < 0 {
		o.Linger = 0
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 50_000
	}
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = 10 * time.Second
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = 1 << 30
	}
	if o.SpoolSegmentBytes <= 0 {
		o.SpoolSegmentBytes = min(64<<20, max(o.SpoolMaxBytes/8, 4096))
	}
	if o.SpoolSyncInterval <= 0 {
		o.SpoolSyncInterval = 100 * time.Millisecond
	}
	if o.JournalBytes <= 0 {
		o.JournalBytes = DefaultJournalBytes
	}
	if o.RecoverWait == 0 {
		o.RecoverWait = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("kafka: compression %q: want lz4, zstd, snappy or none", name)
}

// Stats are the producer's counters since it was created, for /metrics.
type Stats struct {
	Produced       uint64 // events acknowledged by Kafka (directly or from the spool)
	Spooled        uint64 // events written to the spool
	SpoolDrained   uint64 // events sent from the spool and acknowledged
	Dropped        uint64 // events lost: full spool under FullDrop, or a spool write failure
	Refused        uint64 // Append calls that returned ErrSpoolFull
	Errors         uint64 // failed produce attempts (each event is spooled or retried) and spool I/O errors
	Corrupt        uint64 // spool frames skipped because their checksum failed
	JournalFull    uint64 // Append calls that found the ack journal full and spooled instead
	Recovered      uint64 // events an earlier process left in the journal, sent by this one
	Deduplicated   uint64 // events of an earlier process found already in Kafka and not sent again
	JournalPending int64  // events in the ack journal not yet acknowledged by Kafka or written to the spool
	SpoolBytes     int64  // current spool size (files plus write buffer)
	InFlight       int64  // events handed to Kafka and not yet acknowledged or spooled
	Spooling       bool   // new events go to the spool (broker slow or down, or spool draining)
	SpoolFull      bool   // the spool reached SpoolMaxBytes
}

const (
	stateDirect int32 = iota
	stateSpooling
)

// drainBatch bounds one round trip of the drainer.
const (
	drainBatchRecords = 4096
	drainBatchBytes   = 4 << 20
)

// Producer sends usage events to Kafka and spools them on disk while Kafka
// cannot take them. It implements the API's EventSink. Create it with New and
// stop it with Close.
type Producer struct {
	opts   Options
	cl     *kgo.Client
	log    *slog.Logger
	recs   sync.Pool // *jrec with a reusable frame buffer
	direct func(*kgo.Record, error)
	jr     *journal

	deadline atomic.Pointer[context.Context] // rotating produce deadline for direct records
	state    atomic.Int32
	abandon  atomic.Bool // Close gave up on Kafka: failed direct records stay in the journal
	closing  atomic.Bool
	full     atomic.Bool  // the spool reached SpoolMaxBytes; cleared by the drainer
	inflight atomic.Int64 // direct records given to kgo, promise not yet run

	mu      sync.Mutex // guards the spool logs and closed
	retry   *segLog    // direct records that Kafka failed: sent before main
	main    *segLog    // events that arrived while spooling
	closed  bool
	scratch []byte   // key buffer for spool appends
	lock    *os.File // flock on SpoolDir/LOCK, released by Close

	lastWriteErrLog int64 // unix ns; guarded by mu

	kick         chan struct{} // wakes the drainer
	stop         chan struct{} // closed by Close: background goroutines exit
	deadlineDone chan struct{} // closed by deadlineLoop once every produce context is canceled
	rec          *recovery     // handed to the drainer at start
	drainCtx     context.Context
	drainStop    context.CancelFunc
	wg           sync.WaitGroup
	lastFullLog  atomic.Int64
	cancels      []context.CancelFunc // of the deadline contexts; deadlineLoop only

	produced, spooled, drained, dropped, refused, errs, corrupt atomic.Uint64
	journalFull, recovered, deduped, recProgress                atomic.Uint64
	lastJournalLog                                              atomic.Int64

	// Offset checkpoints (checkpoint.go).
	acked [maxTrackedPartitions]atomic.Int64 // highest acknowledged offset per partition, -1 unknown
	// With Options.Partitions: direct records handed to Kafka, and of those
	// the acknowledged and the failed (spooled or lost), per partition.
	sentP, ackedP, failedP [maxTrackedPartitions]atomic.Uint64
	nparts                 atomic.Int32
	drainPin               atomic.Uint64 // epoch of the drain batch in flight, MaxUint64 none
	startPin               atomic.Uint64 // checkpoint of the previous run, until its spool batch is settled
	snaps                  [ckRing]offsetSnapshot
	snapNext               int
}

// jrec is a pooled direct record with its journal frame: the promise gets
// the *kgo.Record back and finds the frame through it (rec is the first
// field, so the pointers coincide).
type jrec struct {
	rec kgo.Record
	ref int64
	buf []byte // journal payload: timestamp, key length, key, event
}

// New opens (and recovers) the spool, connects the franz-go client and starts
// the background drainer and syncer. If the spool holds events from an
// earlier run, they are sent before any new event.
func New(opts Options) (*Producer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	codec, err := compression(opts.Compression)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(opts.SpoolDir)
	if err != nil {
		return nil, err
	}
	unlock := func() {
		if lock != nil {
			lock.Close()
		}
	}
	retry, err := openSegLog(filepath.Join(opts.SpoolDir, "retry"), opts.SpoolSegmentBytes)
	if err != nil {
		unlock()
		return nil, err
	}
	mainLog, err := openSegLog(filepath.Join(opts.SpoolDir, "main"), opts.SpoolSegmentBytes)
	if err != nil {
		unlock()
		return nil, err
	}
	jr, pending, err := openJournal(filepath.Join(opts.SpoolDir, "journal"), opts.JournalBytes)
	if err != nil {
		unlock()
		return nil, err
	}
	retry.jr, mainLog.jr = jr, jr
	unlock = func() {
		jr.close()
		if lock != nil {
			lock.Close()
		}
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.DefaultProduceTopic(opts.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence (the default) needs acks=all
		kgo.ProducerLinger(opts.Linger),
		kgo.ProducerBatchCompression(codec),
		// No kgo.RecordDeliveryTimeout: franz-go measures it from the
		// record timestamp, which is the event's receive time and may be
		// old for spooled events. Deadlines come from contexts instead;
		// franz-go lets one fail a record only while it is sure the record
		// was not written, so a failed record can be resent without a
		// duplicate. Records whose fate it does not know stay with it (and
		// in the journal) until the broker answers.
		// The producer keeps its own, lower limit (MaxBuffered) and spools
		// beyond it, so kgo's limit must never be what refuses a record.
		kgo.MaxBufferedRecords(opts.MaxBuffered + drainBatchRecords + 1024),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(kgo.PartitionerHasher(partitionOf))),
		kgo.UnknownTopicRetries(3),
	}
	kopts = append(kopts, opts.ClientOpts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("kafka: creating client: %w", err)
	}
	p := &Producer{
		opts:         opts,
		cl:           cl,
		log:          opts.Logger.With("component", "kafka-producer", "topic", opts.Topic),
		retry:        retry,
		main:         mainLog,
		jr:           jr,
		lock:         lock,
		kick:         make(chan struct{}, 1),
		stop:         make(chan struct{}),
		deadlineDone: make(chan struct{}),
	}
	p.recs.New = func() any { return &jrec{buf: make([]byte, 0, 512)} }
	p.direct = p.directDone
	p.drainCtx, p.drainStop = context.WithCancel(context.Background())
	for i := range p.acked {
		p.acked[i].Store(-1)
	}
	p.drainPin.Store(math.MaxUint64)
	p.startPin.Store(math.MaxUint64)
	ckK, floor, _ := jr.readCheckpoint()
	for i, o := range floor {
		p.noteAck(int32(i), o)
	}
	if p.rec, err = p.planRecovery(pending, floor); err != nil {
		cl.Close()
		unlock()
		return nil, err
	}
	if p.rec != nil {
		p.startPin.Store(ckK)
		p.state.Store(stateSpooling)
		p.log.Info("events from an earlier run: checking Kafka for them, then sending the rest before new events",
			"journal_events", len(p.rec.frames), "spool_bytes", retry.bytes()+mainLog.bytes())
	}
	recovering := p.rec != nil // the drainer takes p.rec
	p.rotateDeadline()
	p.wg.Add(2)
	go p.deadlineLoop()
	go p.drainLoop()
	go p.syncLoop()
	if recovering && opts.RecoverWait > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), opts.RecoverWait)
		p.waitDrained(ctx, max(opts.DeliveryTimeout, 5*time.Second))
		cancel()
		if st := p.Stats(); st.Spooling {
			p.log.Warn("events from an earlier run are not all in Kafka yet; a counter restore now would miss them",
				"journal_pending", st.JournalPending, "spool_bytes", st.SpoolBytes)
		}
	}
	return p, nil
}

// Partition returns the partition of the usage topic's n partitions that the
// producer writes events with key (event.Key) to: Kafka's rule for a keyed
// record (the hash's low 31 bits modulo n) over the low 32 bits of
// XXH64(key, seed 0). The cluster's ownership of applications follows it.
func Partition(key []byte, n int) int32 { return int32(partitionOf(key, n)) }

func partitionOf(key []byte, n int) int {
	return int(uint32(xxhash.Sum64(key))&0x7fffffff) % n
}

// Append hands e to Kafka, or to the spool while Kafka is slow or down. It
// never waits on the network and, in steady state, does not allocate. e may
// be reused as soon as Append returns.
//
// A nil error means the event was accepted: it is in the ack journal and
// franz-go's buffer (until Kafka acknowledges it or it moves to the spool),
// or written to the spool. Either survives a kill of the process; see the
// package documentation. Append fails with ErrSpoolFull (policy FullRefuse
// and the spool full), ErrClosed, an invalid event, or a spool write error.
func (p *Producer) Append(e *event.Event) error {
	if err := event.Validate(e); err != nil {
		return err
	}
	for {
		// Count first, then read the state: the drainer flips the state and
		// then waits for inflight to reach zero, so a record counted here is
		// either seen by that wait or sees the new state. Close likewise
		// sets closing and then waits for inflight to drop to zero before
		// it unmaps the journal.
		n := p.inflight.Add(1)
		if p.closing.Load() {
			p.inflight.Add(-1)
			return ErrClosed
		}
		if p.state.Load() == stateDirect {
			if n <= int64(p.opts.MaxBuffered) {
				if p.produceDirect(e) {
					return nil
				}
				p.inflight.Add(-1)
				p.journalIsFull()
			} else {
				p.inflight.Add(-1)
				p.enterSpooling("produce buffer full (broker slow or down)", nil)
			}
		} else {
			p.inflight.Add(-1)
		}
		if err, retry := p.spoolNew(e); !retry {
			return err
		}
		// The drainer emptied the spool between our state check and the
		// lock: send this event directly (order holds, the spool is empty).
	}
}

// produceDirect journals e and hands it to franz-go. It is false, with
// nothing done, when the journal has no room.
func (p *Producer) produceDirect(e *event.Event) bool {
	r := p.recs.Get().(*jrec)
	buf := binary.AppendVarint(r.buf[:0], e.Received)
	buf = binary.AppendUvarint(buf, uint64(len(e.ServiceID)+1+len(e.AppID)))
	ks := len(buf)
	buf = event.Key(buf, e.ServiceID, e.AppID)
	k := len(buf)
	buf = event.AppendEvent(buf, e)
	r.buf = buf
	ref, ok := p.jr.append(buf, crc32.Checksum(buf, castagnoli), jDirect)
	if !ok {
		p.recs.Put(r)
		return false
	}
	r.ref = ref
	r.rec = kgo.Record{Key: buf[ks:k], Value: buf[k:], Topic: p.opts.Topic, Timestamp: time.UnixMilli(e.Received)}
	if part := p.trackedPartition(r.rec.Key); part >= 0 {
		p.sentP[part].Add(1)
	}
	p.cl.TryProduce(*p.deadline.Load(), &r.rec, p.direct)
	return true
}

// journalIsFull switches to spooling, loudly: the journal holds MaxBuffered
// events at most in normal operation, so a full one means events are much
// larger than usual or JournalBytes is too small for MaxBuffered.
func (p *Producer) journalIsFull() {
	p.journalFull.Add(1)
	p.enterSpooling("ack journal full (or an event larger than a journal segment)", nil)
	now := time.Now().UnixNano()
	last := p.lastJournalLog.Load()
	if now-last >= int64(10*time.Second) && p.lastJournalLog.CompareAndSwap(last, now) {
		p.log.Error("ack journal is full: spooling new events until Kafka catches up; raise JournalBytes or lower MaxBuffered",
			"journal_pending", p.jr.pendingFrames(), "journal_full_total", p.journalFull.Load())
	}
}

// spoolNew writes a new event to the main spool log. retry is true if the
// producer went back to direct mode meanwhile and the event was not written.
func (p *Producer) spoolNew(e *event.Event) (err error, retry bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed, false
	}
	if p.state.Load() == stateDirect {
		return nil, true
	}
	if p.retry.bytes()+p.main.bytes() >= p.opts.SpoolMaxBytes {
		p.full.Store(true)
		p.logFull()
		if p.opts.FullPolicy == FullDrop {
			p.dropped.Add(1)
			return nil, false
		}
		p.refused.Add(1)
		return ErrSpoolFull, false
	}
	p.full.Store(false)
	p.scratch = event.Key(p.scratch[:0], e.ServiceID, e.AppID)
	start := p.main.startFrame(e.Received, p.scratch)
	p.main.wbuf = event.AppendEvent(p.main.wbuf, e)
	if err := p.main.endFrame(start); err != nil {
		p.errs.Add(1)
		return fmt.Errorf("kafka: spooling event: %w", err), false
	}
	p.spooled.Add(1)
	// The frame stays in the write buffer until 64 KiB accumulate or the
	// syncer runs; meanwhile the journal keeps a copy (the spool frame's
	// payload and checksum are the journal's), so a kill loses nothing.
	// Without room in the journal, the frame is written through at once.
	frame := p.main.wbuf[start:]
	if ref, ok := p.jr.append(frame[frameHeader:], binary.LittleEndian.Uint32(frame[4:]), jMain); ok {
		p.main.refs = append(p.main.refs, ref)
		if len(p.main.wbuf) < wbufFlush {
			return nil, false
		}
	}
	if err := p.main.flush(); err != nil {
		p.spoolWriteFailed(err)
	}
	return nil, false
}

// spoolWriteFailed reports a failed spool write (full or failing disk). The
// frames stay in memory and are retried; the error is counted and logged at
// most every 10 seconds. Called with p.mu held.
func (p *Producer) spoolWriteFailed(err error) {
	p.errs.Add(1)
	now := time.Now().UnixNano()
	if last := p.lastWriteErrLog; now-last >= int64(10*time.Second) {
		p.lastWriteErrLog = now
		p.log.Error("cannot write the event spool; spooled events are held in memory until the disk recovers",
			"err", err, "spool_bytes", p.retry.bytes()+p.main.bytes())
	}
}

// logFull logs the full-spool condition at most once every 10 seconds.
func (p *Producer) logFull() {
	now := time.Now().UnixNano()
	last := p.lastFullLog.Load()
	if now-last < int64(10*time.Second) || !p.lastFullLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Error("event spool is full: broker unreachable for too long",
		"policy", p.opts.FullPolicy.String(), "spool_bytes", p.retry.bytes()+p.main.bytes(),
		"max_bytes", p.opts.SpoolMaxBytes, "refused_total", p.refused.Load(), "dropped_total", p.dropped.Load())
}

func (p *Producer) enterSpooling(why string, err error) {
	if p.state.CompareAndSwap(stateDirect, stateSpooling) {
		p.log.Warn("spooling events to disk", "reason", why, "err", err)
		p.wake()
	}
}

func (p *Producer) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// directDone is the promise of records produced by Append. Failed records go
// to the retry log (in promise order, which is per-partition produce order)
// before inflight drops, so the drainer sees them once inflight is zero.
//
// A record franz-go fails was not written (it fails idempotent records only
// while sure of that), so spooling it for a resend cannot duplicate it. Its
// journal frame is marked done once the retry log's file has it. After Close
// gave up on Kafka, failed records may have been written: they stay pending
// in the journal, and the next Producer checks Kafka before resending them.
func (p *Producer) directDone(r *kgo.Record, err error) {
	jr := (*jrec)(unsafe.Pointer(r))
	if part := p.trackedPartition(r.Key); part >= 0 {
		if err == nil {
			p.ackedP[part].Add(1)
		} else {
			p.failedP[part].Add(1)
		}
	}
	switch {
	case err == nil:
		p.noteAck(r.Partition, r.Offset)
		p.jr.done(jr.ref)
		p.produced.Add(1)
	case p.abandon.Load():
	default:
		p.errs.Add(1)
		p.enterSpooling("produce failed", err)
		p.mu.Lock()
		start := p.retry.startFrame(r.Timestamp.UnixMilli(), r.Key)
		p.retry.wbuf = append(p.retry.wbuf, r.Value...)
		if werr := p.retry.endFrame(start); werr != nil {
			p.dropped.Add(1)
			p.jr.done(jr.ref)
			p.log.Error("lost an event: could not write it to the spool", "err", werr)
		} else {
			p.retry.refs = append(p.retry.refs, jr.ref)
			p.spooled.Add(1)
			if err := p.retry.flush(); err != nil {
				p.spoolWriteFailed(err)
			}
		}
		p.mu.Unlock()
	}
	jr.rec = kgo.Record{}
	p.recs.Put(jr)
	if p.inflight.Add(-1) == 0 && p.state.Load() == stateSpooling {
		p.wake()
	}
}

// Direct records share a produce context whose deadline is DeliveryTimeout
// after it was made; a new one is made every DeliveryTimeout/20, so a record
// gives up (and is spooled) between 95% and 100% of DeliveryTimeout after
// Append without a context allocation per record. franz-go fails a record on
// its deadline only when that is safe for the idempotent sequence (the record
// is not in a request awaiting its response).
func (p *Producer) rotateDeadline() {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DeliveryTimeout)
	p.deadline.Store(&ctx)
	// The context expires by itself; cancel releases its timer early only
	// if the producer is closing, which deadlineLoop handles.
	p.cancels = append(p.cancels, cancel)
}

func (p *Producer) deadlineLoop() {
	defer close(p.deadlineDone)
	every := max(p.opts.DeliveryTimeout/20, 5*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	keep := int(p.opts.DeliveryTimeout/every) + 2
	for {
		select {
		case <-p.stop:
			// Close: fail now, in franz-go's next pass, every record it
			// knows it never sent.
			for _, c := range p.cancels {
				c()
			}
			return
		case <-t.C:
			p.rotateDeadline()
			// Contexts older than DeliveryTimeout have expired: their
			// cancel only frees bookkeeping now.
			if len(p.cancels) > keep {
				for _, c := range p.cancels[:len(p.cancels)-keep] {
					c()
				}
				p.cancels = append(p.cancels[:0], p.cancels[len(p.cancels)-keep:]...)
			}
		}
	}
}

// Records whose request got no answer (the broker died mid-request) are
// never abandoned: franz-go resends them with the same producer id and
// sequence numbers when the broker is back, which the broker deduplicates,
// and meanwhile the journal keeps them safe from a crash of Sluice. Spooling
// them after a timeout instead would duplicate those the broker had written.

// syncLoop writes and fsyncs the spool every SpoolSyncInterval.
func (p *Producer) syncLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.SpoolSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.syncSpool()
			p.checkpoint()
		}
	}
}

func (p *Producer) syncSpool() {
	var tails, retired []*os.File
	p.mu.Lock()
	for _, l := range []*segLog{p.retry, p.main} {
		tail, ret, err := l.syncTargets()
		if err != nil {
			p.spoolWriteFailed(err)
		}
		if tail != nil {
			tails = append(tails, tail)
		}
		retired = append(retired, ret...)
	}
	p.mu.Unlock()
	for _, f := range retired {
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			p.errs.Add(1)
			p.log.Error("fsync of spool segment failed", "err", err)
		}
	}
	for _, f := range tails {
		// A concurrent rollover may retire and a drain may close the
		// file meanwhile; whoever closes it fsyncs it first.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			p.errs.Add(1)
			p.log.Error("fsync of spool segment failed", "err", err)
		}
	}
}

// waitDrained waits until the spool is empty and nothing is in flight, ctx
// ends, or the drainer made no progress for a while (Kafka is down: the
// spool keeps the events for the next start).
func (p *Producer) waitDrained(ctx context.Context, stall time.Duration) {
	progress := func(st Stats) uint64 { return st.SpoolDrained + st.Produced + st.Deduplicated + p.recProgress.Load() }
	last, lastChange := progress(p.Stats()), time.Now()
	for {
		st := p.Stats()
		if !st.Spooling && st.InFlight == 0 {
			return
		}
		if now := progress(st); now != last {
			last, lastChange = now, time.Now()
		} else if time.Since(lastChange) > stall {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Accepting reports whether Append is expected to accept events now: false
// after Close, and while the spool is full under FullRefuse. The API consults
// it (smapi.SinkHealth) before counting usage, so a full spool becomes a 503
// without usage counted but not recorded. It never blocks.
func (p *Producer) Accepting() bool {
	if p.closing.Load() {
		return false
	}
	return p.opts.FullPolicy == FullDrop || !p.full.Load()
}

// Stats returns the current counters. It is cheap enough for every scrape.
func (p *Producer) Stats() Stats {
	p.mu.Lock()
	bytes := p.retry.bytes() + p.main.bytes()
	full := p.full.Load()
	p.mu.Unlock()
	return Stats{
		Produced:       p.produced.Load(),
		Spooled:        p.spooled.Load(),
		SpoolDrained:   p.drained.Load(),
		Dropped:        p.dropped.Load(),
		Refused:        p.refused.Load(),
		Errors:         p.errs.Load(),
		Corrupt:        p.corrupt.Load(),
		JournalFull:    p.journalFull.Load(),
		Recovered:      p.recovered.Load(),
		Deduplicated:   p.deduped.Load(),
		JournalPending: p.jr.pendingFrames(),
		SpoolBytes:     bytes,
		InFlight:       p.inflight.Load(),
		Spooling:       p.state.Load() == stateSpooling,
		SpoolFull:      full,
	}
}

// trackedPartition is key's partition when per-partition tracking is on,
// else -1.
func (p *Producer) trackedPartition(key []byte) int {
	n := p.opts.Partitions
	if n <= 0 || n > maxTrackedPartitions {
		return -1
	}
	return partitionOf(key, int(n))
}

// FlushPartitions returns nil once every event appended before the call whose
// key falls in one of parts has been acknowledged by Kafka. Records of the
// other partitions do not delay it, so it finishes under steady load. It
// fails when ctx ends first, when such an event went to the spool (Kafka was
// slow or down) and the spool did not drain before ctx ended, or without
// Options.Partitions. The cluster's handoff rule calls it before giving
// partitions up.
func (p *Producer) FlushPartitions(ctx context.Context, parts []int32) error {
	if p.opts.Partitions <= 0 || p.opts.Partitions > maxTrackedPartitions {
		return errors.New("kafka: FlushPartitions needs Options.Partitions")
	}
	target := make([]uint64, len(parts))
	failed := make([]uint64, len(parts))
	for i, part := range parts {
		if part >= 0 && part < p.opts.Partitions {
			target[i], failed[i] = p.sentP[part].Load(), p.failedP[part].Load()
		}
	}
	spooled := false
	for i := 0; i < len(parts); {
		part := parts[i]
		if part < 0 || part >= p.opts.Partitions {
			i++
			continue
		}
		if p.ackedP[part].Load()+p.failedP[part].Load() >= target[i] {
			spooled = spooled || p.failedP[part].Load() > failed[i]
			i++
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: flush of partition %d: %w", part, ctx.Err())
		case <-time.After(100 * time.Microsecond):
		}
	}
	// Failed records, and events written while Kafka was away, are in the
	// spool: in Kafka once it has drained.
	for spooled || p.state.Load() == stateSpooling {
		if p.state.Load() == stateDirect && p.Stats().SpoolBytes == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: flush: events still in the spool: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Close stops accepting events and flushes what is buffered: to Kafka if it
// answers before ctx ends, otherwise into the spool, which is fsync'd.
// Records franz-go cannot give up safely (sent, no answer) stay in the ack
// journal. The next Producer opened on the same SpoolDir sends both, after
// checking Kafka for the journal's. Close waits for the background
// goroutines and closes the client.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	p.closing.Store(true)
	p.mu.Unlock()

	// Give the drainer the chance to empty the spool while Kafka answers:
	// wait as long as it makes progress (and ctx allows).
	p.waitDrained(ctx, min(p.opts.DeliveryTimeout, 2*time.Second))
	if err := p.cl.Flush(ctx); err != nil {
		p.log.Warn("kafka did not acknowledge buffered events before shutdown; spooling them", "err", err)
	}
	close(p.stop)
	p.drainStop()
	<-p.deadlineDone
	// Records franz-go never sent fail on their canceled contexts at its
	// next retry and their promises spool them; give that a moment.
	giveUp := time.Now().Add(min(p.opts.DeliveryTimeout, 2*time.Second))
	for p.inflight.Load() > 0 && time.Now().Before(giveUp) {
		time.Sleep(5 * time.Millisecond)
	}
	// The rest may have been written: leave them in the journal.
	p.abandon.Store(true)
	p.cl.Close()
	p.wg.Wait()
	for p.inflight.Load() > 0 { // promises run on franz-go's goroutines
		time.Sleep(time.Millisecond)
	}
	var errs []error
	p.mu.Lock()
	for _, l := range []*segLog{p.retry, p.main} {
		if err := l.closeAll(); err != nil {
			errs = append(errs, err)
		}
	}
	p.mu.Unlock()
	if n := p.jr.pendingFrames(); n > 0 {
		// Written back now, so that they also survive a machine crash
		// after this clean shutdown, like the fsync'd spool.
		if err := p.jr.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("journal: %w", err))
		}
		p.log.Info("events Kafka did not acknowledge stay in the ack journal for the next start", "events", n)
	}
	if err := p.jr.close(); err != nil {
		errs = append(errs, err)
	}
	if p.lock != nil {
		p.lock.Close()
	}
	if n := p.retry.bytes() + p.main.bytes(); n > 0 {
		p.log.Info("events left in the spool for the next start", "spool_bytes", n)
	}
	return errors.Join(errs...)
}
