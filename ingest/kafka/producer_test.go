package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/kafkatest"
)

const testTopic = "sluice.usage.test"

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startBroker starts franz-go's in-process Kafka broker (real protocol, real
// TCP) on 127.0.0.1:port with the test topic in 4 partitions.
func startBroker(t testing.TB, port int, dataDir string) *kfake.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts an in-process Kafka broker (kfake)")
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(4, testTopic),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, "127.0.0.1:"+strconv.Itoa(port))
		}),
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	var c *kfake.Cluster
	var err error
	// The port may linger in TIME_WAIT after a previous broker: retry briefly.
	for i := 0; i < 50; i++ {
		if c, err = kfake.NewCluster(opts...); err == nil {
			// Closed before dataDir is removed even when the test fails
			// early (cleanups run last-registered first); Close is idempotent.
			t.Cleanup(c.Close)
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("starting kfake broker on 127.0.0.1:%d: %v", port, err)
	return nil
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testOptions(t testing.TB, port int) Options {
	return Options{
		Brokers:         []string{"127.0.0.1:" + strconv.Itoa(port)},
		Topic:           testTopic,
		SpoolDir:        t.TempDir(),
		DeliveryTimeout: 2 * time.Second,
		Logger:          quietLogger(),
		ClientOpts:      []kgo.Opt{kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })},
	}
}

func newProducer(t testing.TB, o Options) *Producer {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// eventSource makes events for apps app-0..app-(apps-1); each event's
// "hits" value is its sequence number within its app, so order can be checked.
type eventSource struct {
	ids  *event.IDGenerator
	apps int
	seq  []int64
	n    int
}

func newSource(apps int) *eventSource {
	return &eventSource{ids: event.NewIDGenerator(), apps: apps, seq: make([]int64, apps)}
}

func (s *eventSource) next(e *event.Event) {
	app := s.n % s.apps
	s.n++
	s.seq[app]++
	*e = event.Event{
		ID: s.ids.Next(), Kind: event.KindReport,
		TS: 1_700_000_000_000 + int64(s.n), Received: 1_763_900_000_000 + int64(s.n),
		TenantID: "t1", ServiceID: "svc", AppID: "app-" + strconv.Itoa(app), PlanID: "basic",
		Usage: append(e.Usage[:0], event.Usage{Metric: "hits", Value: s.seq[app]}),
	}
}

// events returns n new events. Each has its own Usage slice: next reuses the
// slice of the event it overwrites, and these start empty.
func (s *eventSource) events(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		s.next(&evs[i])
	}
	return evs
}

// consumed is what a test reads back from the topic.
type consumed struct {
	byID       map[[16]byte]int // occurrences
	order      map[string][]int64
	duplicates int
}

// consume reads the topic from the start until want distinct events arrived
// (then a little longer, to catch duplicates) or the deadline passes.
func consume(t *testing.T, port int, want int, within time.Duration) consumed {
	t.Helper()
	return consumeFrom(t, []string{"127.0.0.1:" + strconv.Itoa(port)}, testTopic, want, within)
}

func consumeTopic(t *testing.T, port int, topic string, want int, within time.Duration) consumed {
	t.Helper()
	return consumeFrom(t, []string{"127.0.0.1:" + strconv.Itoa(port)}, topic, want, within)
}

func consumeFrom(t *testing.T, brokers []string, topic string, want int, within time.Duration) consumed {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := consumed{byID: map[[16]byte]int{}, order: map[string][]int64{}}
	deadline := time.Now().Add(within)
	var extra time.Time
	for {
		if len(got.byID) >= want && extra.IsZero() {
			extra = time.Now().Add(300 * time.Millisecond)
		}
		if (!extra.IsZero() && time.Now().After(extra)) || time.Now().After(deadline) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("fetch error: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatalf("record at offset %d does not decode: %v", r.Offset, err)
			}
			if want := e.ServiceID + "/" + e.AppID; string(r.Key) != want {
				t.Fatalf("record key %q, want %q", r.Key, want)
			}
			if r.Timestamp.UnixMilli() != e.Received {
				t.Fatalf("record timestamp %d, want received %d (ts is %d)", r.Timestamp.UnixMilli(), e.Received, e.TS)
			}
			got.byID[e.ID]++
			if got.byID[e.ID] > 1 {
				got.duplicates++
				return
			}
			got.order[string(r.Key)] = append(got.order[string(r.Key)], e.Usage[0].Value)
		})
	}
	return got
}

