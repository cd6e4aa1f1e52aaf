package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/metrics"
)

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic is the alerts topic. Default Topic.
	Topic string
	// Group is the consumer group of the rollup nodes. Default "sluice-alerts".
	Group string
	// KafkaOpts are appended to the consumer's client options.
	KafkaOpts []kgo.Opt
	// Conn is the ClickHouse connection the alerts table is written through.
	// Required.
	Conn driver.Conn
	// Database is the ClickHouse database. Default chschema.DefaultDatabase.
	Database string
	// Catalog gives each tenant's webhook. Required.
	Catalog interface{ Load() *catalog.Snapshot }
	// Retry is the webhook retry policy. Default DefaultRetry.
	Retry Retry
	// Client sends webhooks. Default: a client that follows no redirect.
	Client *http.Client
	// Logger receives errors. Default slog.Default().
	Logger *slog.Logger
}

// Sink is the alerts stage of the rollup role: it reads the alerts topic as
// a consumer group, keeps the first copy of each alert id, POSTs it to its
// tenant's webhook and stores it in ClickHouse, then commits.
type Sink struct {
	o          SinkOptions
	cl         *kgo.Client
	recent     map[string]struct{} // ids stored lately: spares a ClickHouse lookup
	hooked     map[string]struct{} // ids delivered but not stored yet: a retried batch does not deliver them again
	stored     atomic.Uint64
	duplicates atomic.Uint64
	invalid    atomic.Uint64
	delivered  atomic.Uint64
	undeliv    atomic.Uint64
}

// maxRecent bounds the ids a Sink remembers in memory; past it the set
// starts over and ClickHouse answers for older ids.
const maxRecent = 1 << 16

// NewSink returns a Sink; Run runs it.
func NewSink(o SinkOptions) (*Sink, error) {
	if len(o.Brokers) == 0 || o.Conn == nil || o.Catalog == nil {
		return nil, errors.New("alerts: sink needs Brokers, Conn and Catalog")
	}
	if o.Topic == "" {
		o.Topic = Topic
	}
	if o.Group == "" {
		o.Group = "sluice-alerts"
	}
	if o.Database == "" {
		o.Database = chschema.DefaultDatabase
	}
	if err := chschema.CheckDatabase(o.Database); err != nil {
		return nil, err
	}
	if o.Retry.Attempts <= 0 {
		o.Retry = DefaultRetry
	}
	if o.Client == nil {
		o.Client = newClient()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}, o.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("alerts: consumer client: %w", err)
	}
	return &Sink{o: o, cl: cl, recent: make(map[string]struct{}), hooked: make(map[string]struct{})}, nil
}

// RegisterMetrics adds the sink's counters to r.
func (s *Sink) RegisterMetrics(r *metrics.Registry) {
	r.CounterFunc("sluice_alerts_stored_total", "Alerts stored in ClickHouse (first copies).", s.stored.Load)
	r.CounterFunc("sluice_alerts_duplicates_total", "Copies of alerts already stored, skipped.", s.duplicates.Load)
	r.CounterFunc("sluice_alerts_invalid_total", "Undecodable records on the alerts topic, skipped.", s.invalid.Load)
	r.CounterFunc("sluice_alerts_webhook_delivered_total", "Alerts a tenant's webhook accepted.", s.delivered.Load)
	r.CounterFunc("sluice_alerts_webhook_failed_total", "Alerts whose webhook delivery failed after every retry (still stored).", s.undeliv.Load)
}

// Run consumes until ctx ends, then closes the client. A ClickHouse error
// is retried: the batch is handled again, its stored alerts skipped.
func (s *Sink) Run(ctx context.Context) error {
	defer s.cl.Close()
	for {
		fs := s.cl.PollRecords(ctx, 1000)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.o.Logger.Warn("alerts: fetch error", "topic", t, "partition", p, "err", err)
		})
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			err := s.handle(ctx, recs)
			if err == nil {
				break
			}
			s.o.Logger.Error("alerts: store failed; retrying", "in", wait, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		if err := s.cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
			// The records come again (to this node or the partition's next
			// owner) and are recognised as stored.
			s.o.Logger.Warn("alerts: commit failed", "err", err)
		}
	}
}

// handle stores the first copy of every alert of recs that is not stored
// yet, after delivering it to its tenant's webhook.
func (s *Sink) handle(ctx context.Context, recs []*kgo.Record) error {
	var fresh []*Alert
	byTenant := map[string][]string{}
	inBatch := map[string]bool{}
	for _, r := range recs {
		a, err := Decode(r.Value)
		if err != nil {
			s.invalid.Add(1)
			s.o.Logger.Warn("alerts: skipping an undecodable record", "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		if _, ok := s.recent[a.ID]; ok || inBatch[a.ID] {
			s.duplicates.Add(1)
			continue
		}
		inBatch[a.ID] = true
		fresh = append(fresh, a)
		byTenant[a.TenantID] = append(byTenant[a.TenantID], a.ID)
	}
	known := map[string]bool{}
	for t, ids := range byTenant {
		k, err := chschema.KnownAlerts(ctx, s.o.Conn, s.o.Database, t, ids)
		if err != nil {
			return err
		}
		for id := range k {
			known[id] = true
		}
	}
	var rows []chschema.AlertRow
	var todo []*Alert
	for _, a := range fresh {
		if known[a.ID] {
			s.duplicates.Add(1)
			s.remember(a.ID)
			continue
		}
		todo = append(todo, a)
	}
	s.deliverAll(ctx, todo)
	for _, a := range todo {
		rows = append(rows, chschema.AlertRow{
			ID: a.ID, TenantID: a.TenantID, ServiceID: a.ServiceID, AppID: a.AppID, Metric: a.Metric, Period: a.Period,
			WindowStart: a.WindowStart, Threshold: a.Threshold, Value: a.Value, Max: a.Max, Time: a.Time, Node: a.Node,
		})
	}
	if err := chschema.InsertAlerts(ctx, s.o.Conn, s.o.Database, rows); err != nil {
		return err
	}
	s.stored.Add(uint64(len(rows)))
	for _, a := range todo {
		s.remember(a.ID)
		delete(s.hooked, a.ID)
	}
	return nil
}

func (s *Sink) remember(id string) {
	if len(s.recent) >= maxRecent {
		clear(s.recent)
	}
	s.recent[id] = struct{}{}
}

// deliverAll posts each alert to its tenant's webhook, at most 16 at a time,
// and returns when every delivery has succeeded or given up.
func (s *Sink) deliverAll(ctx context.Context, as []*Alert) {
	snap := s.o.Catalog.Load()
	if len(s.hooked) >= maxRecent { // ids of batches this member never stored (a rebalance took them)
		clear(s.hooked)
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, a := range as {
		var t *catalog.Tenant
		if snap != nil {
			t = snap.Tenants[a.TenantID]
		}
		if t == nil || t.WebhookURL == "" {
			continue
		}
		if _, done := s.hooked[a.ID]; done {
			continue
		}
		s.hooked[a.ID] = struct{}{} // a failed delivery is not retried with the batch either: it had its attempts
		body, _ := json.Marshal(a)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := deliver(ctx, s.o.Client, s.o.Retry, t.WebhookURL, t.WebhookSecret, a.ID, body)
			if err != nil {
				s.undeliv.Add(1)
				s.o.Logger.Warn("alerts: webhook delivery failed", "tenant", a.TenantID, "alert", a.ID, "attempts", n, "err", err)
				return
			}
			s.delivered.Add(1)
		}()
	}
	wg.Wait()
}
