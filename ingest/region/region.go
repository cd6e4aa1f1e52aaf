package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/restore"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// Peer is another region: its name and its Kafka cluster's seed brokers.
type Peer struct {
	Name    string
	Brokers []string
}

// String returns the flag spelling of p, NAME=BROKER,BROKER.
func (p Peer) String() string { return p.Name + "=" + strings.Join(p.Brokers, ",") }

// MaxPeers bounds the peer regions one region tails.
const MaxPeers = 64

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// CheckName reports whether s is a valid region name: 1 to 64 letters,
// digits, '.', '_' or '-' (it names Kafka groups and metric labels).
func CheckName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("invalid region name %q: use 1-64 letters, digits, '.', '_' or '-'", s)
	}
	return nil
}

// ParsePeer parses NAME=HOST:PORT[,HOST:PORT...].
func ParsePeer(s string) (Peer, error) {
	name, brokers, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Peer{}, fmt.Errorf("peer region %q: want NAME=HOST:PORT[,HOST:PORT...]", s)
	}
	if err := CheckName(name); err != nil {
		return Peer{}, fmt.Errorf("peer region %q: %w", s, err)
	}
	p := Peer{Name: name}
	for _, b := range strings.Split(brokers, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			return Peer{}, fmt.Errorf("peer region %q: broker %q: want HOST:PORT", name, b)
		}
		p.Brokers = append(p.Brokers, b)
	}
	if len(p.Brokers) == 0 {
		return Peer{}, fmt.Errorf("peer region %q names no broker", name)
	}
	return p, nil
}

// ParsePeers parses a list of peers separated by spaces or semicolons (the
// SLUICE_PEER_REGIONS spelling: "eu=k1:9092,k2:9092 us=k3:9092") and checks
// that no name repeats and none is self.
func ParsePeers(specs []string, self string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{self: true}
	for _, spec := range specs {
		for _, s := range strings.FieldsFunc(spec, func(r rune) bool { return r == ' ' || r == ';' || r == '\n' || r == '\t' }) {
			p, err := ParsePeer(s)
			if err != nil {
				return nil, err
			}
			if seen[p.Name] {
				if p.Name == self {
					return nil, fmt.Errorf("peer region %q is this region", p.Name)
				}
				return nil, fmt.Errorf("peer region %q named twice", p.Name)
			}
			seen[p.Name] = true
			out = append(out, p)
		}
	}
	if len(out) > MaxPeers {
		return nil, fmt.Errorf("%d peer regions: at most %d", len(out), MaxPeers)
	}
	return out, nil
}

// DefaultRestoreSpan bounds how far back a starting node reads the peers'
// usage: the longest open window of a global limit, at most this.
const DefaultRestoreSpan = 24 * time.Hour

// ReplayFrom is where a starting node begins reading the peers' usage: the
// start of the oldest window open at now among the global limits of every
// plan in snap, but not before now-span (span <= 0: DefaultRestoreSpan).
func ReplayFrom(snap *catalog.Snapshot, now time.Time, span time.Duration) time.Time {
	if span <= 0 {
		span = DefaultRestoreSpan
	}
	floor := now.Add(-span)
	from := now
	if snap != nil {
		for _, svc := range snap.Services {
			for _, p := range svc.Plans() {
				for _, l := range p.Global {
					start, _ := limiter.WindowBounds(l.Period, now)
					if t := time.Unix(start, 0); t.Before(from) {
						from = t
					}
				}
			}
		}
	}
	if from.Before(floor) {
		return floor
	}
	return from
}

