package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// Mark returns the smallest counter value that reaches pct percent of max,
// ceil(max*pct/100), and false when no int64 counter can reach it. It never
// overflows.
func Mark(max int64, pct uint16) (int64, bool) {
	if max <= 0 || pct == 0 {
		return 0, false
	}
	q, r := max/100, max%100
	lo := (r*int64(pct) + 99) / 100 // r < 100, pct <= 65535: no overflow
	if q > (math.MaxInt64-lo)/int64(pct) {
		return 0, false
	}
	return q*int64(pct) + lo, true
}

// Crossed returns the thresholds of th (ascending percentages) that a
// counter of limit max passes going from before to after, as the index range
// th[lo:hi]: those whose Mark is above before and at most after. It is the
// whole of the detection: one Mark for a counter below its lowest threshold,
// one per threshold above; nothing allocates.
func Crossed(th []uint16, max, before, after int64) (lo, hi int) {
	if after <= before || max <= 0 {
		return 0, 0
	}
	lo = len(th)
	for i, pct := range th {
		m, ok := Mark(max, pct)
		if !ok || m > after {
			return min(lo, i), i // ascending: the higher thresholds are not reached either
		}
		if m > before && lo == len(th) {
			lo = i
		}
	}
	return lo, len(th)
}

// DetectorOptions configure a Detector.
type DetectorOptions struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic is the alerts topic. Default Topic.
	Topic string
	// KafkaOpts are appended to the producer's client options (TLS, SASL).
	KafkaOpts []kgo.Opt
	// Node is recorded on the alerts this node reports.
	Node string
	// Queue bounds the alerts waiting for Kafka. Default 4096: alerts are
	// rare (at most one per limit and threshold per window per node), so a
	// full queue means Kafka has been unreachable for a while; further
	// alerts are then dropped and counted (sluice_alerts_dropped_total),
	// and the other API nodes, which see the same crossings, still report
	// them.
	Queue int
	// Clock stamps alerts. Default time.Now.
	Clock func() time.Time
	// Logger receives errors. Default slog.Default().
	Logger *slog.Logger
}

// pending is a crossing on its way to Kafka. It holds pointers into an
// immutable catalog snapshot, so queuing it copies no string.
type pending struct {
	svc   *catalog.Service
	app   *catalog.App
	lim   limiter.Limit
	start int64
	value int64
	pct   uint16
	at    int64 // unix ms
}

