package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/tlsconf"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultMaxBatchWait is how long a batch waits to fill by default. A batch
// costs ClickHouse one row per table and distinct key (tenant, service, app,
// plan, metric, reason, code, region, minute), however many events it folds:
// with many applications each sending a few calls per second, a batch of
// 200 ms writes about one row per event into each of the four usage tables,
// and one of a second folds each application's calls of that second into
// one row (at 15,000 authreps/s over 10,000 applications on two cores,
// ClickHouse took 20 µs of CPU per event with 200 ms, 8 µs with 1 s). The
// price is freshness: usage reaches ClickHouse about a second after the
// call instead of a fifth.
const DefaultMaxBatchWait = time.Second

// Options configure a Rollup. Zero values take the documented defaults.
type Options struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic is the usage topic. Default event.Topic.
	Topic string
	// Group is the consumer group. Default "sluice-rollup".
	Group string
	// InstanceID enables static membership: a restarted member with the same
	// id gets its partitions back without a full rebalance (≈0.7 s instead of
	// ≈6 s). Empty: dynamic membership.
	InstanceID string
	// KafkaOpts are appended to the client options (TLS, SASL, ...).
	KafkaOpts []kgo.Opt

	// ClickHouseAddr is the native-protocol address, host:port. Required.
	ClickHouseAddr string
	// Database is the ClickHouse database. Default chschema.DefaultDatabase.
	Database string
	// ClickHouseUser and ClickHousePassword authenticate; default user
	// "default" without a password.
	ClickHouseUser, ClickHousePassword string
	// ClickHouseTLS encrypts the ClickHouse connection (ClickHouseAddr is
	// then the secure native port). Default: plaintext.
	ClickHouseTLS tlsconf.Client
	// SkipMigrate: do not run chschema.Migrate when a session starts.
	SkipMigrate bool

	// Hierarchy gives metric ancestors. Default NoHierarchy.
	Hierarchy Hierarchy
	// Raw also writes one events_raw row per event.
	Raw bool

	// MaxBatchEvents bounds the records of one batch. Default 100,000.
	MaxBatchEvents int
	// MaxBatchWait is how long a batch may wait to fill before it is
	// written. Default DefaultMaxBatchWait; it bounds the freshness added by
	// the rollup.
	MaxBatchWait time.Duration
	// WriteRetryFor is how long a failing batch is retried before the
	// session is ended (the client leaves the group and starts over from the
	// offsets in ClickHouse). Default 20s, below the group's rebalance timeout
	// so that a member stuck on ClickHouse never outlives its assignment.
	WriteRetryFor time.Duration

	// Retention, if not nil, is applied every RetentionEvery (default 1h)
	// by chschema.Retention.Apply. Several members applying it at once is
	// harmless. Nil: no retention here (run it elsewhere, or keep all).
	Retention      chschema.Retention
	RetentionEvery time.Duration

	// Logger receives progress and errors. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() error {
	if len(o.Brokers) == 0 {
		return errors.New("rollup: Options.Brokers is required")
	}
	if o.ClickHouseAddr == "" {
		return errors.New("rollup: Options.ClickHouseAddr is required")
	}
	if o.Topic == "" {
		o.Topic = event.Topic
	}
	if o.Group == "" {
		o.Group = "sluice-rollup"
	}
	if o.Database == "" {
		o.Database = chschema.DefaultDatabase
	}
	if err := chschema.CheckDatabase(o.Database); err != nil {
		return err
	}
	if o.Hierarchy == nil {
		o.Hierarchy = NoHierarchy{}
	}
	if o.MaxBatchEvents <= 0 {
		o.MaxBatchEvents = 100_000
	}
	if o.MaxBatchWait <= 0 {
		o.MaxBatchWait = DefaultMaxBatchWait
	}
	if o.WriteRetryFor <= 0 {
		o.WriteRetryFor = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetentionEvery <= 0 {
		o.RetentionEvery = time.Hour
	}
	return nil
}

// Rollup is the rollup role: a member of the consumer group that folds usage
// events into ClickHouse rollups exactly once. Create it with New, run it with
// Run.
type Rollup struct {
	o  Options
	st counters
}

