package billing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// usageRow is one row of a usage table as the rollup writes it.
type usageRow struct {
	tenant, service, app, plan, metric, reason, region string
	code                                               int16
	t                                                  time.Time
	kp                                                 int32
	ko, value                                          int64
}

// insertParts inserts each slice as its own batch: one insert is one part,
// and parts merge only eventually, so equal keys stay unmerged duplicates.
func insertParts(t testing.TB, conn driver.Conn, db string, parts ...[]usageRow) {
	t.Helper()
	ctx := context.Background()
	written := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for _, rows := range parts {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_month (written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t, kp, ko, value)")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := b.Append(written, r.tenant, r.service, r.app, r.plan, r.metric, r.reason, r.code, r.region, r.t, r.kp, r.ko, r.value); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	oct = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	nov = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	dec = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
)

// dataset returns the parts to insert: usage of two tenants with
// duplicates across parts and regions, a plan change, identifiers that stress
// the encoders and SQL, and the rows an export must ignore: other months,
// denials and offset markers.
func dataset() [][]usageRow {
	u := func(tenant, service, app, plan, metric, region string, t time.Time, v int64) usageRow {
		return usageRow{tenant: tenant, service: service, app: app, plan: plan, metric: metric, region: region, t: t, value: v}
	}
	base := []usageRow{
		u("acme", "2555417777820", "app1", "basic", "hits", "eu", nov, 100),
		u("acme", "2555417777820", "app1", "basic", "search", "eu", nov, 40),
		u("acme", "2555417777820", "app2", "pro", "hits", "eu", nov, 7),
		u("acme", "svc-b", "app1", "basic", "hits", "eu", nov, 3),
		u("acme", "svc-b", `weird,"app"`+"\nline", "basic", "hits", "eu", nov, 11),
		u("acme", "svc-b", "x' OR 1=1 --", "basic", "hits", "eu", nov, 13),
		u("acme", "svc-b", "ünïcødé ☃", "plan é", "hits", "eu", nov, 17),
		u("globex", "2555417777820", "app1", "basic", "hits", "us", nov, 1000),
		u("globex", "g-svc", "gapp", "gold", "hits", "us", nov, 5),
		// Other months: never in November's export.
		u("acme", "2555417777820", "app1", "basic", "hits", "eu", oct, 999),
		u("acme", "2555417777820", "app1", "basic", "hits", "eu", dec, 888),
	}
	dupes := []usageRow{
		// Same keys again (another part): must be summed.
		u("acme", "2555417777820", "app1", "basic", "hits", "eu", nov, 20),
		u("acme", "2555417777820", "app1", "basic", "hits", "us", nov, 5), // another region: same export row
		u("acme", "2555417777820", "app2", "pro", "hits", "eu", nov, 1),
		// app2 moved to another plan mid-month: its own row.
		u("acme", "2555417777820", "app2", "basic", "hits", "eu", nov, 2),
		u("globex", "2555417777820", "app1", "basic", "hits", "us", nov, 1),
	}
	excluded := []usageRow{
		// Denials: metric "", reason set.
		{tenant: "acme", service: "2555417777820", app: "app1", plan: "basic", reason: "limits_exceeded", code: 409, region: "eu", t: nov, value: 50},
		{tenant: "globex", service: "g-svc", app: "gapp", plan: "gold", reason: "user_key_invalid", code: 403, region: "us", t: nov, value: 9},
		// Offset markers: tenant "", value 1.
		{t: nov.Add(36 * time.Hour), kp: 0, ko: 1234, value: 1},
		{t: nov, kp: 3, ko: 77, value: 1},
	}
	more := []usageRow{u("acme", "2555417777820", "app1", "basic", "hits", "eu", nov, 1000)}
	return [][]usageRow{base, dupes, excluded, more}
}

// expected computes the export independently of ClickHouse.
func expected(parts [][]usageRow, req Request) []Row {
	sums := map[Row]int64{}
	for _, p := range parts {
		for _, r := range p {
			switch {
			case r.tenant == "" || r.metric == "":
				continue
			case !req.AllTenants && r.tenant != req.TenantID:
				continue
			case req.ServiceID != "" && r.service != req.ServiceID:
				continue
			case r.t.Before(req.Month) || !r.t.Before(req.Month.AddDate(0, 1, 0)):
				continue
			}
			sums[Row{Month: req.Month.Format("2006-01"), TenantID: r.tenant, ServiceID: r.service, AppID: r.app, PlanID: r.plan, Metric: r.metric}] += r.value
		}
	}
	out := []Row{}
	for k, v := range sums {
		k.Value = v
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Row) int {
		return strings.Compare(strings.Join([]string{a.TenantID, a.ServiceID, a.AppID, a.PlanID, a.Metric}, "\x00"),
			strings.Join([]string{b.TenantID, b.ServiceID, b.AppID, b.PlanID, b.Metric}, "\x00"))
	})
	return out
}