// check asserts that the consumed events are exactly the source's, each app's
// in order, and returns the duplicate count.
func (c consumed) check(t *testing.T, src *eventSource, accepted int) {
	t.Helper()
	if len(c.byID) != accepted {
		t.Fatalf("consumed %d distinct events, want %d", len(c.byID), accepted)
	}
	total := 0
	for key, seqs := range c.order {
		for i, v := range seqs {
			if v != int64(i+1) {
				t.Fatalf("key %s: event %d has sequence %d, want %d (out of order or missing)", key, i, v, i+1)
			}
		}
		total += len(seqs)
	}
	if total != accepted {
		t.Fatalf("per-key sequences cover %d events, want %d", total, accepted)
	}
	t.Logf("consumed %d events exactly, %d duplicate deliveries", accepted, c.duplicates)
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProduceConsume(t *testing.T) {
	port := freePort(t)
	c := startBroker(t, port, "")
	defer c.Close()
	p := newProducer(t, testOptions(t, port))
	src := newSource(7)
	const n = 5000
	var e event.Event
	for i := 0; i < n; i++ {
		src.next(&e)
		if err := p.Append(&e); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := p.Stats()
	if st.Produced != n || st.Spooled != 0 || st.Errors != 0 || st.InFlight != 0 {
		t.Fatalf("stats %+v, want %d produced and nothing spooled", st, n)
	}
	got := consume(t, port, n, 10*time.Second)
	got.check(t, src, n)
	if got.duplicates != 0 {
		t.Fatalf("%d duplicates with a healthy broker", got.duplicates)
	}
	if err := p.Append(&e); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestInvalidEventRefused(t *testing.T) {
	port := freePort(t)
	c := startBroker(t, port, "")
	defer c.Close()
	p := newProducer(t, testOptions(t, port))
	defer p.Close(context.Background())
	if err := p.Append(&event.Event{}); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("Append(kind 0) = %v, want event.ErrInvalid", err)
	}
}

// appendTimed appends n events and fails if any single Append waited as
// long as half the delivery timeout: the API must keep answering while the
// broker is away. An Append that waited for the broker — for a buffer slot
// freed by a record timing out, or for an acknowledgement — would take close
// to DeliveryTimeout; scheduling and GC stalls on a loaded 2-core CI machine
// stay far below it (the slowest seen there was 0.14 s).
func appendTimed(t *testing.T, p *Producer, src *eventSource, n int) {
	t.Helper()
	bound := p.opts.DeliveryTimeout / 2
	var e event.Event
	var worst time.Duration
	for i := 0; i < n; i++ {
		src.next(&e)
		start := time.Now()
		if err := p.Append(&e); err != nil {
			t.Fatalf("Append: %v", err)
		}
		worst = max(worst, time.Since(start))
	}
	if worst >= bound {
		t.Fatalf("slowest Append took %v (DeliveryTimeout %v); Append must not wait for the broker", worst, p.opts.DeliveryTimeout)
	}
	t.Logf("%d appends, slowest %v", n, worst)
}

func TestBrokerOutageSpoolsAndDrains(t *testing.T) {
	port := freePort(t)
	dataDir := t.TempDir()
	c := startBroker(t, port, dataDir)
	o := testOptions(t, port)
	o.MaxBuffered = 200
	o.SpoolSegmentBytes = 32 << 10 // several segments
	p := newProducer(t, o)
	src := newSource(5)

	appendTimed(t, p, src, 1000)
	waitFor(t, "the first events to be acknowledged", 10*time.Second, func() bool { return p.Stats().Produced == 1000 })

	c.Close()
	appendTimed(t, p, src, 3000)
	// Events franz-go holds either time out (DeliveryTimeout) and move to
	// the spool, or were in a request when the broker went away: those are
	// not safe to fail under idempotence and wait in memory for the broker.
	time.Sleep(o.DeliveryTimeout + 500*time.Millisecond)
	st := p.Stats()
	if !st.Spooling || st.Produced+st.Spooled-st.SpoolDrained+uint64(st.InFlight) != 4000 {
		t.Fatalf("events unaccounted for during the outage: %+v", st)
	}
	t.Logf("outage, after the delivery timeout: %+v", st)
	appendTimed(t, p, src, 2000)
	st = p.Stats()
	t.Logf("during outage: %+v", st)
	if st.SpoolBytes == 0 {
		t.Fatal("spool is empty during the outage")
	}

	c = startBroker(t, port, dataDir)
	defer c.Close()
	waitFor(t, "the spool to drain", 30*time.Second, func() bool {
		st := p.Stats()
		return !st.Spooling && st.SpoolBytes == 0
	})
	appendTimed(t, p, src, 500) // direct again
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st = p.Stats()
	t.Logf("after drain: %+v", st)
	if st.Produced < 6500 || st.SpoolDrained == 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v: want ≥6500 produced, some drained, none dropped", st)
	}
	got := consume(t, port, 6500, 20*time.Second)
	got.check(t, src, 6500)
	// Records in a request the broker never answered are not abandoned:
	// franz-go resends them with their sequence numbers to the restarted
	// broker, which deduplicates them.
	if got.duplicates != 0 {
		t.Fatalf("%d duplicates across a broker stop and restart", got.duplicates)
	}
}

func TestSpoolFull(t *testing.T) {
	for _, policy := range []FullPolicy{FullRefuse, FullDrop} {
		t.Run(policy.String(), func(t *testing.T) {
			if testing.Short() {
				t.Skip("integration test")
			}
			port := freePort(t) // nothing listens here: the broker is unreachable
			o := testOptions(t, port)
			o.MaxBuffered = 10
			o.SpoolMaxBytes = 16 << 10
			o.SpoolSegmentBytes = 2 << 10
			o.FullPolicy = policy
			p := newProducer(t, o)
			defer p.Close(context.Background())
			src := newSource(3)
			var e event.Event
			accepted, refused := 0, 0
			for i := 0; i < 2000; i++ {
				src.next(&e)
				err := p.Append(&e)
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, ErrSpoolFull):
					refused++
				default:
					t.Fatalf("Append: %v", err)
				}
			}
			st := p.Stats()
			t.Logf("accepted %d, refused %d, stats %+v", accepted, refused, st)
			if !st.SpoolFull {
				t.Fatal("Stats.SpoolFull is false after filling the spool")
			}
			if st.SpoolBytes > o.SpoolMaxBytes+1024 {
				t.Fatalf("spool holds %d bytes, bound is %d", st.SpoolBytes, o.SpoolMaxBytes)
			}
			kept := accepted
			switch policy {
			case FullRefuse:
				if refused == 0 || st.Refused != uint64(refused) || st.Dropped != 0 {
					t.Fatalf("refuse policy: %d refused, stats %+v", refused, st)
				}
				if p.Accepting() {
					t.Fatal("Accepting() is true with a full spool under the refuse policy")
				}
			case FullDrop:
				if refused != 0 || st.Dropped == 0 || accepted != 2000 {
					t.Fatalf("drop policy: %d refused, %d accepted, stats %+v", refused, accepted, st)
				}
				if !p.Accepting() {
					t.Fatal("Accepting() is false under the drop policy")
				}
				kept = accepted - int(st.Dropped)
			}
			if st.Spooled+uint64(st.InFlight) != uint64(kept) {
				t.Fatalf("%d events kept but %d spooled + %d in flight", kept, st.Spooled, st.InFlight)
			}

			// The broker arrives: the spool drains, the condition clears.
			c := startBroker(t, port, "")
			defer c.Close()
			waitFor(t, "the full spool to drain", 30*time.Second, func() bool {
				st := p.Stats()
				return !st.Spooling && !st.SpoolFull && p.Accepting()
			})
			got := consume(t, port, kept, 20*time.Second)
			if len(got.byID) != kept {
				t.Fatalf("consumed %d distinct events, want the %d kept", len(got.byID), kept)
			}
			if policy == FullRefuse {
				// Refused events were never accepted, so each app's
				// accepted events are a prefix: order is checkable.
				got.check(t, src, kept)
			}
		})
	}
}

