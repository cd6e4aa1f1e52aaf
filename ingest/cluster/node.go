package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/metrics"
)

// Policy says what a node does with a call whose owner it cannot reach.
type Policy uint8

const (
	// Local decides the call from the node's own projection (counted).
	Local Policy = iota
	// Refuse answers 503 with Retry-After.
	Refuse
)

// ParsePolicy parses "local" or "refuse".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "local":
		return Local, nil
	case "refuse":
		return Refuse, nil
	}
	return 0, fmt.Errorf("owner-unreachable policy %q: want local or refuse", s)
}

// String returns the flag spelling of p.
func (p Policy) String() string {
	if p == Refuse {
		return "refuse"
	}
	return "local"
}

// DefaultHandoffTimeout bounds how long a call waits for a partition without
// a deciding owner, and how long a losing owner waits for its events to reach
// Kafka.
const DefaultHandoffTimeout = 2 * time.Second

// SessionTimeout is the API group's session timeout: how long a killed or
// cut-off node keeps its partitions before the group moves them.
const SessionTimeout = 6 * time.Second

// Options configure a Node.
type Options struct {
	// Brokers are the region's Kafka seed brokers. Required.
	Brokers []string
	// Topic is the usage topic. Required.
	Topic string
	// Region names the group: "sluice-api-<region>". Required.
	Region string
	// Advertise is the HOST:PORT where the other API nodes reach this one.
	// Required.
	Advertise string
	// Partitions is the usage topic's partition count. Required.
	Partitions int
	// Flush returns nil once every event this process appended so far for
	// the partitions is acknowledged by Kafka (the producer's
	// FlushPartitions). Required.
	Flush func(ctx context.Context, partitions []int32) error
	// HandoffTimeout: see DefaultHandoffTimeout.
	HandoffTimeout time.Duration
	// OwnerUnreachable says what to do with a call whose owner cannot be
	// reached. Default Local.
	OwnerUnreachable Policy
	// Metrics receives the cluster metrics. Default: a private registry.
	Metrics *metrics.Registry
	// Logger receives membership changes and errors. Default slog.Default().
	Logger *slog.Logger
	// KafkaOpts are appended to the client options (TLS, SASL, ...).
	KafkaOpts []kgo.Opt
	// ForwardTLS, when not nil, is the client configuration of the calls
	// forwarded to other API nodes: they serve HTTPS on their advertised
	// addresses, and each certificate must be valid for the host of the
	// address its node advertises. Nil: plain HTTP.
	ForwardTLS *tls.Config
}

// Partition states of this node.
const (
	notOwned   int32 = iota
	catchingUp       // assigned: reading the partition to its end before deciding
	owned            // deciding
	revoking         // being given up: draining decisions and events
)

// clientIDPrefix starts the group client id of every API node; the rest is
// its advertised address.
const clientIDPrefix = "sluice-api@"

// Node is one API node's membership in its region's cluster: the partitions
// it owns, the directory of the others' and the forwarding of calls to them.
type Node struct {
	o     Options
	group string
	cl    *kgo.Client // group member
	adm   *kadm.Client
	pr    *Projection
	n     int

	state    []atomic.Int32
	inflight []atomic.Int64
	// orphan marks partitions this node lost without handing them over (its
	// group session expired): until it owns them again, no owner can be
	// known to have caught up on them.
	orphan []atomic.Bool
	// gen counts each partition's assignments and revocations, so that a
	// catch-up finishing after its partition was taken away does not
	// decide for it.
	gen     []atomic.Uint64
	dir     atomic.Pointer[[]string] // owner address per partition, "" none
	dirOK   atomic.Int64             // unix ns of the last successful directory refresh
	refresh chan struct{}
	fwd     forwarder
	m       nodeMetrics

	joined     chan struct{} // closed after the first assignment
	joinedOnce sync.Once
	closeOnce  sync.Once
	stop       chan struct{}
	wg         sync.WaitGroup
}

