package rollup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

const testDB = "sluice_test"

// startCH starts a ClickHouse server for the test and migrates testDB.
func startCH(t testing.TB) (*chlocal.Server, driver.Conn) {
	t.Helper()
	s, conn := chtest.Start(t)
	if err := chschema.Migrate(context.Background(), conn, testDB); err != nil {
		t.Fatal(err)
	}
	return s, conn
}

// testHierarchy: search and upload are children of hits.
var testHierarchy = MapHierarchy{"search": "hits", "upload": "hits"}

// sumKey is what the tests compare: (app, metric, bucket start).
type sumKey struct {
	app, metric string
	t           int64
}

// model is the independent reference: usage per (app, metric, minute) with
// the hierarchy applied, and denials per (app, reason, minute).
type model struct {
	usage   map[sumKey]int64
	denials map[sumKey]int64
	sets    int
	// events and the sum of every usage value as sent, for events_raw
	events, rawSum int64
	ids            map[[16]byte]bool
	lastSet        map[[2]string][2]int64 // (app, metric) -> (ts ms, value)
}

func newModel() *model { return &model{usage: map[sumKey]int64{}, denials: map[sumKey]int64{}} }

func (m *model) add(e *event.Event) {
	m.events++
	for _, u := range e.Usage {
		m.rawSum += u.Value
	}
	if m.ids == nil {
		m.ids = map[[16]byte]bool{}
	}
	m.ids[e.ID] = true
	min := e.TS / 60000 * 60
	if e.Kind == event.KindDenied {
		m.denials[sumKey{e.AppID, e.Reason, min}]++
		return
	}
	for _, u := range e.Usage {
		if u.Set {
			m.sets++
			if m.lastSet == nil {
				m.lastSet = map[[2]string][2]int64{}
			}
			k := [2]string{e.AppID, u.Metric}
			if cur, ok := m.lastSet[k]; !ok || e.TS > cur[0] {
				m.lastSet[k] = [2]int64{e.TS, u.Value}
			}
			continue
		}
		m.usage[sumKey{e.AppID, u.Metric, min}] += u.Value
		if p, ok := testHierarchy[u.Metric]; ok {
			m.usage[sumKey{e.AppID, p, min}] += u.Value
		}
	}
}

// gen makes deterministic events over a few apps, metrics and minutes.
type gen struct {
	r   *rand.Rand
	ids *event.IDGenerator
	t0  int64
}

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, 7)), ids: event.NewIDGenerator(),
		t0: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()}
}

func (g *gen) next(e *event.Event) {
	*e = event.Event{
		ID: g.ids.Next(), Kind: event.KindAuthrep,
		TS:       g.t0 + g.r.Int64N(3*3600*1000), // 3 hours: several minutes and hours
		TenantID: "t1", ServiceID: "s1", AppID: fmt.Sprintf("app%d", g.r.IntN(20)),
		PlanID: "basic", Region: "eu", Node: "n1", Code: 200,
		Usage: e.Usage[:0],
	}
	e.Received = e.TS + 5
	switch x := g.r.IntN(100); {
	case x < 5:
		e.Kind, e.Reason = event.KindDenied, []string{"limits_exceeded", "user_key_invalid"}[g.r.IntN(2)]
		e.Usage = append(e.Usage, event.Usage{Metric: "hits", Value: 1})
	case x < 6:
		e.Kind = event.KindReport
		e.Usage = append(e.Usage, event.Usage{Metric: "search", Value: 100, Set: true})
	default:
		e.Usage = append(e.Usage, event.Usage{Metric: []string{"hits", "search", "upload"}[g.r.IntN(3)], Value: 1 + g.r.Int64N(5)})
		if g.r.IntN(4) == 0 {
			e.Usage = append(e.Usage, event.Usage{Metric: "bytes", Value: g.r.Int64N(1000)})
		}
	}
}

// chSums reads usage per (app, metric, bucket) and denials per (app, reason,
// bucket) from one rollup table, the way queries must: sum + GROUP BY.
func chSums(t testing.TB, conn driver.Conn, table string) (usage, denials map[sumKey]int64) {
	t.Helper()
	ctx := context.Background()
	usage, denials = map[sumKey]int64{}, map[sumKey]int64{}
	rows, err := conn.Query(ctx, "SELECT app_id, metric, reason, toUnixTimestamp(t), sum(value) FROM "+testDB+"."+table+
		" WHERE tenant_id = 't1' GROUP BY app_id, metric, reason, t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var app, metric, reason string
		var ts uint32
		var v int64
		if err := rows.Scan(&app, &metric, &reason, &ts, &v); err != nil {
			t.Fatal(err)
		}
		if metric != "" {
			usage[sumKey{app, metric, int64(ts)}] += v
		} else {
			denials[sumKey{app, reason, int64(ts)}] += v
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return usage, denials
}

// checkRaw compares events_raw with the model: one row per event, every id
// once, values as sent.
func checkRaw(t testing.TB, conn driver.Conn, m *model) {
	t.Helper()
	var n, ids uint64
	var sum int64
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(id), sum(arraySum(values)) FROM "+testDB+".events_raw WHERE tenant_id = 't1'").Scan(&n, &ids, &sum); err != nil {
		t.Fatal(err)
	}
	if int64(n) != m.events || int64(ids) != int64(len(m.ids)) || sum != m.rawSum {
		t.Errorf("events_raw: %d rows, %d ids, sum %d; want %d, %d, %d", n, ids, sum, m.events, len(m.ids), m.rawSum)
	}
}

// regrainModel folds minute sums into a coarser grain.
func regrainModel(m map[sumKey]int64, g grain) map[sumKey]int64 {
	out := map[sumKey]int64{}
	for k, v := range m {
		k.t = g(k.t)
		out[k] += v
	}
	return out
}

// checkTables compares every rollup table with the model.
func checkTables(t testing.TB, conn driver.Conn, m *model) {
	t.Helper()
	for _, tc := range []struct {
		table string
		g     grain
	}{
		{chschema.UsageMinute, func(x int64) int64 { return x }},
		{chschema.UsageHour, hourOf},
		{chschema.UsageDay, dayOf},
		{chschema.UsageMonth, monthOf},
	} {
		usage, denials := chSums(t, conn, tc.table)
		diff(t, tc.table+" usage", regrainModel(m.usage, tc.g), usage)
		diff(t, tc.table+" denials", regrainModel(m.denials, tc.g), denials)
	}
}

func diff(t testing.TB, what string, want, got map[sumKey]int64) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if got[k] != w {
			if bad < 5 {
				t.Errorf("%s %v: got %d, want %d", what, k, got[k], w)
			}
			bad++
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && g != 0 {
			if bad < 5 {
				t.Errorf("%s %v: got %d, want nothing", what, k, g)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d keys differ", what, bad, len(want))
	}
}