// Detector watches counters move on one API node and reports every
// threshold crossing to the alerts topic. Its Observe methods are on the hot
// path: they do not allocate or block.
type Detector struct {
	o       DetectorOptions
	cl      *kgo.Client
	q       chan pending
	seen    atomic.Uint64
	sent    atomic.Uint64
	dropped atomic.Uint64
	failed  atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewDetector starts a Detector; Close stops it.
func NewDetector(o DetectorOptions) (*Detector, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("alerts: detector needs Brokers")
	}
	if o.Topic == "" {
		o.Topic = Topic
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.DefaultProduceTopic(o.Topic),
		kgo.ProducerLinger(5 * time.Millisecond),
		// Records are keyed by alert id: every copy of one alert lands in
		// one partition, and so with one consumer of the group.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}, o.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("alerts: producer client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Detector{o: o, cl: cl, q: make(chan pending, o.Queue), cancel: cancel, done: make(chan struct{})}
	go d.run(ctx)
	return d, nil
}

// RegisterMetrics adds the detector's counters to r.
func (d *Detector) RegisterMetrics(r *metrics.Registry) {
	r.CounterFunc("sluice_alerts_seen_total", "Utilization threshold crossings this node saw on its counters.", d.seen.Load)
	r.CounterFunc("sluice_alerts_sent_total", "Alerts this node wrote to the alerts topic.", d.sent.Load)
	r.CounterFunc("sluice_alerts_dropped_total", "Alerts dropped because the queue to Kafka was full.", d.dropped.Load)
	r.CounterFunc("sluice_alerts_produce_errors_total", "Failed attempts to write alerts to the alerts topic (retried).", d.failed.Load)
}

// ObserveReports checks the reports of a limiter decision that counted
// usage (authrep admitted, or a report): each report's Before and Current.
func (d *Detector) ObserveReports(svc *catalog.Service, app *catalog.App, reports []limiter.Report) {
	th := svc.AlertThresholds
	if len(th) == 0 {
		return
	}
	for i := range reports {
		r := &reports[i]
		if r.Current <= r.Before || r.Limit.Period.Unit == limiter.Sliding {
			continue
		}
		if m, ok := Mark(r.Limit.Max, th[0]); !ok || m > r.Current {
			continue // below the lowest threshold: the common case
		}
		d.observe(svc, app, r.Limit, r.Start, r.Before, r.Current)
	}
}

// ObserveChanges checks the counters limiter.RecordChanges moved; limits is
// the plan the changes index.
func (d *Detector) ObserveChanges(svc *catalog.Service, app *catalog.App, limits []limiter.Limit, changes []limiter.Change) {
	for i := range changes {
		c := &changes[i]
		if c.After <= c.Before || c.Limit >= len(limits) {
			continue
		}
		d.observe(svc, app, limits[c.Limit], c.Start, c.Before, c.After)
	}
}

func (d *Detector) observe(svc *catalog.Service, app *catalog.App, lim limiter.Limit, start, before, after int64) {
	th := svc.AlertThresholds
	lo, hi := Crossed(th, lim.Max, before, after)
	for _, pct := range th[lo:hi] {
		d.seen.Add(1)
		select {
		case d.q <- pending{svc: svc, app: app, lim: lim, start: start, value: after, pct: pct, at: d.o.Clock().UnixMilli()}:
		default:
			d.dropped.Add(1)
		}
	}
}

// Close stops the detector after trying, for up to a few seconds, to write
// the alerts still queued.
func (d *Detector) Close() {
	d.cancel()
	<-d.done
	d.cl.Close()
}

func (d *Detector) run(ctx context.Context) {
	defer close(d.done)
	batch := make([]*kgo.Record, 0, 256)
	for {
		var p pending
		select {
		case <-ctx.Done():
			d.drain()
			return
		case p = <-d.q:
		}
		batch = append(batch[:0], d.record(&p))
		for len(batch) < cap(batch) {
			select {
			case p = <-d.q:
				batch = append(batch, d.record(&p))
				continue
			default:
			}
			break
		}
		d.produce(ctx, batch)
	}
}

// drain writes what is queued, giving up after 5 seconds.
func (d *Detector) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var batch []*kgo.Record
	for {
		select {
		case p := <-d.q:
			batch = append(batch, d.record(&p))
			continue
		default:
		}
		break
	}
	if len(batch) > 0 {
		d.produce(ctx, batch)
	}
}

// produce writes batch, retrying with backoff until it is written or ctx ends.
func (d *Detector) produce(ctx context.Context, batch []*kgo.Record) {
	backoff := 100 * time.Millisecond
	for {
		err := d.cl.ProduceSync(ctx, batch...).FirstErr()
		if err == nil {
			d.sent.Add(uint64(len(batch)))
			return
		}
		d.failed.Add(1)
		if ctx.Err() != nil {
			d.o.Logger.Warn("alerts: unsent at shutdown", "alerts", len(batch), "err", err)
			return
		}
		d.o.Logger.Warn("alerts: write to the alerts topic failed; retrying", "topic", d.o.Topic, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		for _, r := range batch {
			r.Partition, r.Offset = 0, 0
		}
	}
}

// alertOf builds the alert of a crossing.
func alertOf(p *pending, node string) Alert {
	period := p.lim.Period.String()
	svc := p.svc
	a := Alert{
		TenantID:    svc.Tenant.ID,
		ServiceID:   svc.ID,
		AppID:       p.app.ID,
		Metric:      svc.MetricName(p.lim.Metric),
		Period:      period,
		WindowStart: time.Unix(p.start, 0).UTC(),
		Threshold:   p.pct,
		Value:       p.value,
		Max:         p.lim.Max,
		Time:        time.UnixMilli(p.at).UTC(),
		Node:        node,
	}
	if p.lim.Period.Unit != limiter.Eternity {
		_, end := limiter.CalendarBounds(p.lim.Period.Unit, p.start)
		a.WindowEnd = time.Unix(end, 0).UTC()
	}
	a.ID = KeyOf(a.TenantID, a.ServiceID, a.AppID, a.Metric, a.Period, p.start, p.pct)
	return a
}

func (d *Detector) record(p *pending) *kgo.Record {
	a := alertOf(p, d.o.Node)
	v, _ := json.Marshal(&a) // plain strings, numbers and times: cannot fail
	return &kgo.Record{Key: []byte(a.ID), Value: v}
}
