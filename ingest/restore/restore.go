// Package restore rebuilds the limiter's counters on startup: it seeds every
// open calendar window from the ClickHouse rollups, then replays the Kafka
// tail the rollups do not have yet, and rebuilds sliding windows from the tail
// by time. Readiness should wait for Restore to return.
//
// # Why nothing is counted twice or missed
//
// chschema.OpenWindowSums returns, per calendar unit, the sums of the open
// window together with the Kafka offsets those sums contain exactly (read in
// the same SELECT). Restore seeds the sums, then reads each partition from the
// smallest of those offsets up to the end offset captured when Restore began,
// and applies a record to a calendar limit only when the unit's sums do not
// include it (OpenWindows.Includes). Sliding windows are never in ClickHouse:
// every record whose usage time lies within MaxSliding of Now is applied to
// them, so the replay starts early enough in each partition to cover that
// span (by the records' timestamps, which are the events' receive times).
//
// # Counters never wrap
//
// Seed and Record refuse what would make a counter negative or take it past
// the largest int64 (see limiter). The API refuses such usage before it
// becomes an event, and ClickHouse's sums are read saturated, so a refusal
// means the log holds events no API node accepted (another producer, or a
// counter seeded at 9223372036854775807): the sum or event is skipped,
// counted in Stats.Refused and logged.
//
// # Known gaps
//
// The replay stops at each partition's end offset by seeing the record just
// below it, so it assumes contiguous offsets (the idempotent producer's
// topic: no transactions, no compaction); ctx bounds the wait otherwise.
//
// Sets ("#N") already folded into ClickHouse are not honoured: the sums never
// contain them (OpenWindows.Sets has the latest one, which a later version may
// seed); sets still in the tail are replayed as sets. Usage is applied to the
// application's current plan, not the plan recorded in the event.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// DefaultMaxSliding is the longest sliding window a plan may have (see
// limiter.Period), so the replay covers every sliding window by default.
const DefaultMaxSliding = 24 * time.Hour

// Options configure Restore.
type Options struct {
	// Limiter receives the counters. Required.
	Limiter *limiter.Limiter
	// Catalog gives the configuration (apps, plans, metric tables). Required.
	Catalog interface{ Load() *catalog.Snapshot }
	// CH is a connection to the rollups' ClickHouse. Required.
	CH driver.Conn
	// Database is the ClickHouse database of the rollups. Required.
	Database string
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic is the usage topic. Default event.Topic.
	Topic string
	// Now is the restore time: the windows open at Now are seeded. Default
	// time.Now(). It should agree with the limiter's clock.
	Now time.Time
	// MaxSliding is how far back from Now sliding windows are rebuilt.
	// Default DefaultMaxSliding.
	MaxSliding time.Duration
	// Logger receives progress. Default slog.Default().
	Logger *slog.Logger
	// KafkaOpts are appended to the client options (TLS, SASL, ...).
	KafkaOpts []kgo.Opt
	// Watcher, if set, sees the counters the tail replay moves (not the
	// sums seeded from ClickHouse): the utilization alerts detector, so
	// that a crossing by usage this node accepted just before it stopped is
	// reported again (ingest/alerts keeps one copy).
	Watcher Watcher
}

// Stats describe one Restore.
type Stats struct {
	Seeded   int // window sums from ClickHouse seeded into counters
	Replayed int // tail events applied to at least one limit
	Skipped  int // tail events applied to nothing (denied, unknown app, nothing open, undecodable)
	Refused  int // sums and tail events the limiter refused: negative, or past the largest int64
	Records  int // tail records read
	// Ends are the end offsets of every partition captured when Restore
	// began: the counters hold every record below them, so a consumer that
	// keeps the limiter current (the cluster projection) starts there.
	Ends     map[int32]int64
	Duration time.Duration // wall time of Restore
}