func decode(t testing.TB, f Format, b []byte) []Row {
	t.Helper()
	if f == CSV {
		rows := decodeCSV(t, b)
		if rows == nil {
			rows = []Row{}
		}
		return rows
	}
	rows := decodeJSON(t, f, b)
	if rows == nil {
		rows = []Row{}
	}
	return rows
}

func export(t testing.TB, conn driver.Conn, db string, req Request) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Export(context.Background(), conn, db, req, &buf)
	if err != nil {
		t.Fatalf("Export(%+v): %v", req, err)
	}
	if rows := decode(t, req.Format, buf.Bytes()); n != len(rows) {
		t.Fatalf("Export returned %d rows, wrote %d", n, len(rows))
	}
	return buf.Bytes()
}

func TestExportClickHouse(t *testing.T) {
	_, conn := chtest.Start(t)
	ctx := context.Background()
	const db = "sluice"
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// The duplicates of a key must stay in separate parts until the merge
	// below: a background merge before the checks would leave nothing to
	// fold at query time.
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+db+".usage_month"); err != nil {
		t.Fatal(err)
	}
	parts := dataset()
	insertParts(t, conn, db, parts...)
	formats := []Format{CSV, JSON, NDJSON}

	t.Run("golden", func(t *testing.T) {
		for _, f := range formats {
			got := export(t, conn, db, Request{TenantID: "acme", Month: nov, Format: f})
			path := filepath.Join("testdata", "acme-2026-11."+string(f))
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s export differs from %s:\n got %q\nwant %q", f, path, got, want)
			}
		}
	})

	// Every scoping and format equals the independent computation.
	scopes := []Request{
		{TenantID: "acme", Month: nov},
		{TenantID: "acme", ServiceID: "2555417777820", Month: nov},
		{TenantID: "acme", ServiceID: "svc-b", Month: nov},
		{TenantID: "globex", Month: nov},
		{TenantID: "globex", ServiceID: "svc-b", Month: nov}, // another tenant's service: nothing
		{TenantID: "acme", Month: oct},
		{TenantID: "acme", Month: dec},
		{TenantID: "nobody", Month: nov},
		{AllTenants: true, Month: nov},
		{AllTenants: true, Month: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)},
	}
	check := func(t *testing.T) {
		for _, req := range scopes {
			want := expected(parts, req)
			for _, f := range formats {
				req.Format = f
				got := decode(t, f, export(t, conn, db, req))
				if !slices.Equal(got, want) {
					t.Errorf("%+v:\n got %+v\nwant %+v", req, got, want)
				}
			}
		}
	}
	t.Run("scoping", check)
	// The tests above must have seen unmerged parts, or duplicates were not
	// really tested.
	var active uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'usage_month' AND active", db).Scan(&active); err != nil {
		t.Fatal(err)
	}
	if active < 2 {
		t.Fatalf("usage_month has %d active parts: the duplicates were merged before the test", active)
	}
	if err := conn.Exec(ctx, "SYSTEM START MERGES "+db+".usage_month"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".usage_month FINAL"); err != nil {
		t.Fatal(err)
	}
	t.Run("scoping after merge", check)

	t.Run("injection", func(t *testing.T) {
		for _, evil := range []string{"acme' OR '1'='1", "acme' --", "' UNION SELECT 'a','b','c','d','e',1 --", "acme\\", "acme\x00", "acme/*", "ａｃｍｅ"} {
			for _, req := range []Request{
				{TenantID: evil, Month: nov, Format: NDJSON},
				{TenantID: "acme", ServiceID: evil, Month: nov, Format: NDJSON},
			} {
				if got := export(t, conn, db, req); len(got) != 0 {
					t.Errorf("%+v exported %q", req, got)
				}
			}
		}
		// The odd app id is exported as data, not interpreted.
		got := decode(t, NDJSON, export(t, conn, db, Request{TenantID: "acme", ServiceID: "svc-b", Month: nov, Format: NDJSON}))
		if !slices.ContainsFunc(got, func(r Row) bool { return r.AppID == "x' OR 1=1 --" && r.Value == 13 }) {
			t.Errorf("row of app %q missing: %+v", "x' OR 1=1 --", got)
		}
	})

	t.Run("invalid request writes nothing", func(t *testing.T) {
		for _, req := range []Request{
			{Month: nov, Format: CSV},
			{TenantID: "acme", Month: nov, Format: "xml"},
			{TenantID: "acme", Month: nov.Add(time.Second), Format: CSV},
		} {
			var buf bytes.Buffer
			if _, err := Export(ctx, conn, db, req, &buf); err == nil || errors.Is(err, ErrUnavailable) || buf.Len() != 0 {
				t.Errorf("%+v: err %v, wrote %q", req, err, buf.Bytes())
			}
		}
	})

	t.Run("unavailable writes nothing", func(t *testing.T) {
		dead, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer dead.Close()
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel2()
		for name, c := range map[string]struct {
			ctx  context.Context
			conn driver.Conn
			db   string
		}{
			"connection refused": {ctx, dead, db},
			"canceled":           {canceled, conn, db},
			"deadline passed":    {expired, conn, db},
			"no schema":          {ctx, conn, "nosuchdb"},
		} {
			for _, f := range formats {
				var buf bytes.Buffer
				n, err := Export(c.ctx, c.conn, c.db, Request{TenantID: "acme", Month: nov, Format: f}, &buf)
				if !errors.Is(err, ErrUnavailable) || n != 0 || buf.Len() != 0 {
					t.Errorf("%s %s: n=%d err=%v wrote %q; want ErrUnavailable and nothing", name, f, n, err, buf.Bytes())
				}
			}
		}
	})

	t.Run("writer failure", func(t *testing.T) {
		for _, limit := range []int{0, 10} {
			w := &failWriter{limit: limit}
			_, err := Export(ctx, conn, db, Request{TenantID: "acme", Month: nov, Format: CSV}, w)
			if !errors.Is(err, ErrInterrupted) || !errors.Is(err, errFull) {
				t.Errorf("limit %d: err %v, want ErrInterrupted wrapping the write error", limit, err)
			}
		}
	})

	t.Run("streaming memory", func(t *testing.T) { testStreamingMemory(t, conn) })
}