func TestRestartDrainsSpool(t *testing.T) {
	port := freePort(t) // unreachable until the broker starts below
	o := testOptions(t, port)
	o.MaxBuffered = 100
	p := newProducer(t, o)
	src := newSource(4)
	appendTimed(t, p, src, 3000)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	cancel()
	st := p.Stats()
	t.Logf("after close with broker down: %+v", st)
	if st.Spooled != 3000 || st.SpoolBytes == 0 {
		t.Fatalf("want all 3000 events spooled at shutdown, stats %+v", st)
	}

	c := startBroker(t, port, "")
	defer c.Close()
	// RecoverWait < 0: New returns at once (by default it would wait for
	// the spool to drain), so that new events arrive while it drains.
	o.RecoverWait = -1
	p2 := newProducer(t, o) // same SpoolDir
	if !p2.Stats().Spooling {
		t.Fatal("a producer opened on a non-empty spool is not spooling")
	}
	// New events after the restart queue behind the old ones.
	appendTimed(t, p2, src, 500)
	waitFor(t, "the spool to drain after restart", 30*time.Second, func() bool {
		st := p2.Stats()
		return !st.Spooling && st.SpoolBytes == 0
	})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	consume(t, port, 3500, 20*time.Second).check(t, src, 3500)
}

// TestConcurrentAppend runs appenders while the broker goes away and comes
// back, under -race: every accepted event arrives once, in order per app.
func TestConcurrentAppend(t *testing.T) {
	port := freePort(t)
	dataDir := t.TempDir()
	c := startBroker(t, port, dataDir)
	o := testOptions(t, port)
	o.MaxBuffered = 300
	p := newProducer(t, o)
	const workers, per = 4, 1500
	srcs := make([]*eventSource, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		srcs[w] = newSource(3)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var e event.Event
			for i := 0; i < per; i++ {
				srcs[w].next(&e)
				e.AppID = fmt.Sprintf("w%d-%s", w, e.AppID)
				if err := p.Append(&e); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if i%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(100 * time.Millisecond)
	c.Close()
	time.Sleep(1500 * time.Millisecond)
	c = startBroker(t, port, dataDir)
	defer c.Close()
	wg.Wait()
	waitFor(t, "the spool to drain", 30*time.Second, func() bool { st := p.Stats(); return !st.Spooling && st.InFlight == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", p.Stats())
	got := consume(t, port, workers*per, 20*time.Second)
	if len(got.byID) != workers*per {
		t.Fatalf("consumed %d distinct events, want %d", len(got.byID), workers*per)
	}
	for key, seqs := range got.order {
		for i, v := range seqs {
			if v != int64(i+1) {
				t.Fatalf("key %s: position %d has sequence %d", key, i, v)
			}
		}
	}
	if got.duplicates != 0 {
		t.Fatalf("%d duplicates across a broker stop and restart", got.duplicates)
	}
}

func BenchmarkAppend(b *testing.B) {
	port := freePort(b)
	c := startBroker(b, port, "")
	defer c.Close()
	o := testOptions(b, port)
	p := newProducer(b, o)
	src := newSource(100)
	evs := src.events(1024)
	// Warm the record pool and franz-go's buffers.
	for i := 0; i < 20000; i++ {
		_ = p.Append(&evs[i%len(evs)])
	}
	waitUntilProduced(b, p, 20000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Append(&evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
		// Stay under MaxBuffered so every call takes the direct path.
		if i%10000 == 9999 {
			waitUntilProduced(b, p, uint64(20000+i+1))
		}
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.Close(ctx)
	if st := p.Stats(); st.Spooled != 0 {
		b.Fatalf("benchmark spooled %d events", st.Spooled)
	}
}

func waitUntilProduced(b *testing.B, p *Producer, n uint64) {
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Produced < n {
		if time.Now().After(deadline) {
			b.Fatalf("produced %d of %d", p.Stats().Produced, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkThroughput measures events/s from Append to Kafka's
// acknowledgement against the in-process broker.
func BenchmarkThroughput(b *testing.B) {
	port := freePort(b)
	c := startBroker(b, port, "")
	defer c.Close()
	p := newProducer(b, testOptions(b, port))
	src := newSource(1000)
	evs := src.events(4096)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for p.inflight.Load() >= int64(p.opts.MaxBuffered) { // do not measure the spool
			time.Sleep(50 * time.Microsecond)
		}
		if err := p.Append(&evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
	waitUntilProduced(b, p, uint64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.StopTimer()
	_ = p.Close(context.Background())
}

// TestFailedRecordsAreSpooled produces to a topic that does not exist yet:
// the records fail (UNKNOWN_TOPIC_OR_PARTITION until the delivery deadline
// or the unknown-topic retry limit) and must be spooled, not dropped, then
// delivered in order once the topic exists.
func TestFailedRecordsAreSpooled(t *testing.T) {
	port := freePort(t)
	c := startBroker(t, port, "")
	defer c.Close()
	o := testOptions(t, port)
	o.Topic = "sluice.usage.later"
	p := newProducer(t, o)
	src := newSource(3)
	appendTimed(t, p, src, 500)
	waitFor(t, "failed records to reach the spool", 20*time.Second, func() bool {
		st := p.Stats()
		return st.InFlight == 0 && st.Spooled == 500
	})
	st := p.Stats()
	if st.Errors == 0 || st.Produced != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v: want errors, nothing produced, nothing dropped", st)
	}
	appendTimed(t, p, src, 100) // behind the failed ones

	adm, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 3, 1, nil, o.Topic); err != nil {
		t.Fatalf("creating topic: %v", err)
	}
	waitFor(t, "the spool to drain once the topic exists", 30*time.Second, func() bool {
		st := p.Stats()
		return !st.Spooling && st.SpoolDrained == 600
	})
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	consumeTopic(t, port, o.Topic, 600, 20*time.Second).check(t, src, 600)
}

// BenchmarkAppendSpooling measures Append while the broker is unreachable:
// every event goes to the on-disk spool.
func BenchmarkAppendSpooling(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a spool")
	}
	o := testOptions(b, freePort(b)) // nothing listens: the broker is down
	o.MaxBuffered = 1
	o.SpoolMaxBytes = 4 << 30
	p := newProducer(b, o)
	src := newSource(100)
	evs := src.events(1024)
	for i := 0; i < 10000; i++ { // reach spooling mode, warm buffers
		_ = p.Append(&evs[i%len(evs)])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Append(&evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := p.Stats(); !st.Spooling || st.Spooled < uint64(b.N) {
		b.Fatalf("not spooling: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = p.Close(ctx)
}

func TestSpoolDirLocked(t *testing.T) {
	port := freePort(t)
	c := startBroker(t, port, "")
	defer c.Close()
	o := testOptions(t, port)
	p := newProducer(t, o)
	if p2, err := New(o); err == nil {
		p2.Close(context.Background())
		t.Fatal("a second producer opened a spool directory in use")
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	p3 := newProducer(t, o) // free again after Close
	p3.Close(context.Background())
}

// TestExternalBroker runs the produce/consume round trip against a real
// Kafka broker (Apache Kafka from deploy/kafka) when SLUICE_KAFKA_BROKERS
// names it, e.g. SLUICE_KAFKA_BROKERS=127.0.0.1:9092. It checks what kfake
// cannot vouch for: that the real broker accepts the idempotent, lz4
// compressed, xxhash-keyed batches.
func TestExternalBroker(t *testing.T) {
	seeds := kafkatest.External()
	if seeds == nil {
		t.Skip("set SLUICE_KAFKA_BROKERS=host:port to run against an Apache Kafka broker")
	}
	topic := (&kafkatest.Broker{Addrs: seeds}).Topic(t, "sluice.usage.test", 4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, codec := range []string{"lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			o := Options{Brokers: seeds, Topic: topic, SpoolDir: t.TempDir(), Compression: codec, Logger: quietLogger()}
			p := newProducer(t, o)
			src := newSource(5)
			const n = 5000
			appendTimed(t, p, src, n)
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if st := p.Stats(); st.Produced != n || st.Spooled != 0 {
				t.Fatalf("stats %+v: want %d produced directly", st, n)
			}
		})
	}
	got := consumeFrom(t, seeds, topic, 10000, 30*time.Second)
	if len(got.byID) != 10000 || got.duplicates != 0 {
		t.Fatalf("consumed %d distinct events, %d duplicates; want 10000, 0", len(got.byID), got.duplicates)
	}
}

// TestJournalFullSpools fills the ack journal (the broker is unreachable, so
// nothing is acknowledged): Append goes on accepting, into the spool, counts
// it, and every event arrives once and in order when the broker comes.
func TestJournalFullSpools(t *testing.T) {
	port := freePort(t)
	o := testOptions(t, port)
	o.MaxBuffered = 100_000
	o.JournalBytes = 16 * 4096 // ~400 events
	p := newProducer(t, o)
	src := newSource(3)
	appendTimed(t, p, src, 3000)
	st := p.Stats()
	t.Logf("broker down: %+v", st)
	if st.JournalFull == 0 || !st.Spooling || st.Spooled == 0 {
		t.Fatalf("stats %+v: want a full journal and events spooled", st)
	}
	if st.JournalPending == 0 || st.JournalPending*100 > o.JournalBytes {
		t.Fatalf("journal holds %d events, want up to its capacity", st.JournalPending)
	}
	c := startBroker(t, port, "")
	defer c.Close()
	waitFor(t, "the spool to drain", 30*time.Second, func() bool {
		st := p.Stats()
		return !st.Spooling && st.InFlight == 0
	})
	appendTimed(t, p, src, 500)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.JournalPending != 0 {
		t.Fatalf("%d events still pending in the journal after Close", st.JournalPending)
	}
	got := consume(t, port, 3500, 20*time.Second)
	got.check(t, src, 3500)
	if got.duplicates != 0 {
		t.Fatalf("%d duplicates", got.duplicates)
	}
}