// Options configure the tailing of the peer regions.
type Options struct {
	// Region is this region's name; an event from it met in a peer's log
	// (a loop in the topology) is skipped, never counted twice. Required.
	Region string
	// Peers are the regions to tail.
	Peers []Peer
	// Topic is the usage topic's name, the same in every region. Required.
	Topic string
	// From is the time each peer's log is read from: events the peers
	// received from then on are applied (ReplayFrom). Required.
	From time.Time
	// Limiter receives the peers' usage, counted toward global limits only.
	// Required.
	Limiter *limiter.Limiter
	// Catalog gives the configuration in force. Required.
	Catalog interface{ Load() *catalog.Snapshot }
	// Metrics receives the per-peer metrics. Default: a private registry.
	Metrics *metrics.Registry
	// Logger receives connection changes and errors. Default slog.Default().
	Logger *slog.Logger
	// KafkaOpts are appended to every peer client's options (TLS, SASL,
	// dialers).
	KafkaOpts []kgo.Opt
	// Shares, when set, learns the peers' usage of strict limits.
	Shares *Shares
	// Probe is how often a peer's end offsets are listed, which measures
	// its reachability and how many records this region is behind.
	// Default 1s.
	Probe time.Duration
}

// Tails is this region's tailing of every peer region's usage.
type Tails struct {
	peers  []*tail
	stop   chan struct{}
	swept  chan struct{}
	closed sync.Once
}

