// Package kafkalog is the cluster form of the configuration change log: a
// configlog.Log over a compacted Kafka topic (default "sluice.config") with
// one partition, so that every node of a cluster reads the same changes in
// the same order and converges on the same catalog.
//
// A record's key is its entity key and its value the entity's JSON; an empty
// value is a Kafka tombstone, which compaction eventually removes together
// with the entity's older records. Compaction is the broker's: a node
// starting reads the compacted topic (about one record per live entity)
// and the changes of the last segment (SegmentRoll), not every change ever
// made; configlog.Projection.Apply writes a large file in chunks of at most
// configlog.ChunkBytes, within one producer batch each. Positions are Kafka offsets: an entry's
// Pos is its offset + 1, which is also where Tail resumes.
//
// One Append is one record batch: records are produced with manual flushing
// and flushed together, under a mutex, so a batch is written whole or not at
// all and appends of one process never interleave. Appends of different
// processes may interleave record by record only if a batch were split,
// which one flush of less than the maximum batch size does not do.
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/internal/kafkatopic"
)

// DefaultTopic is the configuration topic.
const DefaultTopic = "sluice.config"

// SegmentRoll is the topic's segment.ms when Open creates it: how old the
// records a compaction can not yet reach get.
const SegmentRoll = time.Hour

// Options configure a Log.
type Options struct {
	Brokers []string
	Topic   string // default DefaultTopic
	// ReplicationFactor of the topic when Open creates it; 0 = the broker's
	// default.
	ReplicationFactor int16
	// ClientOpts are extra franz-go options (TLS, SASL) for every client.
	ClientOpts []kgo.Opt
	Logger     *slog.Logger
}

// Log is a configlog.Log over a compacted Kafka topic.
type Log struct {
	o      Options
	prod   *kgo.Client
	adm    *kadm.Client
	mu     sync.Mutex // one Append at a time: its records form one batch
	closed chan struct{}
	once   sync.Once
}

var _ configlog.Log = (*Log)(nil)

// Open connects to Kafka and creates the topic (one partition, compacted)
// when it does not exist. It fails if the topic exists with more than one
// partition: order across partitions is not defined.
func Open(ctx context.Context, o Options) (*Log, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("kafkalog: no brokers")
	}
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	prod, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.DefaultProduceTopic(o.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ManualFlushing(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(16 << 20),
	}, o.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: client: %w", err)
	}
	l := &Log{o: o, prod: prod, adm: kadm.NewClient(prod), closed: make(chan struct{})}
	if err := l.ensureTopic(ctx); err != nil {
		prod.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) ensureTopic(ctx context.Context) error {
	rf := l.o.ReplicationFactor
	if rf == 0 {
		rf = -1 // the broker's default.replication.factor
	}
	n, _, err := kafkatopic.Ensure(ctx, l.adm, l.o.Topic, 1, rf, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"),
		// The broker compacts closed segments only: rolling one every hour
		// (Kafka's default is a week) keeps what a starting node replays
		// near the live configuration, one record per entity, plus at most
		// the last hour's changes.
		"segment.ms": kadm.StringPtr(strconv.Itoa(int(SegmentRoll / time.Millisecond))),
	})
	if err != nil {
		return fmt.Errorf("kafkalog: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("kafkalog: topic %s has %d partitions; the config log needs exactly 1", l.o.Topic, n)
	}
	return nil
}

// Append produces recs as one batch and returns the position after the last.
func (l *Log) Append(ctx context.Context, recs []configlog.Record) (configlog.Position, error) {
	if l.isClosed() {
		return 0, configlog.ErrClosed
	}
	if len(recs) == 0 {
		return l.End(ctx)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		last int64 = -1
		ferr error
	)
	for _, r := range recs {
		kr := &kgo.Record{Key: []byte(r.Key), Partition: 0}
		if !r.Tombstone() {
			kr.Value = r.Value
		}
		wg.Add(1)
		l.prod.Produce(ctx, kr, func(kr *kgo.Record, err error) {
			defer wg.Done()
			emu.Lock()
			defer emu.Unlock()
			if err != nil && ferr == nil {
				ferr = err
			}
			last = max(last, kr.Offset)
		})
	}
	if err := l.prod.Flush(ctx); err != nil {
		wg.Wait()
		return 0, fmt.Errorf("kafkalog: append: %w", err)
	}
	wg.Wait()
	if ferr != nil {
		if l.isClosed() {
			return 0, configlog.ErrClosed
		}
		return 0, fmt.Errorf("kafkalog: append to %s: %w", l.o.Topic, ferr)
	}
	return configlog.Position(last + 1), nil
}

// End returns the topic's end offset.
func (l *Log) End(ctx context.Context) (configlog.Position, error) {
	if l.isClosed() {
		return 0, configlog.ErrClosed
	}
	ends, err := l.adm.ListEndOffsets(ctx, l.o.Topic)
	if err != nil {
		return 0, fmt.Errorf("kafkalog: end offset of %s: %w", l.o.Topic, err)
	}
	e, ok := ends.Lookup(l.o.Topic, 0)
	if !ok {
		return 0, fmt.Errorf("kafkalog: end offset of %s: partition 0 missing", l.o.Topic)
	}
	if e.Err != nil {
		return 0, fmt.Errorf("kafkalog: end offset of %s: %w", l.o.Topic, e.Err)
	}
	return configlog.Position(e.Offset), nil
}

// Tail reads the topic from position from on with its own consumer client.
func (l *Log) Tail(ctx context.Context, from configlog.Position, fn func([]configlog.Entry) error) error {
	if l.isClosed() {
		return configlog.ErrClosed
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(l.o.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.o.Topic: {0: kgo.NewOffset().At(int64(from))}}),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, l.o.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("kafkalog: tail client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		fs := cl.PollFetches(ctx)
		if l.isClosed() {
			return configlog.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			// Fetch errors are retried by the client; say so once per poll.
			l.o.Logger.Warn("config log: fetch error", "topic", fe.Topic, "err", fe.Err)
		}
		var batch []configlog.Entry
		fs.EachRecord(func(r *kgo.Record) {
			batch = append(batch, configlog.Entry{
				Record: configlog.Record{Key: string(r.Key), Value: r.Value},
				Pos:    configlog.Position(r.Offset + 1),
				Time:   r.Timestamp,
			})
		})
		if len(batch) > 0 {
			if err := fn(batch); err != nil {
				return err
			}
		}
	}
}

// Close stops Tail calls and releases the producer.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.prod.Close()
	})
	return nil
}

func (l *Log) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}
