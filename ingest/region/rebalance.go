package region

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// SharesTopic is the topic of a region's share records, named after its
// usage topic.
func SharesTopic(usageTopic string) string { return usageTopic + ".shares" }

// DefaultRebalance is how often the owner of an application's strict
// windows moves unused share to the regions that ask for more.
const DefaultRebalance = time.Second

// maxShareRecord bounds a share record read from a log.
const maxShareRecord = 4 << 10

// shareRecord is one record of a region's shares topic (JSON): a grant of
// units of one window to another region, or the region's status of a
// window (its free share and its demand, calls per rebalance interval).
type shareRecord struct {
	Kind    string `json:"kind"` // "grant" or "status"
	From    string `json:"from"`
	To      string `json:"to,omitempty"`
	Proc    string `json:"proc"` // the process that wrote it
	Tenant  string `json:"tenant"`
	Service string `json:"service"`
	App     string `json:"app"`
	Metric  string `json:"metric"`
	Period  string `json:"period"`
	Window  int64  `json:"window"` // the window's start, unix seconds
	Units   int64  `json:"units,omitempty"`
	Free    int64  `json:"free,omitempty"`
	Demand  int64  `json:"demand,omitempty"`
}

// RebalanceOptions configure the rebalancing of strict shares.
type RebalanceOptions struct {
	// Region is this region's name; Peers the others. Required.
	Region string
	Peers  []Peer
	// Brokers are this region's Kafka brokers. Required.
	Brokers []string
	// Topic is the shares topic (SharesTopic), the same in every region.
	// Required.
	Topic string
	// From is the time the shares logs are read from (ReplayFrom).
	// Required.
	From time.Time
	// Limiter holds the counters. Required.
	Limiter *limiter.Limiter
	// Catalog gives the configuration in force. Required.
	Catalog interface{ Load() *catalog.Snapshot }
	// Owns reports whether this node decides app's calls: only the
	// decider of an application moves its shares. Required.
	Owns func(app *catalog.App) bool
	// Interval: DefaultRebalance.
	Interval time.Duration
	// Metrics and Logger: defaults a private registry and slog.Default().
	Metrics *metrics.Registry
	Logger  *slog.Logger
	// KafkaOpts are appended to every client's options.
	KafkaOpts []kgo.Opt
}

// Rebalancer moves strict shares between regions through their shares
// topics (see the package doc).
type Rebalancer struct {
	s    *Shares
	o    RebalanceOptions
	proc string
	prod *kgo.Client

	mu     sync.Mutex
	status map[shareKey]map[string]peerStatus // the peers' latest status per window
	sent   map[shareKey]map[string][]sentGrant

	granted, received atomic.Uint64
	caughtUp          chan struct{}
	ctx               context.Context
	cancel            context.CancelFunc
	wg                sync.WaitGroup
}

type peerStatus struct {
	free, demand int64
	at           time.Time
}

type sentGrant struct {
	units int64
	at    time.Time
}

// StartRebalance reads every region's shares topic into s and starts moving
// unused share to where the demand is. WaitCaughtUp tells when this region's
// own grants have been read; Close stops it.
func (s *Shares) StartRebalance(o RebalanceOptions) (*Rebalancer, error) {
	if o.Region == "" || len(o.Brokers) == 0 || o.Topic == "" || o.From.IsZero() || o.Limiter == nil || o.Catalog == nil || o.Owns == nil {
		return nil, errors.New("region: rebalance needs Region, Brokers, Topic, From, Limiter, Catalog and Owns")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultRebalance
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("region: process id: %w", err)
	}
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.DefaultProduceTopic(o.Topic)}, o.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("region: shares producer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rb := &Rebalancer{s: s, o: o, proc: hex.EncodeToString(id[:]), prod: prod,
		status: map[shareKey]map[string]peerStatus{}, sent: map[shareKey]map[string][]sentGrant{},
		caughtUp: make(chan struct{}), ctx: ctx, cancel: cancel}
	o.Metrics.CounterFunc("sluice_region_share_granted_units_total", "Units of strict limits' shares this node granted to peer regions.", rb.granted.Load)
	o.Metrics.CounterFunc("sluice_region_share_received_units_total", "Units of strict limits' shares peer regions granted this region.", rb.received.Load)
	rb.wg.Add(2 + len(o.Peers))
	go rb.read(o.Region, o.Brokers, true)
	for _, p := range o.Peers {
		go rb.read(p.Name, p.Brokers, false)
	}
	go rb.loop()
	return rb, nil
}