// Start starts tailing every peer; Close stops it. A peer that cannot be
// reached is retried until it can: Start never waits for one.
func Start(o Options) (*Tails, error) {
	if o.Region == "" || o.Topic == "" || o.Limiter == nil || o.Catalog == nil || o.From.IsZero() {
		return nil, errors.New("region: Region, Topic, From, Limiter and Catalog are required")
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Probe <= 0 {
		o.Probe = time.Second
	}
	ts := &Tails{stop: make(chan struct{}), swept: make(chan struct{})}
	for _, p := range o.Peers {
		t := newTail(o, p)
		t.register(o.Metrics)
		ts.peers = append(ts.peers, t)
		go t.run()
	}
	go ts.sweep(o.Shares)
	return ts, nil
}

// sweep drops the strict limits' windows that have ended, every minute.
func (ts *Tails) sweep(sh *Shares) {
	defer close(ts.swept)
	tk := time.NewTicker(time.Minute)
	defer tk.Stop()
	for {
		select {
		case <-ts.stop:
			return
		case now := <-tk.C:
			if sh != nil {
				sh.Sweep(now)
			}
		}
	}
}

// WaitCaughtUp waits until every peer has been applied up to the end offsets
// of its log listed when the tail first reached it, or ctx is done; it
// returns the names of the peers not caught up by then. A peer unreachable
// throughout is not caught up.
func (ts *Tails) WaitCaughtUp(ctx context.Context) (behind []string) {
	for _, t := range ts.peers {
		select {
		case <-t.caughtUp:
		case <-ctx.Done():
		}
	}
	for _, t := range ts.peers {
		select {
		case <-t.caughtUp:
		default:
			behind = append(behind, t.peer.Name)
		}
	}
	return behind
}

// Status is one peer's state as this region sees it.
type Status struct {
	Name string
	// Up: its end offsets were listed within the last three probes.
	Up bool
	// CaughtUp: its log has been applied up to where it ended when first
	// reached.
	CaughtUp bool
	// Behind is the records of its log not yet applied here.
	Behind int64
	// Lag is the receive-to-apply time of its last applied event; while
	// records are behind, at least the time since that event was received;
	// while the peer is unreachable, at least the time since it answered.
	Lag time.Duration
	// MaxLag is the longest receive-to-apply time of its events since start.
	MaxLag time.Duration
	// Events is the events of it applied here.
	Events uint64
}

// Status returns every peer's state, in the order of Options.Peers.
func (ts *Tails) Status() []Status {
	out := make([]Status, len(ts.peers))
	for i, t := range ts.peers {
		out[i] = t.status()
	}
	return out
}

// AppendStatus appends the peers' state to a JSON object under
// construction: `"peers":[{"region":"west","up":true,"caught_up":true,
// "lag_ms":12,"behind":0}]`. Region names are checked at startup (letters,
// digits, '.', '_', '-'), so they need no escaping.
func (ts *Tails) AppendStatus(dst []byte) []byte {
	dst = append(dst, `"peers":[`...)
	for i, st := range ts.Status() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"region":"`...)
		dst = append(dst, st.Name...)
		dst = append(dst, `","up":`...)
		dst = strconv.AppendBool(dst, st.Up)
		dst = append(dst, `,"caught_up":`...)
		dst = strconv.AppendBool(dst, st.CaughtUp)
		dst = append(dst, `,"lag_ms":`...)
		dst = strconv.AppendInt(dst, st.Lag.Milliseconds(), 10)
		dst = append(dst, `,"behind":`...)
		dst = strconv.AppendInt(dst, st.Behind, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// Close stops tailing. Calls after the first do nothing.
func (ts *Tails) Close() {
	ts.closed.Do(func() {
		close(ts.stop)
		<-ts.swept
		for _, t := range ts.peers {
			t.close()
		}
	})
}

// tail reads one peer region's usage topic.
type tail struct {
	o    Options
	peer Peer
	log  *slog.Logger

	mu      sync.Mutex
	applied map[int32]int64 // next offset to apply, per partition
	ends    map[int32]int64 // the peer's end offsets at the last probe
	target  map[int32]int64 // end offsets when first reached: catch-up target

	lastOK       atomic.Int64 // unix ns of the last successful probe
	lastReceived atomic.Int64 // receive time (unix ms) of the last applied event
	lagMs        atomic.Int64 // receive-to-apply time of the last applied event
	maxLagMs     atomic.Int64
	events       atomic.Uint64
	skipped      atomic.Uint64
	refused      atomic.Uint64
	loops        atomic.Uint64 // this region's own events met in the peer's log

	admCl *kgo.Client // the listings' and probes' client

	caughtUp chan struct{}
	caught   sync.Once
	done     chan struct{}
	cancel   context.CancelFunc
	ctx      context.Context
}

func newTail(o Options, p Peer) *tail {
	ctx, cancel := context.WithCancel(context.Background())
	return &tail{
		o: o, peer: p, log: o.Logger.With("peer_region", p.Name),
		applied: make(map[int32]int64), ends: make(map[int32]int64),
		caughtUp: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
}

func (t *tail) close() {
	t.cancel()
	<-t.done
}

// run finds where to start in the peer's log (retrying while the peer is
// unreachable), then consumes it from there, applying each record once, in
// order per partition: the client resumes a partition after the last record
// it returned whenever it reconnects, so a broken connection never replays.
func (t *tail) run() {
	defer close(t.done)
	starts, adm, cl := t.connect()
	if starts == nil {
		return
	}
	defer cl.Close()
	defer t.admCl.Close()
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		t.prober(adm)
	}()
	defer func() { <-probeDone }()
	ap := restore.Applier{Limiter: t.o.Limiter, Peer: true}
	var lastErrLog time.Time
	for {
		fs := cl.PollFetches(t.ctx)
		if t.ctx.Err() != nil {
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			// A peer cut off fails every fetch: say so every 10 s, not
			// every fetch (the prober reports the outage itself).
			if time.Since(lastErrLog) >= 10*time.Second {
				lastErrLog = time.Now()
				t.log.Warn("region: peer fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		snap := t.o.Catalog.Load()
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) == 0 {
				return
			}
			for _, r := range ftp.Records {
				t.apply(&ap, snap, r)
			}
			last := ftp.Records[len(ftp.Records)-1].Offset + 1
			t.mu.Lock()
			t.applied[ftp.Partition] = last
			if t.ends[ftp.Partition] < last {
				t.ends[ftp.Partition] = last
			}
			t.mu.Unlock()
		})
		t.checkCaughtUp()
	}
}

// connect lists where the replay starts and where the peer's log ends now,
// retrying every probe interval until it can, and returns the client of
// those listings (kept for the probes) and the consuming client; nils if
// the tail was closed first.
func (t *tail) connect() (map[int32]kgo.Offset, *kadm.Client, *kgo.Client) {
	opts := func(extra ...kgo.Opt) []kgo.Opt {
		return append(append([]kgo.Opt{
			kgo.SeedBrokers(t.peer.Brokers...),
			kgo.RetryTimeout(t.o.Probe),
		}, extra...), t.o.KafkaOpts...)
	}
	for attempt := 0; ; attempt++ {
		acl, err := kgo.NewClient(opts()...)
		if err != nil {
			// Only a bad option fails here: retrying cannot help.
			t.log.Error("region: peer client", "err", err)
			return nil, nil, nil
		}
		adm := kadm.NewClient(acl)
		starts, err := t.list(adm)
		if err == nil {
			cl, err := kgo.NewClient(opts(
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.o.Topic: starts}),
				// Lag across regions is the point: fetch as soon as
				// anything is there.
				kgo.FetchMaxWait(100*time.Millisecond),
			)...)
			if err != nil {
				acl.Close()
				t.log.Error("region: peer consumer", "err", err)
				return nil, nil, nil
			}
			t.admCl = acl
			t.log.Info("region: tailing peer region", "brokers", strings.Join(t.peer.Brokers, ","), "partitions", len(starts), "from", t.o.From.UTC().Format(time.RFC3339))
			t.checkCaughtUp() // an empty log is read to its end already
			return starts, adm, cl
		}
		acl.Close()
		if attempt == 0 || attempt%30 == 0 {
			t.log.Warn("region: peer region unreachable; retrying", "brokers", strings.Join(t.peer.Brokers, ","), "err", err)
		}
		select {
		case <-t.ctx.Done():
			return nil, nil, nil
		case <-time.After(t.o.Probe):
		}
	}
}

// list returns, per partition of the peer's usage topic, the first offset
// received at or after From, and records the end offsets as the catch-up
// target.
func (t *tail) list(adm *kadm.Client) (map[int32]kgo.Offset, error) {
	ctx, cancel := context.WithTimeout(t.ctx, 5*t.o.Probe)
	defer cancel()
	from, err := adm.ListOffsetsAfterMilli(ctx, t.o.From.UnixMilli(), t.o.Topic)
	if err == nil {
		err = from.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("offsets after %s: %w", t.o.From.UTC().Format(time.RFC3339), err)
	}
	ends, err := adm.ListEndOffsets(ctx, t.o.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	starts := make(map[int32]kgo.Offset)
	t.mu.Lock()
	t.target = make(map[int32]int64)
	from.Each(func(o kadm.ListedOffset) {
		starts[o.Partition] = kgo.NewOffset().At(o.Offset)
		t.applied[o.Partition] = o.Offset
	})
	ends.Each(func(o kadm.ListedOffset) {
		t.ends[o.Partition] = o.Offset
		t.target[o.Partition] = o.Offset
	})
	t.mu.Unlock()
	if len(starts) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", t.o.Topic)
	}
	t.lastOK.Store(time.Now().UnixNano())
	return starts, nil
}

// prober lists the peer's end offsets every probe interval: reachability
// and the records this region is behind, even when nothing arrives.
func (t *tail) prober(adm *kadm.Client) {
	tk := time.NewTicker(t.o.Probe)
	defer tk.Stop()
	wasUp := true
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tk.C:
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.o.Probe)
		ends, err := adm.ListEndOffsets(ctx, t.o.Topic)
		cancel()
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			if wasUp && !t.up() {
				wasUp = false
				t.log.Warn("region: peer region unreachable; answering from what is applied, catching up when it returns", "err", err)
			}
			continue
		}
		t.mu.Lock()
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > t.ends[o.Partition] {
				t.ends[o.Partition] = o.Offset
			}
		})
		t.mu.Unlock()
		t.lastOK.Store(time.Now().UnixNano())
		if !wasUp {
			wasUp = true
			t.log.Info("region: peer region reachable again; catching up", "behind", t.behind())
		}
	}
}