var errFull = errors.New("writer full")

type failWriter struct{ n, limit int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		k := w.limit - w.n
		w.n = w.limit
		return k, errFull
	}
	w.n += len(p)
	return len(p), nil
}

// cancelWriter cancels the export's context once it got after bytes.
type cancelWriter struct {
	n, after int64
	cancel   context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n >= w.after {
		w.cancel()
	}
	return len(p), nil
}

// heapProbe hashes what it is given and, every MiB, collects garbage and
// samples the live heap, so the test keeps no copy of the output and sees
// what the exporter holds while it streams (garbage it leaves behind is the
// collector's business, and would make the figure noise).
type heapProbe struct {
	h       hash.Hash
	n, next int64
	peak    uint64
	writes  int
}

func (p *heapProbe) Write(b []byte) (int, error) {
	p.h.Write(b)
	p.n += int64(len(b))
	p.writes++
	if p.n >= p.next {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		p.peak = max(p.peak, ms.HeapAlloc)
		p.next = p.n + 1<<20
	}
	return len(b), nil
}

// testStreamingMemory exports ~200k rows of ~200 bytes each (40 MB) and
// requires the heap to grow by far less than the output: rows are written as
// they arrive, never collected.
func testStreamingMemory(t *testing.T, conn driver.Conn) {
	const (
		db    = "big"
		nRows = 200_000
		bound = 8 << 20 // live heap growth allowed, whatever the row count
	)
	ctx := context.Background()
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	wantSum := insertBig(t, conn, db, nRows)
	for _, f := range []Format{CSV, JSON, NDJSON} {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		p := &heapProbe{h: sha256.New()}
		n, err := Export(ctx, conn, db, Request{TenantID: "acme", Month: nov, Format: f}, p)
		if err != nil {
			t.Fatal(err)
		}
		growth := int64(p.peak) - int64(base)
		t.Logf("%s: %d rows, %d MB out in %d writes, live heap growth %.1f MB", f, n, p.n>>20, p.writes, float64(growth)/(1<<20))
		if n != nRows {
			t.Fatalf("%s: %d rows, want %d", f, n, nRows)
		}
		if p.n < 4*bound {
			t.Fatalf("%s: only %d bytes out; the test cannot tell streaming from buffering", f, p.n)
		}
		if growth > bound {
			t.Errorf("%s: heap grew by %d MB exporting %d MB; want at most %d MB (rows must stream)", f, growth>>20, p.n>>20, bound>>20)
		}
		if p.writes < 10 {
			t.Errorf("%s: %d writes for %d MB: output is not streamed", f, p.writes, p.n>>20)
		}
	}
	// Stopping half-way (the client went away, or the writer failed) must
	// neither panic nor hang, and says the output is truncated.
	for i := range 3 {
		cctx, cancel := context.WithCancel(ctx)
		w := &cancelWriter{after: int64(i+1) << 20, cancel: cancel}
		n, err := Export(cctx, conn, db, Request{TenantID: "acme", Month: nov, Format: CSV}, w)
		cancel()
		if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) || n == 0 || n == nRows {
			t.Fatalf("canceled after %d bytes: n=%d err=%v, want ErrInterrupted wrapping context.Canceled", w.after, n, err)
		}
		fw := &failWriter{limit: (i + 1) << 20}
		if _, err := Export(ctx, conn, db, Request{TenantID: "acme", Month: nov, Format: JSON}, fw); !errors.Is(err, ErrInterrupted) || !errors.Is(err, errFull) {
			t.Fatalf("writer failing after %d bytes: %v", fw.limit, err)
		}
	}

	// The bytes are right too: the totals add up.
	var sum int64
	var buf bytes.Buffer
	if _, err := Export(ctx, conn, db, Request{TenantID: "acme", Month: nov, Format: NDJSON}, &buf); err != nil {
		t.Fatal(err)
	}
	for _, r := range decodeJSON(t, NDJSON, buf.Bytes()) {
		sum += r.Value
	}
	if sum != wantSum {
		t.Errorf("sum of exported values %d, want %d", sum, wantSum)
	}
}