// Restore seeds o.Limiter from ClickHouse and replays the Kafka tail; returns when
// the limiter holds every acknowledged unit up to the topic's end offsets at
// the time of the call.
func Restore(ctx context.Context, o Options) (Stats, error) {
	began := time.Now()
	var st Stats
	if o.Limiter == nil || o.Catalog == nil || o.CH == nil || o.Database == "" || len(o.Brokers) == 0 {
		return st, errors.New("restore: Limiter, Catalog, CH, Database and Brokers are required")
	}
	if o.Topic == "" {
		o.Topic = event.Topic
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MaxSliding <= 0 {
		o.MaxSliding = DefaultMaxSliding
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}

	// End offsets first: every unit acknowledged before the call is below
	// them, and whatever ClickHouse has is at most that.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.KafkaOpts...)...)
	if err != nil {
		return st, fmt.Errorf("restore: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, o.Topic)
	if err != nil {
		return st, fmt.Errorf("restore: end offsets of %s: %w", o.Topic, err)
	}
	if err := ends.Error(); err != nil {
		return st, fmt.Errorf("restore: end offsets of %s: %w", o.Topic, err)
	}

	win, err := chschema.OpenWindowSums(ctx, o.CH, o.Database, o.Now)
	if err != nil {
		return st, fmt.Errorf("restore: %w", err)
	}
	snap := o.Catalog.Load()
	st.Seeded, st.Refused = seed(o.Limiter, snap, win, o.Logger)

	afters, err := adm.ListOffsetsAfterMilli(ctx, o.Now.Add(-o.MaxSliding).UnixMilli(), o.Topic)
	if err != nil {
		return st, fmt.Errorf("restore: offsets after %v of %s: %w", o.Now.Add(-o.MaxSliding), o.Topic, err)
	}
	if err := afters.Error(); err != nil {
		return st, fmt.Errorf("restore: offsets after time of %s: %w", o.Topic, err)
	}
	logStarts, err := adm.ListStartOffsets(ctx, o.Topic)
	if err != nil {
		return st, fmt.Errorf("restore: start offsets of %s: %w", o.Topic, err)
	}
	from := win.From()
	starts := map[int32]kgo.Offset{}
	endAt := map[int32]int64{}
	st.Ends = make(map[int32]int64)
	ends.Each(func(e kadm.ListedOffset) {
		st.Ends[e.Partition] = e.Offset
		// A partition ClickHouse never saw is read from the start of the log.
		start := int64(0)
		if f, ok := from[e.Partition]; ok {
			start = f
		}
		if a, ok := afters.Lookup(o.Topic, e.Partition); ok && a.Offset >= 0 && a.Offset < start {
			start = a.Offset
		}
		if ls, ok := logStarts.Lookup(o.Topic, e.Partition); ok && ls.Err == nil && ls.Offset > start {
			// Retention deleted records ClickHouse never got: their usage
			// is lost to the counters (and to the rollups). Say so loudly.
			if f, ok := from[e.Partition]; !ok || f < ls.Offset {
				o.Logger.Warn("restore: records missing from both ClickHouse and Kafka; counters may be low",
					"partition", e.Partition, "clickhouse", from[e.Partition], "log start", ls.Offset)
			}
			start = ls.Offset
		}
		if start < e.Offset {
			starts[e.Partition] = kgo.NewOffset().At(start)
			endAt[e.Partition] = e.Offset
		}
	})
	o.Logger.Info("restore: seeded from ClickHouse", "sums", st.Seeded, "partitions to replay", len(starts))
	if len(starts) > 0 {
		if err := replay(ctx, &o, snap, win, starts, endAt, &st); err != nil {
			return st, err
		}
	}
	st.Duration = time.Since(began)
	o.Logger.Info("restore: done", "sums", st.Seeded, "replayed", st.Replayed, "skipped", st.Skipped, "refused", st.Refused, "duration", st.Duration)
	return st, nil
}

// seed sets the counter of every plan limit whose window ClickHouse has a sum
// for. The sums already include children in their parents. It returns the
// sums seeded and those the limiter refused (a negative sum: ClickHouse
// holds a wrapped total; OpenWindowSums saturates totals past the largest
// int64, so that should not happen).
func seed(lim *limiter.Limiter, snap *catalog.Snapshot, win *chschema.OpenWindows, log *slog.Logger) (n, refused int) {
	for i := range win.Sums {
		s := &win.Sums[i]
		app := lookup(snap, s.Tenant, s.Service, s.App)
		if app == nil {
			continue
		}
		m, ok := app.Service.MetricIndex[s.Metric]
		if !ok {
			continue
		}
		start := s.Start.Unix()
		if s.Unit == limiter.Eternity {
			start = 0
		}
		for _, l := range app.Plan().Limits {
			if l.Metric == m && l.Period.Unit == s.Unit {
				if err := lim.Seed(app.Key, m, l.Period, start, s.Sum); err != nil {
					refused++
					log.Warn("restore: window sum refused by the limiter", "tenant", s.Tenant, "service", s.Service,
						"app", s.App, "metric", s.Metric, "period", l.Period.String(), "err", err)
					continue
				}
				n++
			}
		}
	}
	return n, refused
}

// replay reads each partition from starts up to endAt (exclusive) and
// applies each record to the limits that do not have it yet.
func replay(ctx context.Context, o *Options, snap *catalog.Snapshot, win *chschema.OpenWindows,
	starts map[int32]kgo.Offset, endAt map[int32]int64, st *Stats) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: starts})}, o.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("restore: kafka consumer: %w", err)
	}
	defer cl.Close()
	left := len(endAt)
	done := map[int32]bool{}
	slidingFrom := o.Now.Add(-o.MaxSliding).UnixMilli()
	ap := Applier{Limiter: o.Limiter, Watcher: o.Watcher}
	var (
		sliding bool
		offset  int64
		part    int32
	)
	keep := func(l limiter.Limit) bool {
		if l.Period.Unit == limiter.Sliding {
			return sliding
		}
		return !win.Includes(l.Period.Unit, part, offset)
	}
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restore: replay of %s interrupted with %d partitions left: %w", o.Topic, left, err)
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("restore: fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end := endAt[r.Partition]
			if done[r.Partition] || r.Offset >= end {
				return // after the end captured at the start: not ours to replay
			}
			st.Records++
			if r.Offset+1 >= end {
				done[r.Partition] = true
				left--
			}
			ev, err := ap.Decode(r.Value)
			if err != nil {
				o.Logger.Warn("restore: undecodable record", "partition", r.Partition, "offset", r.Offset, "err", err)
				st.Skipped++
				return
			}
			sliding, part, offset = ev.TS >= slidingFrom, r.Partition, r.Offset
			applied, err := ap.Apply(snap, ev, keep)
			if err != nil {
				// The API refused usage that would wrap a counter before it
				// became an event, so a refusal here means the log holds
				// events no API node accepted (another producer, or counters
				// seeded higher than the events say): skip it, loudly.
				st.Refused++
				o.Logger.Warn("restore: tail event refused by the limiter", "partition", r.Partition, "offset", r.Offset,
					"tenant", ev.TenantID, "service", ev.ServiceID, "app", ev.AppID, "err", err)
				return
			}
			if !applied {
				st.Skipped++
				return
			}
			st.Replayed++
		})
	}
	return nil
}