// up reports whether a probe succeeded within the last three intervals.
func (t *tail) up() bool {
	last := t.lastOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) <= 3*t.o.Probe
}

func (t *tail) behind() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for p, end := range t.ends {
		n += max(end-t.applied[p], 0)
	}
	return n
}

func (t *tail) checkCaughtUp() {
	t.mu.Lock()
	done := t.target != nil
	for p, end := range t.target {
		if t.applied[p] < end {
			done = false
			break
		}
	}
	t.mu.Unlock()
	if done {
		t.caught.Do(func() {
			close(t.caughtUp)
			t.log.Info("region: caught up with peer region")
		})
	}
}

func (t *tail) apply(ap *restore.Applier, snap *catalog.Snapshot, r *kgo.Record) {
	ev, err := ap.Decode(r.Value)
	if err != nil {
		t.skipped.Add(1)
		return
	}
	if ev.Region == t.o.Region {
		t.loops.Add(1)
		return
	}
	now := time.Now().UnixMilli()
	lag := max(now-ev.Received, 0)
	t.lagMs.Store(lag)
	t.lastReceived.Store(ev.Received)
	if lag > t.maxLagMs.Load() {
		t.maxLagMs.Store(lag) // one writer: the tail's goroutine
	}
	switch applied, err := ap.Apply(snap, ev, nil); {
	case err != nil:
		t.refused.Add(1)
	case applied:
		t.events.Add(1)
		if sh := t.o.Shares; sh != nil {
			if app := ap.App(); app != nil {
				sh.addPeer(app, ev)
			}
		}
	default:
		t.skipped.Add(1)
	}
}