// WaitCaughtUp waits until this region's shares topic has been read to
// where it ended at start (the grants this region made before a restart), or
// ctx is done, and reports which.
func (rb *Rebalancer) WaitCaughtUp(ctx context.Context) bool {
	select {
	case <-rb.caughtUp:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops rebalancing.
func (rb *Rebalancer) Close() {
	rb.cancel()
	rb.wg.Wait()
	rb.prod.Close()
}

// read consumes one region's shares topic from From, retrying while it
// cannot be reached.
func (rb *Rebalancer) read(name string, brokers []string, self bool) {
	defer rb.wg.Done()
	log := rb.o.Logger.With("shares_of", name)
	var cl *kgo.Client
	var target map[int32]int64
	for attempt := 0; cl == nil; attempt++ {
		var err error
		cl, target, err = rb.connect(brokers)
		if err != nil {
			if attempt%30 == 0 {
				log.Warn("region: shares topic unreachable; retrying", "err", err)
			}
			select {
			case <-rb.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	defer cl.Close()
	applied := map[int32]int64{}
	caught := func() bool {
		for p, end := range target {
			if applied[p] < end {
				return false
			}
		}
		return true
	}
	if self && caught() {
		close(rb.caughtUp)
		self = false
	}
	for {
		fs := cl.PollFetches(rb.ctx)
		if rb.ctx.Err() != nil {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			rb.apply(r.Value)
			applied[r.Partition] = r.Offset + 1
		})
		if self && caught() {
			close(rb.caughtUp)
			self = false
		}
	}
}

// connect lists a shares topic's offsets at From and its end, and returns a
// client consuming it from there.
func (rb *Rebalancer) connect(brokers []string) (*kgo.Client, map[int32]int64, error) {
	acl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RetryTimeout(time.Second)}, rb.o.KafkaOpts...)...)
	if err != nil {
		return nil, nil, err
	}
	defer acl.Close()
	adm := kadm.NewClient(acl)
	ctx, cancel := context.WithTimeout(rb.ctx, 5*time.Second)
	defer cancel()
	from, err := adm.ListOffsetsAfterMilli(ctx, rb.o.From.UnixMilli(), rb.o.Topic)
	if err == nil {
		err = from.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, rb.o.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	starts := map[int32]kgo.Offset{}
	from.Each(func(o kadm.ListedOffset) { starts[o.Partition] = kgo.NewOffset().At(o.Offset) })
	target := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if st, ok := from.Lookup(o.Topic, o.Partition); !ok || st.Offset < o.Offset {
			target[o.Partition] = o.Offset
		}
	})
	if len(starts) == 0 {
		return nil, nil, fmt.Errorf("topic %s has no partitions", rb.o.Topic)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{rb.o.Topic: starts}),
		kgo.FetchMaxWait(100 * time.Millisecond)}, rb.o.KafkaOpts...)...)
	return cl, target, err
}

// lookup finds the window a record names: a strict limit of a known
// application's plan.
func (rb *Rebalancer) lookup(rec *shareRecord) (shareKey, *window) {
	snap := rb.o.Catalog.Load()
	if snap == nil {
		return shareKey{}, nil
	}
	svc := snap.Services[rec.Service]
	if svc == nil || svc.Tenant == nil || svc.Tenant.ID != rec.Tenant {
		return shareKey{}, nil
	}
	app := svc.App(rec.App)
	m, ok := svc.MetricIndex[rec.Metric]
	per, err := limiter.ParsePeriod(rec.Period)
	if app == nil || !ok || err != nil {
		return shareKey{}, nil
	}
	plan := app.Plan()
	if plan == nil {
		return shareKey{}, nil
	}
	for _, i := range plan.Strict {
		if l := plan.Limits[i]; l.Metric == m && l.Period == per {
			k := shareKey{app: app.Key, metric: m, unit: per.Unit, start: rec.Window}
			return k, rb.s.window(k, app, l)
		}
	}
	return shareKey{}, nil
}

