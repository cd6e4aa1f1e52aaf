package rollup

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/kafkatest"
	"github.com/sluice-dev/sluice/limiter"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testTopic is the usage topic of the running test (tests are not
// parallel); startKafka sets it.
var testTopic = event.Topic

// startKafka returns a broker (kafkatest) with a usage topic of the given
// partitions, whose name it puts in testTopic.
func startKafka(t testing.TB, partitions int32) []string {
	t.Helper()
	b := kafkatest.Start(t)
	testTopic = b.Topic(t, event.Topic, partitions)
	return b.Addrs
}

// produce sends n generated events keyed like Sluice's producer and folds
// them into m. It returns when every record is acknowledged.
func produce(t testing.TB, brokers []string, g *gen, m *model, n int, pace time.Duration) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(testTopic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var e event.Event
	errc := make(chan error, 1)
	for i := 0; i < n; i++ {
		g.next(&e)
		m.add(&e)
		r := &kgo.Record{Key: event.Key(nil, e.ServiceID, e.AppID), Value: event.AppendEvent(nil, &e), Timestamp: time.UnixMilli(e.Received)}
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
		if pace > 0 && i%1000 == 999 {
			time.Sleep(pace)
		}
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		t.Fatalf("produce: %v", err)
	default:
	}
}

// endOffsets returns the high watermark per partition.
func endOffsets(t testing.TB, brokers []string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), testTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// waitCaughtUp waits until ClickHouse's resume offsets reach the log end.
func waitCaughtUp(t testing.TB, conn driver.Conn, ends map[int32]int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// Every table, events_raw included.
		var got map[int32]int64
		var err error
		done := true
		for _, tb := range chschema.Tables {
			got, err = chschema.Markers(context.Background(), conn, testDB, tb.Name)
			if err != nil {
				done = false
			}
			for kp, end := range ends {
				if end > 0 && got[kp] < end {
					done = false
				}
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollup did not catch up within %v: ClickHouse has %v (err %v), log ends at %v", timeout, got, err, ends)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		lvl := slog.LevelInfo
		if os.Getenv("SLUICE_TEST_LOG") == "debug" {
			lvl = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func runRollup(t testing.TB, o Options) (stop func() Stats) {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() Stats {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		return r.Stats()
	}
}

func TestConsumerExactHierarchyAndReplay(t *testing.T) {
	ch, conn := startCH(t)
	brokers := startKafka(t, 4)
	g, m := newGen(3), newModel()
	produce(t, brokers, g, m, 30000, 0)
	ends := endOffsets(t, brokers)

	o := Options{Brokers: brokers, Topic: testTopic, Group: testTopic, ClickHouseAddr: ch.Addr(), Database: testDB, Hierarchy: testHierarchy,
		Raw: true, MaxBatchEvents: 7000, Logger: quietLogger()}
	stop := runRollup(t, o)
	waitCaughtUp(t, conn, ends, 60*time.Second)
	st := stop()
	// Every record is counted once: as an event, or, after an insert failed
	// when some tables already had its batch (its outcome is unknown, so the
	// writer rereads the markers and writes only the tables that lack it),
	// as skipped by the retry. Without a failed insert nothing is skipped.
	// The tables' exactness is checked below either way.
	if st.Undecodable != 0 || st.Events > 30000 || st.Events+st.Skipped < 30000 ||
		(st.WriteErrors == 0 && (st.Events != 30000 || st.Skipped != 0)) {
		t.Errorf("stats %+v, want 30000 events", st)
	}
	if st.WriteErrors > 0 {
		t.Logf("an insert failed and was retried: stats %+v", st)
	}
	checkTables(t, conn, m)
	checkRaw(t, conn, m)

	rows := func() (n uint64) {
		for _, tb := range chschema.Tables {
			n += countRows(t, conn, tb.Name)
		}
		return n
	}
	before := rows()
	// Another group has no committed offsets at all: the resume offsets
	// come from ClickHouse, so nothing is written twice.
	o.Group = testTopic + "-another-group"
	stop = runRollup(t, o)
	time.Sleep(3 * time.Second)
	st = stop()
	if st.Events != 0 {
		t.Errorf("replay folded %d events, want 0", st.Events)
	}
	if after := rows(); after != before {
		t.Errorf("replay added rows: %d -> %d", before, after)
	}
	checkTables(t, conn, m)

	// Open windows at 12:34:56 on the generated day, against the model.
	now := time.Date(2026, 11, 23, 12, 34, 56, 0, time.UTC)
	ow, err := chschema.OpenWindowSums(context.Background(), conn, testDB, now)
	if err != nil {
		t.Fatal(err)
	}
	type wk struct {
		u           limiter.Unit
		app, metric string
	}
	want, got := map[wk]int64{}, map[wk]int64{}
	for k, v := range m.usage {
		for _, u := range []limiter.Unit{limiter.Minute, limiter.Hour, limiter.Day, limiter.Week, limiter.Month, limiter.Year, limiter.Eternity} {
			s, e := limiter.CalendarBounds(u, now.Unix())
			if u == limiter.Eternity {
				s, e = 0, 1<<32-1
			}
			if k.t >= s && k.t < e {
				want[wk{u, k.app, k.metric}] += v
			}
		}
	}
	for _, s := range ow.Sums {
		got[wk{s.Unit, s.App, s.Metric}] += s.Sum
	}
	if len(want) == 0 {
		t.Fatal("empty expectation")
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("open window %v: got %d want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("open windows: %d keys, want %d", len(got), len(want))
	}
	if len(m.lastSet) == 0 || len(ow.Sets) != len(m.lastSet) {
		t.Errorf("last sets: got %d, want %d", len(ow.Sets), len(m.lastSet))
	}
	for _, s := range ow.Sets {
		if w := m.lastSet[[2]string{s.App, s.Metric}]; w[0] != s.TS.UnixMilli() || w[1] != s.Value {
			t.Errorf("last set %s/%s: got (%d, %d), want %v", s.App, s.Metric, s.TS.UnixMilli(), s.Value, w)
		}
	}
	for kp, end := range ends {
		if ow.SetOffsets[kp] != end || ow.From()[kp] != end {
			t.Errorf("partition %d: set offset %d, From %d, want %d", kp, ow.SetOffsets[kp], ow.From()[kp], end)
		}
	}
	for u, offs := range ow.Offsets {
		for kp, end := range ends {
			if offs[kp] != end {
				t.Errorf("unit %d partition %d offset %d, want %d", u, kp, offs[kp], end)
			}
		}
	}
}
