package rollup

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkRollupThroughput measures events/s from a kfake broker (real TCP)
// into ClickHouse: a backlog of events is produced first, then a Rollup
// consumes it from scratch until every table's markers reach the log end
// (group join included). Run with -benchtime=1x; see bench/RESULTS.md.
//
//	go test -run '^$' -bench RollupThroughput -benchtime 1x ./ingest/rollup
func BenchmarkRollupThroughput(b *testing.B) {
	ch, conn := startCH(b)
	brokers := startKafka(b, 12)
	const backlog = 1_000_000
	produceBench(b, brokers, backlog)
	ends := endOffsets(b, brokers)
	for _, raw := range []bool{false, true} {
		name := "rollups"
		if raw {
			name = "rollups+raw"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				db := fmt.Sprintf("bench_%s_%d_%d", map[bool]string{false: "r", true: "raw"}[raw], i, time.Now().UnixNano())
				if err := chschema.Migrate(context.Background(), conn, db); err != nil {
					b.Fatal(err)
				}
				r, err := New(Options{Brokers: brokers, ClickHouseAddr: ch.Addr(), Database: db, Group: db, Topic: testTopic,
					Hierarchy: testHierarchy, Raw: raw, Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				if f := os.Getenv("SLUICE_BENCH_CPUPROFILE"); f != "" {
					pf, err := os.Create(f + "." + name)
					if err != nil {
						b.Fatal(err)
					}
					pprof.StartCPUProfile(pf)
					defer func() { pprof.StopCPUProfile(); pf.Close() }()
				}
				start := time.Now()
				go func() { done <- r.Run(ctx) }()
				waitDB(b, conn, db, raw, ends)
				el := time.Since(start)
				cancel()
				<-done
				st := r.Stats()
				if st.Events != backlog {
					b.Fatalf("folded %d events, want %d", st.Events, backlog)
				}
				b.ReportMetric(float64(backlog)/el.Seconds(), "events/s")
				b.ReportMetric(float64(st.Batches), "batches")
			}
		})
	}
}

func waitDB(b *testing.B, conn driver.Conn, db string, raw bool, ends map[int32]int64) {
	tables := []string{chschema.UsageMinute, chschema.UsageHour, chschema.UsageDay, chschema.UsageMonth, chschema.UsageSets}
	if raw {
		tables = append(tables, chschema.EventsRaw)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		done := true
		for _, t := range tables {
			m, err := chschema.Markers(context.Background(), conn, db, t)
			if err != nil {
				b.Fatal(err)
			}
			for kp, end := range ends {
				if m[kp] < end {
					done = false
				}
			}
			if !done {
				break
			}
		}
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("rollup did not catch up in 5 minutes")
}

// produceBench writes n events of a realistic mix: 1,000 apps of one
// service, hits/search/upload (hierarchy) plus a second metric on a quarter
// of the calls, 2% denials, usage times of a live stream at 300,000/s.
func produceBench(b *testing.B, brokers []string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(testTopic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	apps := make([]string, 1000)
	for i := range apps {
		apps[i] = "app" + strconv.Itoa(i)
	}
	ids := event.NewIDGenerator()
	now := time.Now().UnixMilli()
	metrics := []string{"hits", "search", "upload"}
	e := event.Event{Kind: event.KindAuthrep, TenantID: "t1", ServiceID: "s1", PlanID: "basic", Region: "eu", Node: "n1", Code: 200}
	for i := 0; i < n; i++ {
		e.ID = ids.Next()
		e.AppID = apps[(i*7919)%len(apps)]
		// A live stream at 300,000 events/s: usage times advance with the
		// stream (a few seconds in all), with up to 2 s of jitter.
		e.TS = now + int64(i/300) - int64((i*104729)%2000)
		e.Received = e.TS
		e.Kind, e.Reason = event.KindAuthrep, ""
		e.Usage = append(e.Usage[:0], event.Usage{Metric: metrics[i%3], Value: int64(1 + i%3)})
		if i%4 == 0 {
			e.Usage = append(e.Usage, event.Usage{Metric: "bytes", Value: int64(i % 1000)})
		}
		if i%50 == 0 {
			e.Kind, e.Reason = event.KindDenied, "limits_exceeded"
		}
		r := &kgo.Record{Key: event.Key(nil, e.ServiceID, e.AppID), Value: event.AppendEvent(nil, &e)}
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}