// New returns a node that has not joined its group yet: Start joins it once
// the node's counters are restored. Route must not be called before Start.
func New(o Options) (*Node, error) {
	if len(o.Brokers) == 0 || o.Topic == "" || o.Region == "" || o.Advertise == "" || o.Partitions <= 0 || o.Flush == nil {
		return nil, errors.New("cluster: Brokers, Topic, Region, Advertise, Partitions and Flush are required")
	}
	if o.HandoffTimeout <= 0 {
		o.HandoffTimeout = DefaultHandoffTimeout
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n := &Node{
		o:        o,
		group:    "sluice-api-" + o.Region,
		n:        o.Partitions,
		refresh:  make(chan struct{}, 1),
		stop:     make(chan struct{}),
		joined:   make(chan struct{}),
		state:    make([]atomic.Int32, o.Partitions),
		inflight: make([]atomic.Int64, o.Partitions),
		orphan:   make([]atomic.Bool, o.Partitions),
		gen:      make([]atomic.Uint64, o.Partitions),
	}
	empty := make([]string, n.n)
	n.dir.Store(&empty)
	n.fwd.init(o.HandoffTimeout, o.ForwardTLS)
	n.m.register(o.Metrics, n)
	return n, nil
}

// Start joins the region's API group with pr as the node's projection of the
// usage topic and starts the directory refresher. Partitions are decided
// once assigned and caught up (Joined).
func (n *Node) Start(pr *Projection) error {
	if pr.Partitions() != n.n {
		return fmt.Errorf("cluster: the projection has %d partitions, the node %d", pr.Partitions(), n.n)
	}
	o := n.o
	n.pr = pr
	n.m.registerProjection(o.Metrics, pr)
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID(clientIDPrefix + o.Advertise),
		kgo.ConsumerGroup(n.group),
		kgo.ConsumeTopics(o.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(SessionTimeout),
		kgo.HeartbeatInterval(SessionTimeout / 6),
		kgo.RebalanceTimeout(4 * o.HandoffTimeout),
		// Membership is all this client is for: the projection reads the
		// records. It is never polled, so it buffers one small fetch.
		kgo.FetchMaxBytes(1 << 10),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.OnPartitionsAssigned(n.assigned),
		kgo.OnPartitionsRevoked(n.revoked),
		kgo.OnPartitionsLost(n.lost),
	}, o.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("cluster: group client: %w", err)
	}
	n.cl = cl
	n.adm = kadm.NewClient(cl)
	n.wg.Add(1)
	go n.refresher()
	o.Logger.Info("cluster: joining the API group", "group", n.group, "advertise", o.Advertise, "partitions", n.n)
	return nil
}

// Joined is closed once the node has joined the group and caught up on the
// partitions of its first assignment (possibly none).
func (n *Node) Joined() <-chan struct{} { return n.joined }

// Owned returns the partitions this node decides for, in order.
func (n *Node) Owned() []int32 {
	var ps []int32
	for p := range n.state {
		if n.state[p].Load() == owned {
			ps = append(ps, int32(p))
		}
	}
	return ps
}

// directoryRefresh is how often a node re-reads the group's assignments.
const directoryRefresh = time.Second

// Close hands every owned partition over (the revoke of the handoff rule)
// by leaving the group, then gives the other nodes one directory refresh to
// learn the new owners, while this node still answers the calls they
// forward to it ("not owner") and forwards its own callers' calls to the new
// owners. The listener should stop only after Close returns.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		if n.cl == nil {
			return
		}
		n.cl.LeaveGroup()
		n.requestRefresh()
		time.Sleep(directoryRefresh + 200*time.Millisecond)
		close(n.stop)
		n.wg.Wait()
		n.cl.Close()
		n.fwd.close()
	})
}