// apply counts one share record.
func (rb *Rebalancer) apply(b []byte) {
	if len(b) > maxShareRecord {
		return
	}
	var rec shareRecord
	if json.Unmarshal(b, &rec) != nil || rec.Units < 0 {
		return
	}
	self := rb.o.Region
	switch {
	case rec.Kind == "grant" && rec.From == self && rec.Proc != rb.proc:
		// Granted by an earlier process of this region (a restart, or the
		// application's previous owner): already gone from the share.
		if _, w := rb.lookup(&rec); w != nil {
			addSaturating(&w.given, rec.Units)
		}
	case rec.Kind == "grant" && rec.To == self && rb.isPeer(rec.From):
		if _, w := rb.lookup(&rec); w != nil {
			addSaturating(&w.recv, rec.Units)
			rb.received.Add(uint64(rec.Units))
		}
	case rec.Kind == "status" && rb.isPeer(rec.From):
		if k, w := rb.lookup(&rec); w != nil {
			rb.mu.Lock()
			m := rb.status[k]
			if m == nil {
				m = map[string]peerStatus{}
				rb.status[k] = m
			}
			m[rec.From] = peerStatus{free: max(rec.Free, 0), demand: max(rec.Demand, 0), at: time.Now()}
			rb.mu.Unlock()
		}
	}
}