// Stats are cumulative counters of a Rollup.
type Stats struct {
	Events      uint64 // events folded into the rollups
	Batches     uint64 // batches written
	Rows        uint64 // rows inserted (all tables, markers included)
	Skipped     uint64 // records skipped because ClickHouse already had them (replays)
	Undecodable uint64 // records that could not be decoded (logged, skipped)
	WriteErrors uint64 // failed inserts (retried)
	Sessions    uint64 // consumer sessions started (1 + restarts after errors)
	Negative    uint64 // usage entries below zero, dropped (logged); the API never accepts them
	Saturated   uint64 // row sums that would have passed the largest int64, stored as it (logged)
	Missing     uint64 // records deleted from Kafka before they were rolled up (logged as errors; see gaps)
}

// New checks the options and returns a Rollup. It does not connect.
func New(o Options) (*Rollup, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	return &Rollup{o: o}, nil
}

// Stats returns the counters so far. Safe for concurrent use.
func (r *Rollup) Stats() Stats {
	return Stats{
		Events: r.st.events.Load(), Batches: r.st.batches.Load(), Rows: r.st.rows.Load(),
		Skipped: r.st.skipped.Load(), Undecodable: r.st.undecodable.Load(),
		WriteErrors: r.st.writeErrors.Load(), Sessions: r.st.sessions.Load(),
		Negative: r.st.negative.Load(), Saturated: r.st.saturated.Load(), Missing: r.st.missing.Load(),
	}
}

// Run consumes until ctx is done and returns nil then. Failures (ClickHouse
// or Kafka unreachable, a batch that cannot be written for WriteRetryFor) end
// the current session; Run logs them and starts a new one after a backoff,
// resuming from what ClickHouse has. It never advances past a batch that is
// not in ClickHouse.
func (r *Rollup) Run(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for {
		r.st.sessions.Add(1)
		start := time.Now()
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = 250 * time.Millisecond
		}
		r.o.Logger.Warn("rollup: session ended; restarting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (r *Rollup) session(ctx context.Context) error {
	o := &r.o
	conn, err := chschema.Connect(ctx, chschema.ConnOptions{Addr: o.ClickHouseAddr, User: o.ClickHouseUser, Password: o.ClickHousePassword, TLS: o.ClickHouseTLS})
	if err != nil {
		return err
	}
	defer conn.Close()
	if !o.SkipMigrate {
		if err := chschema.Migrate(ctx, conn, o.Database); err != nil {
			return err
		}
	}
	if o.Retention != nil {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go r.retention(rctx, conn)
	}
	w := newWriter(conn, o.Database, o.Hierarchy, o.Raw, o.Logger, &r.st)
	gp := &gaps{}
	o.Logger.Info("rollup: session starting", "brokers", o.Brokers, "topic", o.Topic, "group", o.Group,
		"clickhouse", o.ClickHouseAddr, "database", o.Database, "raw", o.Raw)

	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topic),
		kgo.DisableAutoCommit(),
		// A rebalance waits until the batch in hand is written (or
		// abandoned), so partitions never change owner mid-batch.
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(func(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			return r.adjust(ctx, w, gp, offs)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			w.forget(lost[o.Topic])
			gp.forget(lost[o.Topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			w.forget(lost[o.Topic])
			gp.forget(lost[o.Topic])
		}),
		kgo.FetchMaxBytes(64 << 20),
		kgo.FetchMaxPartitionBytes(8 << 20),
	}
	if o.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(o.InstanceID))
	}
	opts = append(opts, o.KafkaOpts...)
	ls := newLease()
	opts = append(opts, kgo.WithHooks(ls))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("rollup: kafka client: %w", err)
	}
	defer cl.CloseAllowingRebalance() // Close would wait for a rebalance we block
	session, ok := cl.OptValue(kgo.SessionTimeout).(time.Duration)
	if !ok || session <= 0 {
		session = 45 * time.Second // kgo's default
	}
	ls.grant(session)
	w.owner = ls.check

	recs := make([]record, 0, o.MaxBatchEvents)
	for {
		recs = recs[:0]
		if err := r.poll(ctx, cl, gp, &recs); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if len(recs) > 0 {
			t0 := time.Now()
			if err := r.writeRetry(ctx, w, recs); err != nil {
				return err
			}
			o.Logger.Debug("rollup: batch written", "records", len(recs), "took", time.Since(t0))
			// A hint only: the resume offsets come from ClickHouse.
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := cl.CommitUncommittedOffsets(cctx); err != nil && ctx.Err() == nil {
				o.Logger.Debug("rollup: commit (hint) failed", "err", err)
			}
			cancel()
		}
		cl.AllowRebalance()
	}
}

