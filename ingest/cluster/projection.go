package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/restore"
	"github.com/sluice-dev/sluice/limiter"
)

// ProjectionOptions configure a Projection.
type ProjectionOptions struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic is the usage topic. Required.
	Topic string
	// From is where each partition's projection starts: the end offsets the
	// counter restore captured (restore.Stats.Ends). Partitions not listed
	// start at the log's end. Its keys also name the topic's partitions.
	From map[int32]int64
	// Limiter receives the usage of other processes. Required.
	Limiter *limiter.Limiter
	// Catalog gives the configuration in force. Required.
	Catalog interface{ Load() *catalog.Snapshot }
	// Own is the id prefix of this process's events (event.IDGenerator.Prefix):
	// they are in the limiter already and are not applied again.
	Own [8]byte
	// Logger receives errors. Default slog.Default().
	Logger *slog.Logger
	// KafkaOpts are appended to the client options (TLS, SASL, ...).
	KafkaOpts []kgo.Opt
	// Other, if set, is offered every event of another process that the
	// catalog has no application for (an Envoy rate limit domain's, see
	// ingest/envoyrls), in the same order; it reports whether it applied
	// the event. It runs on the projection's goroutine and must not keep ev.
	Other func(ev *event.Event) bool
	// Watcher, if set, sees the counters the other processes' usage moved
	// (utilization alerts).
	Watcher restore.Watcher
}

// Projection tails every partition of the usage topic and applies the usage
// of other processes to the limiter, in log order per partition. It records,
// per partition, the offset it has applied up to, so that a new owner can
// wait until it has read a partition to its end.
type Projection struct {
	o       ProjectionOptions
	cl      *kgo.Client
	applied []atomic.Int64 // next offset to apply, per partition
	hw      []atomic.Int64 // the partition's high watermark at the last fetch
	lagMs   []atomic.Int64 // receive-to-apply time of the last record applied, ms
	maxLag  atomic.Int64   // the longest receive-to-apply time seen, ms
	events  atomic.Uint64  // events applied
	own     atomic.Uint64  // own events skipped
	skipped atomic.Uint64  // undecodable, denied or unknown events
	refused atomic.Uint64  // events the limiter refused (they would wrap a counter)
	done    chan struct{}
	cancel  context.CancelFunc
}

// NewProjection starts the projection; Close stops it.
func NewProjection(o ProjectionOptions) (*Projection, error) {
	if len(o.Brokers) == 0 || o.Topic == "" || o.Limiter == nil || o.Catalog == nil || len(o.From) == 0 {
		return nil, errors.New("cluster: projection needs Brokers, Topic, From, Limiter and Catalog")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n := int32(0)
	starts := make(map[int32]kgo.Offset, len(o.From))
	for p, off := range o.From {
		n = max(n, p+1)
		starts[p] = kgo.NewOffset().At(off)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: starts}),
		// The projection is on every call's critical path to exactness after
		// a handoff: fetch as soon as anything is there.
		kgo.FetchMaxWait(50 * time.Millisecond),
	}, o.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("cluster: projection client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr := &Projection{
		o: o, cl: cl, cancel: cancel, done: make(chan struct{}),
		applied: make([]atomic.Int64, n), hw: make([]atomic.Int64, n), lagMs: make([]atomic.Int64, n),
	}
	for p, off := range o.From {
		pr.applied[p].Store(off)
		pr.hw[p].Store(off)
	}
	go pr.run(ctx)
	return pr, nil
}

// Partitions is the number of partitions of the usage topic.
func (pr *Projection) Partitions() int { return len(pr.applied) }

// Applied returns the offset partition p has been applied up to (exclusive).
func (pr *Projection) Applied(p int32) int64 { return pr.applied[p].Load() }

// Lag returns partition p's records not yet applied (the high watermark of
// the last fetch minus the applied offset) and the time from receipt to
// application of the last record applied.
func (pr *Projection) Lag(p int32) (records int64, last time.Duration) {
	return max(pr.hw[p].Load()-pr.applied[p].Load(), 0), time.Duration(pr.lagMs[p].Load()) * time.Millisecond
}

// MaxLag is the longest time from an event's receipt by another node to its
// application here, since the projection started: the replication lag that
// bounds the overshoot of local limits.
func (pr *Projection) MaxLag() time.Duration {
	return time.Duration(pr.maxLag.Load()) * time.Millisecond
}

// Close stops the projection.
func (pr *Projection) Close() {
	pr.cancel()
	<-pr.done
	pr.cl.Close()
}

func (pr *Projection) run(ctx context.Context) {
	defer close(pr.done)
	ap := restore.Applier{Limiter: pr.o.Limiter, Watcher: pr.o.Watcher}
	for {
		fs := pr.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			pr.o.Logger.Warn("cluster: projection fetch error", "topic", t, "partition", p, "err", err)
		})
		snap := pr.o.Catalog.Load()
		now := time.Now().UnixMilli()
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			p := ftp.Partition
			if int(p) >= len(pr.applied) {
				return
			}
			for _, r := range ftp.Records {
				pr.apply(&ap, snap, r, now)
				pr.applied[p].Store(r.Offset + 1)
			}
			if ftp.HighWatermark > 0 {
				pr.hw[p].Store(ftp.HighWatermark)
			}
		})
	}
}

func (pr *Projection) apply(ap *restore.Applier, snap *catalog.Snapshot, r *kgo.Record, now int64) {
	ev, err := ap.Decode(r.Value)
	if err != nil {
		pr.skipped.Add(1)
		return
	}
	if [8]byte(ev.ID[:8]) == pr.o.Own {
		pr.own.Add(1)
		return
	}
	lag := max(now-ev.Received, 0)
	pr.lagMs[r.Partition].Store(lag)
	if lag > pr.maxLag.Load() {
		pr.maxLag.Store(lag) // one writer: the projection goroutine
	}
	switch applied, err := ap.Apply(snap, ev, nil); {
	case err != nil:
		pr.refused.Add(1)
	case applied:
		pr.events.Add(1)
	case pr.o.Other != nil && pr.o.Other(ev):
		pr.events.Add(1)
	default:
		pr.skipped.Add(1)
	}
}