// insertBig inserts n usage rows with long application ids (two parts, so
// half the keys are summed across parts) and returns the sum of values.
func insertBig(t testing.TB, conn driver.Conn, db string, n int) int64 {
	pad := strings.Repeat("x", 150)
	var sum int64
	rows := make([]usageRow, 0, n)
	for i := range n {
		v := int64(i%1000 + 1)
		rows = append(rows, usageRow{tenant: "acme", service: fmt.Sprintf("svc-%02d", i%7), app: fmt.Sprintf("app-%07d-%s", i, pad), plan: "basic", metric: "hits", region: "eu", t: nov, value: v})
		sum += v
	}
	extra := make([]usageRow, 0, n/2)
	for i := 0; i < n; i += 2 {
		r := rows[i]
		r.value = 1
		extra = append(extra, r)
		sum++
	}
	insertParts(t, conn, db, rows, extra)
	return sum
}

// BenchmarkExport measures a month's export of 30,000 rows (1,000 apps × 3
// metrics × 10 services) end to end: query, transfer, encoding.
func BenchmarkExport(b *testing.B) {
	_, conn := chtest.Start(b)
	ctx := context.Background()
	const db = "bench"
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		b.Fatal(err)
	}
	var rows []usageRow
	for s := range 10 {
		for a := range 1000 {
			for _, m := range []string{"hits", "search", "upload"} {
				rows = append(rows, usageRow{tenant: "acme", service: fmt.Sprintf("svc-%d", s), app: fmt.Sprintf("app-%04d", a), plan: "basic", metric: m, region: "eu", t: nov, value: int64(a + 1)})
			}
		}
	}
	insertParts(b, conn, db, rows)
	for _, f := range []Format{CSV, JSON, NDJSON} {
		b.Run(string(f), func(b *testing.B) {
			var out int64
			b.ReportAllocs()
			for b.Loop() {
				p := &heapProbe{h: sha256.New(), next: 1 << 62}
				n, err := Export(ctx, conn, db, Request{TenantID: "acme", Month: nov, Format: f}, p)
				if err != nil || n != len(rows) {
					b.Fatalf("%d rows, %v", n, err)
				}
				out = p.n
			}
			b.ReportMetric(float64(len(rows)), "rows/op")
			b.SetBytes(out)
		})
	}
}
