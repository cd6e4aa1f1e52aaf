package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

// TestExportNeverWraps exports totals past the largest int64, stored the
// ways the rollup can leave them in ClickHouse: several parts (the query's
// sum wraps), parts merged into one negative row, several regions or plans
// of one export row: every such
// total is exported as 9223372036854775807, none negative, and the totals
// that fit stay exact. Each case has its own application.
func TestExportNeverWraps(t *testing.T) {
	_, conn := chtest.Start(t)
	ctx := context.Background()
	const db = "sluice_billing_overflow"
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	const big = math.MaxInt64
	row := func(app, plan, region string, v int64) usageRow {
		return usageRow{tenant: "acme", service: "s", app: app, plan: plan, metric: "hits", region: region, t: nov, value: v}
	}
	// Parts are inserted in this order; OPTIMIZE merges them afterwards.
	parts := [][]usageRow{
		{row("two-parts", "p", "eu", big), row("regions", "p", "eu", big), row("exact", "p", "eu", big-7), row("plans", "p", "eu", big)},
		{row("two-parts", "p", "eu", big), row("regions", "p", "us", 1), row("exact", "p", "us", 7), row("plans", "q", "eu", big)},
		// The rollup stops a key at MaxInt64 with its large rows (see
		// ingest/rollup); small rows may still follow it.
		{row("then-small", "p", "eu", big)},
		{row("then-small", "p", "eu", 3)},
		{row("then-small", "p", "eu", 5), row("small", "p", "eu", 5)},
	}
	insertParts(t, conn, db, parts...)
	want := map[[2]string]int64{
		{"two-parts", "p"}: big, {"then-small", "p"}: big, {"regions", "p"}: big,
		{"exact", "p"}: big, {"plans", "p"}: big, {"plans", "q"}: big, {"small", "p"}: 5,
	}
	for _, merged := range []bool{false, true} {
		if merged {
			if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".usage_month FINAL"); err != nil {
				t.Fatal(err)
			}
		}
		t.Run(map[bool]string{false: "unmerged", true: "merged"}[merged], func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := Export(ctx, conn, db, Request{TenantID: "acme", Month: nov, Format: JSON}, &buf); err != nil {
				t.Fatal(err)
			}
			var rows []Row
			if err := json.Unmarshal(buf.Bytes(), &rows); err != nil {
				t.Fatalf("%v: %s", err, buf.Bytes())
			}
			got := map[[2]string]int64{}
			for _, r := range rows {
				if r.Value < 0 {
					t.Errorf("exported a negative total: %+v", r)
				}
				got[[2]string{r.AppID, r.PlanID}] = r.Value
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%v: exported %d, want %d", k, got[k], v)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d rows, want %d: %v", len(got), len(want), got)
			}
		})
	}
}
