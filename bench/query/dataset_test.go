package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

// TestIntHash64MatchesClickHouse: the Go model recomputes the generator's
// values, so its hash must be the server's, bit for bit.
func TestIntHash64MatchesClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ClickHouse")
	}
	_, conn := chtest.Start(t)
	for _, x := range []uint64{0, 1, 3, 1000, 12345678901, 1<<63 + 5} {
		var got uint64
		if err := conn.QueryRow(context.Background(), "SELECT intHash64(toUInt64(?))", x).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := intHash64(x); got != want {
			t.Errorf("intHash64(%d): ClickHouse %d, Go %d", x, got, want)
		}
	}
}

// TestGenerateVerify generates a small data set, verifies it, then damages
// each table in turn and expects verify to notice.
func TestGenerateVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ClickHouse")
	}
	_, conn := chtest.Start(t)
	ctx := context.Background()
	d := Dataset{Month: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Days: 2, Apps: 7}
	const db = "bench_test"
	if err := d.generate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := d.verify(ctx, conn, db); err != nil {
		t.Fatalf("fresh data set: %v", err)
	}
	damage := []struct{ name, sql, want string }{
		{"hour row added", `INSERT INTO bench_test.usage_hour (written, tenant_id, service_id, app_id, metric, t, value)
			SELECT toDate('2026-02-01'), 'bench', 'svc-bench', 'app-3', 'search', toDateTime('2026-02-01 05:00:00'), toInt64(1)`, "usage_hour"},
		{"day denial added", `INSERT INTO bench_test.usage_day (written, tenant_id, service_id, app_id, reason, t, value)
			SELECT toDate('2026-02-02'), 'bench', 'svc-bench', 'app-1', 'limits_exceeded', toDateTime('2026-02-02 00:00:00'), toInt64(2)`, "usage_day"},
		{"month moved between apps", `INSERT INTO bench_test.usage_month (written, tenant_id, service_id, app_id, metric, t, value)
			SELECT toDate('2026-02-01'), 'bench', 'svc-bench', if(number = 0, 'app-1', 'app-2'), 'hits',
			       toDateTime('2026-02-01 00:00:00'), if(number = 0, toInt64(5), toInt64(-5)) FROM system.numbers LIMIT 2`, "usage_month app-1"},
		{"minute row added", `INSERT INTO bench_test.usage_minute (written, tenant_id, service_id, app_id, metric, t, value)
			SELECT toDate('2026-02-01'), 'bench', 'svc-bench', 'app-0', 'upload', toDateTime('2026-02-01 00:00:00'), toInt64(1)`, "Go model"},
	}
	for _, c := range damage {
		t.Run(c.name, func(t *testing.T) {
			if err := d.generate(ctx, conn, db); err != nil {
				t.Fatal(err)
			}
			// INSERT ... SELECT: a VALUES insert over the native protocol
			// waits for a data block the driver does not send on 18.16.
			if err := conn.Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			err := d.verify(ctx, conn, db)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("verify after damage: %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestDocumentValid(t *testing.T) {
	d := Dataset{Month: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), Days: 30, Apps: 1000}
	doc := d.Document()
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.Build(doc, catalog.NewKeyRegistry())
	if err != nil {
		t.Fatal(err)
	}
	svc := snap.Services[Service]
	if svc.Apps().Len() != 1000 || svc.Tenant.ID != Tenant || snap.QueryTokens[QueryToken] == nil {
		t.Fatalf("catalog: %d apps, tenant %s", svc.Apps().Len(), svc.Tenant.ID)
	}
}

func TestCheck(t *testing.T) {
	sep := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		d  Dataset
		ok bool
	}{
		{Dataset{sep, 30, 1000}, true},
		{Dataset{sep, 31, 1000}, false},
		{Dataset{sep, 0, 1000}, false},
		{Dataset{sep, 30, 0}, false},
		{Dataset{sep.Add(time.Hour), 30, 10}, false},
	} {
		if err := c.d.Check(); (err == nil) != c.ok {
			t.Errorf("Check(%+v) = %v", c.d, err)
		}
	}
}

func TestPct(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 200; i++ {
		s = append(s, time.Duration(i))
	}
	if pct(s, 50) != 100 || pct(s, 99) != 198 || pct(s[:1], 99) != 1 {
		t.Fatalf("pct: %v %v %v", pct(s, 50), pct(s, 99), pct(s[:1], 99))
	}
}