// assigned starts the gaining half of the handoff rule for each new
// partition. It does not wait for the catch-up, which may take longer than a
// rebalance may (a projection far behind under load): the partitions stay
// "catching up", their calls wait, until catchUp has read them to the end.
func (n *Node) assigned(_ context.Context, cl *kgo.Client, m map[string][]int32) {
	var ps []int32
	var gens []uint64
	for _, p := range m[n.o.Topic] {
		if int(p) < n.n {
			gens = append(gens, n.gen[p].Add(1))
			n.state[p].Store(catchingUp)
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		n.joinedOnce.Do(func() { close(n.joined) })
		return
	}
	n.wg.Add(1)
	// The client comes from the callback: the first assignment can arrive
	// before Start has kept its own.
	go n.catchUp(kadm.NewClient(cl), ps, gens)
}

// catchUp lists the new partitions' end offsets (after the assignment, so
// above every event of their previous owner) and decides for each once the
// projection has applied it up to there, unless it was taken away meanwhile
// (its generation moved on). It retries until it succeeds or the node stops.
func (n *Node) catchUp(adm *kadm.Client, ps []int32, gens []uint64) {
	defer n.wg.Done()
	defer n.joinedOnce.Do(func() { close(n.joined) })
	began := time.Now()
	current := func(i int) bool { return n.gen[ps[i]].Load() == gens[i] }
	var ends kadm.ListedOffsets
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*n.o.HandoffTimeout)
		var err error
		ends, err = adm.ListEndOffsets(ctx, n.o.Topic)
		cancel()
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			break
		}
		n.o.Logger.Warn("cluster: end offsets of new partitions; retrying", "partitions", ps, "err", err)
		select {
		case <-n.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	for i, p := range ps {
		end, _ := ends.Lookup(n.o.Topic, p)
		for current(i) && n.pr.Applied(p) < end.Offset {
			select {
			case <-n.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		if current(i) && n.state[p].CompareAndSwap(catchingUp, owned) {
			n.orphan[p].Store(false)
		}
	}
	n.m.handoffs.Inc()
	n.m.handoffWait.ObserveDuration(time.Since(began))
	n.o.Logger.Info("cluster: partitions assigned and caught up", "partitions", ps, "took", time.Since(began))
	n.requestRefresh()
}

// revoked runs the losing half of the handoff rule.
func (n *Node) revoked(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	n.giveUp(ctx, m[n.o.Topic], true)
}

// lost drops partitions the group took away without a revoke (this node's
// session expired): others may decide for them already, so there is nothing
// to hand over.
func (n *Node) lost(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	n.giveUp(ctx, m[n.o.Topic], false)
}

func (n *Node) giveUp(ctx context.Context, ps []int32, flush bool) {
	if len(ps) == 0 {
		return
	}
	began := time.Now()
	for _, p := range ps {
		if int(p) < n.n {
			n.gen[p].Add(1) // a catch-up still under way must not decide for it
			n.state[p].Store(revoking)
		}
	}
	// Every decision that saw "owned" has incremented inflight before
	// looking; once inflight is zero, no decision for p can still append.
	for _, p := range ps {
		for int(p) < n.n && n.inflight[p].Load() > 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	if flush {
		fctx, cancel := context.WithTimeout(ctx, n.o.HandoffTimeout)
		if err := n.o.Flush(fctx, ps); err != nil {
			n.m.flushTimeouts.Inc()
			n.o.Logger.Warn("cluster: events not all in Kafka before handing partitions over", "partitions", ps, "err", err)
		}
		cancel()
	}
	for _, p := range ps {
		if int(p) < n.n {
			n.orphan[p].Store(!flush)
			n.state[p].Store(notOwned)
		}
	}
	n.o.Logger.Info("cluster: partitions handed over", "partitions", ps, "flushed", flush, "took", time.Since(began))
	n.requestRefresh()
}

func (n *Node) requestRefresh() {
	select {
	case n.refresh <- struct{}{}:
	default:
	}
}

// refresher keeps the directory of owners current: every second, and soon
// after a forward found it stale.
func (n *Node) refresher() {
	defer n.wg.Done()
	t := time.NewTicker(directoryRefresh)
	defer t.Stop()
	for {
		n.refreshDirectory()
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.refresh:
			// At most every 20 ms: a burst of stale forwards asks once.
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (n *Node) refreshDirectory() {
	ctx, cancel := context.WithTimeout(context.Background(), n.o.HandoffTimeout)
	defer cancel()
	gs, err := n.adm.DescribeGroups(ctx, n.group)
	if err != nil {
		n.o.Logger.Debug("cluster: describe group", "err", err)
		return
	}
	g, ok := gs[n.group]
	if !ok || g.Err != nil {
		return
	}
	dir := make([]string, n.n)
	for _, m := range g.Members {
		addr, ok := strings.CutPrefix(m.ClientID, clientIDPrefix)
		if !ok {
			continue
		}
		c, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, t := range c.Topics {
			if t.Topic != n.o.Topic {
				continue
			}
			for _, p := range t.Partitions {
				if int(p) < n.n {
					dir[p] = addr
				}
			}
		}
	}
	n.dir.Store(&dir)
	n.dirOK.Store(time.Now().UnixNano())
}

// cutOffAfter is how long the directory may fail to refresh before the node
// counts itself cut off from the group.
const cutOffAfter = 3 * directoryRefresh

// cutOff reports whether this node has not been able to read the group's
// assignments for cutOffAfter: Kafka is unreachable from here, so no owner
// is known for the partitions this node does not hold.
func (n *Node) cutOff() bool {
	last := n.dirOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) > cutOffAfter
}

// owner returns the directory's owner of p, "" if none.
func (n *Node) owner(p int32) string { return (*n.dir.Load())[p] }