func (r *Rollup) retention(ctx context.Context, conn driver.Conn) {
	for {
		dropped, err := r.o.Retention.Apply(ctx, conn, r.o.Database, time.Now())
		if err != nil && ctx.Err() == nil {
			r.o.Logger.Warn("rollup: retention failed", "err", err)
		}
		if len(dropped) > 0 {
			r.o.Logger.Info("rollup: retention dropped partitions", "partitions", dropped)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.o.RetentionEvery):
		}
	}
}

// poll fills recs with up to MaxBatchEvents records, waiting at most
// MaxBatchWait after the first one, and reports records Kafka deleted
// before they were rolled up (gp).
func (r *Rollup) poll(ctx context.Context, cl *kgo.Client, gp *gaps, recs *[]record) error {
	var deadline time.Time
	for len(*recs) < r.o.MaxBatchEvents {
		var pctx context.Context
		var cancel context.CancelFunc
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				break
			}
			pctx, cancel = context.WithTimeout(ctx, d)
		} else {
			// Wake up now and then even when idle so a rebalance is
			// allowed promptly.
			pctx, cancel = context.WithTimeout(ctx, time.Second)
		}
		fs := cl.PollRecords(pctx, r.o.MaxBatchEvents-len(*recs))
		cancel()
		if fs.IsClientClosed() {
			return errors.New("rollup: kafka client closed")
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.o.Logger.Warn("rollup: fetch error", "topic", t, "partition", p, "err", err)
				ferr = err
			}
		})
		_ = ferr // kgo retries fetch errors itself; they are only logged
		fs.EachRecord(func(rec *kgo.Record) {
			switch n, from, behind := gp.see(rec.Partition, rec.Offset); {
			case n > 0:
				r.st.missing.Add(uint64(n))
				r.o.Logger.Error("rollup: usage records were deleted from Kafka before they were rolled up; their usage is not in ClickHouse (is the topic's retention shorter than the rollup's downtime?)",
					"topic", rec.Topic, "partition", rec.Partition, "from_offset", from, "to_offset", rec.Offset, "records", n)
			case behind:
				r.o.Logger.Error("rollup: the Kafka partition is behind what ClickHouse has rolled up (was the topic deleted and created again?); records below ClickHouse's markers are skipped as already counted",
					"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
			}
			*recs = append(*recs, record{Partition: rec.Partition, Offset: rec.Offset, Value: rec.Value})
		})
		if ctx.Err() != nil {
			return nil
		}
		if len(*recs) == 0 {
			if deadline.IsZero() {
				return nil // idle: let the caller allow a rebalance
			}
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(r.o.MaxBatchWait)
		}
	}
	return nil
}

// writeRetry writes one batch, retrying with backoff for WriteRetryFor.
func (r *Rollup) writeRetry(ctx context.Context, w *writer, recs []record) error {
	give := time.Now().Add(r.o.WriteRetryFor)
	backoff := 100 * time.Millisecond
	for {
		err := w.write(ctx, recs, time.Now())
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errLeaseExpired) {
			return err
		}
		if time.Now().After(give) {
			return fmt.Errorf("rollup: batch not written after %v: %w", r.o.WriteRetryFor, err)
		}
		r.o.Logger.Warn("rollup: write failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// adjust replaces the group's committed offsets by ClickHouse's: for each
// assigned partition, the smallest next offset over the tables, or the start
// of the log for a partition some table has never seen. It retries while
// ClickHouse is unreachable, until the group session moves on.
func (r *Rollup) adjust(ctx context.Context, w *writer, gp *gaps, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	parts := offs[r.o.Topic]
	kps := make([]int32, 0, len(parts))
	for kp := range parts {
		kps = append(kps, kp)
	}
	backoff := 100 * time.Millisecond
	for {
		err := w.load(ctx, kps)
		if err == nil {
			break
		}
		r.o.Logger.Warn("rollup: reading resume offsets from ClickHouse failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	start := w.startOffsets(kps)
	for kp := range parts {
		gp.expect(kp, start[kp])
		if s := start[kp]; s > 0 {
			parts[kp] = kgo.NewOffset().At(s).WithEpoch(-1)
		} else {
			parts[kp] = kgo.NewOffset().AtStart()
		}
	}
	r.o.Logger.Info("rollup: partitions assigned; resuming from ClickHouse offsets", "offsets", start)
	return offs, nil
}