// lag is the receive-to-apply time of the last applied event; while
// records are waiting, the time since that event was received (a lower
// bound of the oldest waiting record's age); and while the peer is
// unreachable, at least the time since it last answered: whatever it
// admits meanwhile arrives that late.
func (t *tail) lag() time.Duration {
	lag := time.Duration(t.lagMs.Load()) * time.Millisecond
	if t.behind() > 0 {
		if last := t.lastReceived.Load(); last > 0 {
			lag = max(lag, time.Duration(max(time.Now().UnixMilli()-last, 0))*time.Millisecond)
		}
	}
	if last := t.lastOK.Load(); last != 0 && !t.up() {
		lag = max(lag, time.Since(time.Unix(0, last)))
	}
	return lag
}

func (t *tail) status() Status {
	var caught bool
	select {
	case <-t.caughtUp:
		caught = true
	default:
	}
	return Status{Name: t.peer.Name, Up: t.up(), CaughtUp: caught, Behind: t.behind(), Lag: t.lag(),
		MaxLag: time.Duration(t.maxLagMs.Load()) * time.Millisecond, Events: t.events.Load()}
}

func (t *tail) register(r *metrics.Registry) {
	l := []string{"region", t.peer.Name}
	r.GaugeFunc("sluice_region_peer_up", "1 when the peer region's Kafka answered within the last three probes (a second apart), else 0.", func() float64 {
		if t.up() {
			return 1
		}
		return 0
	}, l...)
	r.GaugeFunc("sluice_region_peer_lag_seconds", "Replication lag of the peer region's usage: receive-to-apply time of its last applied event; at least the time since then while records wait, and the time since the peer last answered while it is unreachable.", func() float64 { return t.lag().Seconds() }, l...)
	r.GaugeFunc("sluice_region_peer_lag_max_seconds", "Longest receive-to-apply time of a peer region's event since start: the lag behind the overshoot bound of global limits.", func() float64 {
		return float64(t.maxLagMs.Load()) / 1000
	}, l...)
	r.GaugeFunc("sluice_region_peer_lag_records", "Records of the peer region's usage topic not yet applied here (its end offsets at the last probe).", func() float64 { return float64(t.behind()) }, l...)
	r.GaugeFunc("sluice_region_peer_caught_up", "1 once the peer region's log has been applied up to where it ended when first reached.", func() float64 {
		select {
		case <-t.caughtUp:
			return 1
		default:
			return 0
		}
	}, l...)
	r.CounterFunc("sluice_region_peer_events_total", "The peer region's usage events applied to this node's global limits.", t.events.Load, l...)
	r.CounterFunc("sluice_region_peer_skipped_total", "The peer region's events applied to nothing (denials, unknown applications, undecodable).", t.skipped.Load, l...)
	r.CounterFunc("sluice_region_peer_refused_total", "The peer region's events the limiter refused: their usage would pass the largest int64.", t.refused.Load, l...)
	r.CounterFunc("sluice_region_peer_loop_events_total", "This region's own events met in the peer's log (a replication loop): skipped.", t.loops.Load, l...)
}
