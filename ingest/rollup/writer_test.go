package rollup

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
)

// records makes n encoded events spread over partitions, and the model of
// their sums.
func records(n, partitions int, seed uint64) ([]record, *model) {
	g := newGen(seed)
	m := newModel()
	next := make([]int64, partitions)
	var e event.Event
	recs := make([]record, 0, n)
	for i := 0; i < n; i++ {
		g.next(&e)
		m.add(&e)
		kp := int32(i % partitions)
		recs = append(recs, record{Partition: kp, Offset: next[kp], Value: event.AppendEvent(nil, &e)})
		next[kp]++
	}
	return recs, m
}

// countRows counts a table's rows as merges leave them: a rollup table's rows
// grouped by its sorting key (background merges fold those into one), the
// other tables' rows as they are (plain MergeTree merges keep every row).
// Replaying a batch that is already there must not change it.
func countRows(t *testing.T, conn driver.Conn, table string) uint64 {
	t.Helper()
	q := "SELECT count() FROM " + testDB + "." + table
	if slices.Contains(chschema.RollupTables, table) {
		q = "SELECT count() FROM (SELECT sum(value) AS v FROM " + testDB + "." + table +
			" GROUP BY " + chschema.UsageKey + " HAVING v != 0)"
	}
	var n uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriterExactAndReplayHarmless(t *testing.T) {
	_, conn := startCH(t)
	ctx := context.Background()
	recs, m := records(20000, 3, 1)
	w := newWriter(conn, testDB, testHierarchy, true, nil, nil)
	if err := w.load(ctx, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < len(recs); i += 3000 {
		if err := w.write(ctx, recs[i:min(i+3000, len(recs))], now); err != nil {
			t.Fatal(err)
		}
	}
	checkTables(t, conn, m)

	before := map[string]uint64{}
	for _, tb := range chschema.Tables {
		before[tb.Name] = countRows(t, conn, tb.Name)
	}
	if got := countRows(t, conn, chschema.EventsRaw); got < 20000 {
		t.Errorf("events_raw has %d rows, want >= 20000", got)
	}
	// Replays: the same writer, then a fresh writer that only knows what
	// ClickHouse says, replaying overlapping ranges. Nothing new is written.
	if err := w.write(ctx, recs[5000:9000], now); err != nil {
		t.Fatal(err)
	}
	w2 := newWriter(conn, testDB, testHierarchy, true, nil, nil)
	if err := w2.load(ctx, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if got := w2.startOffsets([]int32{0, 1, 2}); got[0] != 6667 || got[1] != 6667 || got[2] != 6666 {
		t.Errorf("startOffsets = %v", got)
	}
	if err := w2.write(ctx, recs, now); err != nil {
		t.Fatal(err)
	}
	for _, tb := range chschema.Tables {
		if got := countRows(t, conn, tb.Name); got != before[tb.Name] {
			t.Errorf("%s: %d rows after replay, %d before", tb.Name, got, before[tb.Name])
		}
	}
	checkTables(t, conn, m)
	checkRaw(t, conn, m)
	var sets uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+testDB+".usage_sets WHERE tenant_id = 't1'").Scan(&sets); err != nil || int(sets) != m.sets {
		t.Errorf("usage_sets rows = %d (%v), want %d", sets, err, m.sets)
	}
}

// A batch that reached some tables but not others (a crash between inserts,
// or an insert that failed) is completed table by table on replay.
func TestWriterCompletesPartialBatch(t *testing.T) {
	_, conn := startCH(t)
	ctx := context.Background()
	recs, m := records(6000, 2, 2)
	w := newWriter(conn, testDB, testHierarchy, false, nil, nil)
	if err := w.load(ctx, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.write(ctx, recs[:2000], time.Now()); err != nil {
		t.Fatal(err)
	}
	// Simulate a writer that got only usage_minute and usage_day of the
	// next batch in before dying.
	only := newWriter(conn, testDB, testHierarchy, false, nil, nil)
	only.tables = []string{chschema.UsageMinute, chschema.UsageDay}
	if err := only.load(ctx, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := only.write(ctx, recs[:4000], time.Now()); err != nil {
		t.Fatal(err)
	}
	// A restarted writer replays from the smallest offset.
	w2 := newWriter(conn, testDB, testHierarchy, false, nil, nil)
	if err := w2.load(ctx, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	start := w2.startOffsets([]int32{0, 1})
	if start[0] != 1000 || start[1] != 1000 {
		t.Fatalf("startOffsets = %v, want 1000 each", start)
	}
	var replay []record
	for _, r := range recs {
		if r.Offset >= start[r.Partition] {
			replay = append(replay, r)
		}
	}
	if err := w2.write(ctx, replay, time.Now()); err != nil {
		t.Fatal(err)
	}
	checkTables(t, conn, m)
}

// Records of a partition the writer does not own are never written.
func TestWriterDropsUnassignedPartitions(t *testing.T) {
	_, conn := startCH(t)
	ctx := context.Background()
	recs, _ := records(3000, 3, 4)
	w := newWriter(conn, testDB, testHierarchy, false, nil, nil)
	if err := w.load(ctx, []int32{0, 1}); err != nil { // partition 2 is not ours
		t.Fatal(err)
	}
	if err := w.write(ctx, recs, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := chschema.ResumeOffsets(ctx, conn, testDB)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 1000 || got[1] != 1000 || len(got) != 2 {
		t.Errorf("chschema.ResumeOffsets = %v, want partitions 0 and 1 at 1000", got)
	}
}

// An event whose usage time ClickHouse cannot store must not block the
// pipeline: it is counted at its receive time.
func TestWriterOutOfRangeUsageTime(t *testing.T) {
	_, conn := startCH(t)
	ctx := context.Background()
	recv := time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC).UnixMilli()
	var recs []record
	for i, ts := range []int64{-5000, 1 << 62} {
		e := event.Event{Kind: event.KindReport, TS: ts, Received: recv, TenantID: "t1", ServiceID: "s1", AppID: "a",
			Usage: []event.Usage{{Metric: "hits", Value: 2}}}
		recs = append(recs, record{Partition: 0, Offset: int64(i), Value: event.AppendEvent(nil, &e)})
	}
	w := newWriter(conn, testDB, nil, true, nil, nil)
	if err := w.load(ctx, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if err := w.write(ctx, recs, time.Now()); err != nil {
		t.Fatal(err)
	}
	usage, _ := chSums(t, conn, "usage_minute")
	if got := usage[sumKey{"a", "hits", recv / 60000 * 60}]; got != 4 || len(usage) != 1 {
		t.Errorf("usage = %v, want 4 hits at the receive minute", usage)
	}
}