// isPeer reports whether name is one of the configured peer regions: a
// record naming any other region is ignored.
func (rb *Rebalancer) isPeer(name string) bool {
	for _, p := range rb.o.Peers {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (rb *Rebalancer) loop() {
	defer rb.wg.Done()
	tk := time.NewTicker(rb.o.Interval)
	defer tk.Stop()
	for {
		select {
		case <-rb.ctx.Done():
			return
		case now := <-tk.C:
			rb.rebalance(now)
		}
	}
}

// current reads w's counter (every region's usage of the window) from the
// limiter.
func (rb *Rebalancer) current(w *window) int64 {
	var d limiter.Decision
	rb.o.Limiter.Do(&limiter.Request{App: w.app.Key, Limits: []limiter.Limit{w.limit}, Parents: w.app.Service.Parents, Mode: limiter.ModeAuthorize}, &d)
	if len(d.Reports) == 0 {
		return 0
	}
	return d.Reports[0].Current
}

// own is this region's own usage of w: the counter less the peers' usage.
// The peers' usage is read first: usage counted meanwhile can only make it
// larger, so a give never takes units this region has used.
func (rb *Rebalancer) own(w *window) int64 {
	peers := w.peers.Load()
	return max(rb.current(w)-peers, 0)
}

type give struct {
	k     shareKey
	w     *window
	to    string
	units int64
}

// rebalance publishes this region's status of every open window it decides
// that anyone wants, and grants its surplus, by demand, to the regions
// short of theirs.
func (rb *Rebalancer) rebalance(now time.Time) {
	type open struct {
		k shareKey
		w *window
	}
	var ws []open
	for i := range rb.s.shards {
		sh := &rb.s.shards[i]
		sh.mu.RLock()
		for k, w := range sh.m {
			if start, _ := limiter.WindowBounds(w.limit.Period, now); start == k.start {
				ws = append(ws, open{k, w})
			}
		}
		sh.mu.RUnlock()
	}
	var gives []give
	var statuses []shareRecord
	fresh := 3 * rb.o.Interval
	rb.mu.Lock()
	for _, o := range ws {
		d := o.w.demand.Swap(0)
		if !rb.o.Owns(o.w.app) {
			continue
		}
		free := max(rb.s.share(o.w)-rb.own(o.w), 0)
		// Peers heard from lately, their free share counting what this
		// region granted them since their status.
		peerFree, peerDemand := map[string]int64{}, map[string]int64{}
		F, D := float64(free), float64(d)
		for name, st := range rb.status[o.k] {
			if now.Sub(st.at) > fresh {
				continue
			}
			f := st.free
			for _, g := range rb.sent[o.k][name] {
				if g.at.After(st.at) {
					f += g.units
				}
			}
			peerFree[name], peerDemand[name] = f, st.demand
			F += float64(f)
			D += float64(st.demand)
		}
		if d > 0 || D > float64(d) {
			statuses = append(statuses, rb.record("status", "", o.w, o.k, 0, free, d))
		}
		if D == 0 || free == 0 {
			continue
		}
		surplus := float64(free) - F*float64(d)/D
		if surplus < 1 {
			continue
		}
		deficit := map[string]float64{}
		total := 0.0
		for name := range peerFree {
			if def := F*float64(peerDemand[name])/D - float64(peerFree[name]); def > 0 {
				deficit[name] = def
				total += def
			}
		}
		for name, def := range deficit {
			if n := int64(math.Floor(surplus * def / total)); n > 0 {
				gives = append(gives, give{o.k, o.w, name, n})
			}
		}
	}
	rb.mu.Unlock()
	gives = rb.take(gives)
	var recs []shareRecord
	for _, g := range gives {
		recs = append(recs, rb.record("grant", g.to, g.w, g.k, g.units, 0, 0))
	}
	rb.publish(append(recs, statuses...))
	rb.mu.Lock()
	for _, g := range gives {
		m := rb.sent[g.k]
		if m == nil {
			m = map[string][]sentGrant{}
			rb.sent[g.k] = m
		}
		kept := m[g.to][:0]
		for _, s := range m[g.to] {
			if now.Sub(s.at) <= fresh {
				kept = append(kept, s)
			}
		}
		m[g.to] = append(kept, sentGrant{g.units, now})
		rb.granted.Add(uint64(g.units))
	}
	for k := range rb.status {
		if _, end := limiter.CalendarBounds(k.unit, k.start); k.unit != limiter.Eternity && end <= now.Unix() {
			delete(rb.status, k)
			delete(rb.sent, k)
		}
	}
	rb.mu.Unlock()
}

// take removes the units of gives from this region's shares, safely against
// the decisions under way: it lowers the shares, waits for every decision
// that may have read the higher ones, then gives back whatever those
// decisions used. It returns the gives that remain.
func (rb *Rebalancer) take(gives []give) []give {
	if len(gives) == 0 {
		return nil
	}
	for _, g := range gives {
		g.w.given.Add(g.units)
	}
	old := (rb.s.epoch.Add(1) - 1) & 1
	deadline := time.Now().Add(time.Second)
	for rb.s.inflight[old].Load() > 0 {
		if time.Now().After(deadline) {
			for _, g := range gives {
				g.w.given.Add(-g.units)
			}
			return nil
		}
		time.Sleep(50 * time.Microsecond)
	}
	// A decision that read the higher share may have used some of the
	// units: take those gives back, last first.
	for i := len(gives) - 1; i >= 0; i-- {
		w := gives[i].w
		if over := rb.own(w) - rb.s.share(w); over > 0 {
			back := min(over, gives[i].units)
			w.given.Add(-back)
			gives[i].units -= back
		}
	}
	out := gives[:0]
	for _, g := range gives {
		if g.units > 0 {
			out = append(out, g)
		}
	}
	return out
}

func (rb *Rebalancer) record(kind, to string, w *window, k shareKey, units, free, demand int64) shareRecord {
	return shareRecord{Kind: kind, From: rb.o.Region, To: to, Proc: rb.proc,
		Tenant: w.app.Service.Tenant.ID, Service: w.app.Service.ID, App: w.app.ID,
		Metric: w.app.Service.MetricName(w.limit.Metric), Period: w.limit.Period.String(),
		Window: k.start, Units: units, Free: free, Demand: demand}
}

// publish appends records to this region's shares topic. A grant that
// cannot be written stays taken from this region's share (never given
// twice, possibly not at all: under-admission, never over).
func (rb *Rebalancer) publish(recs []shareRecord) {
	if len(recs) == 0 {
		return
	}
	krs := make([]*kgo.Record, 0, len(recs))
	for i := range recs {
		b, err := json.Marshal(&recs[i])
		if err != nil {
			continue
		}
		krs = append(krs, &kgo.Record{Key: []byte(recs[i].Service + "/" + recs[i].App), Value: b})
	}
	ctx, cancel := context.WithTimeout(rb.ctx, 2*time.Second)
	defer cancel()
	if err := rb.prod.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		rb.o.Logger.Warn("region: share records not written; units granted meanwhile stay unused", "records", len(krs), "err", err,
			"kinds", strings.Join([]string{recs[0].Kind, recs[len(recs)-1].Kind}, ".."))
	}
}
