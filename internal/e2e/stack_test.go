package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal"
)

// sluiceBin is the binary TestMain built (or $SLUICE_E2E_BIN); empty
// under -short.
var sluiceBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	if bin := os.Getenv("SLUICE_E2E_BIN"); bin != "" {
		// A prebuilt binary, e.g. of another commit.
		sluiceBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	sluiceBin, err = Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The configuration every test runs with: one tenant, one service in app_id
// mode, a metric hierarchy two levels deep (suggest → search → hits, images →
// hits) and a root metric (bytes); plan "big" has limits on every calendar
// period, high enough that load never meets them; plan "capped" has small
// eternity limits for the enforcement checks.
const (
	tenantID     = "e2e"
	serviceID    = "svc"
	serviceToken = "st-e2e-token"
)

var parents = map[string]string{"search": "hits", "suggest": "search", "images": "hits"}

// metrics are the service's metric names.
var metrics = []string{"hits", "search", "suggest", "images", "bytes"}

const configYAML = `tenants:
  - id: e2e
    admin_token: adm-e2e-token
    services:
      - id: svc
        tokens: [st-e2e-token]
        auth_mode: app_id
        metrics:
          - name: hits
          - {name: search, parent: hits}
          - {name: suggest, parent: search}
          - {name: images, parent: hits}
          - name: bytes
        plans:
          - id: big
            limits:
              - {metric: hits, period: minute, max: 1000000000}
              - {metric: hits, period: hour, max: 1000000000}
              - {metric: search, period: day, max: 1000000000}
              - {metric: images, period: week, max: 1000000000}
              - {metric: hits, period: month, max: 1000000000}
              - {metric: bytes, period: year, max: 1000000000}
              - {metric: suggest, period: eternity, max: 1000000000}
          - id: capped
            limits:
              - {metric: hits, period: minute, max: 100000}
              - {metric: hits, period: month, max: 100000}
              - {metric: hits, period: eternity, max: 50}
              - {metric: search, period: eternity, max: 20}
        applications:
          - {id: a1, plan: big}
          - {id: a2, plan: big}
          - {id: a3, plan: big}
          - {id: a4, plan: big}
          - {id: a5, plan: big}
          - {id: cap1, plan: capped}
          - {id: cap2, plan: capped}
`

// loadApps are the applications the load generators use.
var loadApps = []string{"a1", "a2", "a3", "a4", "a5"}

// stack is one pipeline: a kfake broker, a ClickHouse server, an API process
// and a rollup process, each its own process (or, for the broker, its own
// listener) so that each can be stopped or killed alone.
type stack struct {
	t       *testing.T
	dir     string
	broker  *Broker
	ch      *chlocal.Server
	cfg     string
	listen  string
	logPath string
	log     *os.File
	api     *Node
	rollup  *Node
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds sluice, starts kfake, ClickHouse and sluice processes")
	}
}

// newStack starts everything and waits until the API is ready and the rollup
// consumer runs.
func newStack(t *testing.T) *stack {
	t.Helper()
	dir := t.TempDir()
	s := &stack{t: t, dir: dir, logPath: filepath.Join(dir, "processes.log")}
	var err error
	if s.log, err = os.Create(s.logPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tail of the sluice processes' log:\n%s", TailFile(s.logPath, 8000))
		}
		s.log.Close()
	})
	s.cfg = filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(s.cfg, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.broker, err = StartBroker(filepath.Join(dir, "kafka"), 12); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.broker.Stop)
	s.ch, err = chlocal.Start(context.Background(), chlocal.Options{Dir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		t.Fatalf("start ClickHouse (needs /usr/bin/clickhouse-server: apt-get install -y clickhouse-server clickhouse-client): %v", err)
	}
	t.Cleanup(func() { s.ch.Stop() })
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.listen = fmt.Sprintf("127.0.0.1:%d", port)
	// The API first: it migrates ClickHouse and writes the config topic
	// before the rollup process reads it.
	s.startAPI()
	s.startRollup()
	return s
}

func (s *stack) node(roles, name string, cfg string) NodeOptions {
	return NodeOptions{
		Bin:        sluiceBin,
		Roles:      roles,
		Brokers:    s.broker.Addr(),
		ClickHouse: s.ch.Addr(),
		Listen:     s.listen,
		DataDir:    filepath.Join(s.dir, "data-"+name),
		Name:       name,
		Config:     cfg,
		Log:        s.log,
	}
}

// startAPI starts (or restarts, on the same data dir and port) the API
// process and waits until /status is ready; it returns how long that took.
func (s *stack) startAPI() time.Duration {
	s.t.Helper()
	start := time.Now()
	n, err := StartNode(s.node("api", "api", s.cfg))
	if err != nil {
		s.t.Fatal(err)
	}
	s.api = n
	s.t.Cleanup(func() {
		if err := n.Stop(30 * time.Second); err != nil {
			select {
			case <-n.Done():
			default:
				s.t.Errorf("api: %v", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		s.t.Fatal(err)
	}
	return time.Since(start)
}

// startRollup starts (or restarts, with the same static member id) the
// rollup process and waits until its consumer runs.
func (s *stack) startRollup() {
	s.t.Helper()
	o := s.node("rollup", "rollup", "")
	o.Listen = ""
	n, err := StartNode(o)
	if err != nil {
		s.t.Fatal(err)
	}
	s.rollup = n
	s.t.Cleanup(func() { n.Stop(30 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		s.t.Fatal(err)
	}
}

// restartClickHouse starts ClickHouse again on the same directory and ports.
func (s *stack) restartClickHouse() {
	s.t.Helper()
	ch, err := chlocal.Start(context.Background(), chlocal.Options{Dir: s.ch.Dir(), TCPPort: s.ch.TCPPort(), HTTPPort: s.ch.HTTPPort()})
	if err != nil {
		s.t.Fatalf("restart ClickHouse: %v", err)
	}
	s.ch = ch
	s.t.Cleanup(func() { ch.Stop() })
}

// settle waits until every event the API accepted is in Kafka and every
// Kafka record is in ClickHouse's rollups.
func (s *stack) settle(timeout time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if err := WaitFlushed(ctx, s.listen); err != nil {
		s.t.Fatal(err)
	}
	if err := WaitRolledUp(ctx, s.broker, s.ch.Addr()); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("pipeline settled in %v", time.Since(start).Round(time.Millisecond))
}

// minuteKey identifies one rollup row group: app, metric, minute (unix
// seconds / 60).
type minuteKey struct {
	app, metric string
	minute      int64
}

type appMetric struct{ app, metric string }

// chEach runs query on the stack's ClickHouse and calls scan for every row.
func (s *stack) chEach(query string, args []any, scan func(driver.Rows) error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chschema.Connect(ctx, chschema.ConnOptions{Addr: s.ch.Addr(), User: "default"})
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		s.t.Fatalf("query %q: %v", query, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
}

// chMinutes reads usage_minute summed per (app, metric, minute).
func (s *stack) chMinutes() map[minuteKey]int64 {
	s.t.Helper()
	out := make(map[minuteKey]int64)
	s.chEach(`SELECT app_id, metric, toUInt32(t), sum(value) FROM sluice.usage_minute
WHERE tenant_id = ? AND metric != '' GROUP BY app_id, metric, t`, []any{tenantID}, func(r driver.Rows) error {
		var app, metric string
		var t uint32
		var v int64
		if err := r.Scan(&app, &metric, &t, &v); err != nil {
			return err
		}
		out[minuteKey{app, metric, int64(t) / 60}] += v
		return nil
	})
	return out
}

// chTotals reads a rollup table summed per (app, metric).
func (s *stack) chTotals(table string) map[appMetric]int64 {
	s.t.Helper()
	out := make(map[appMetric]int64)
	s.chEach(`SELECT app_id, metric, sum(value) FROM sluice.`+table+`
WHERE tenant_id = ? AND metric != '' GROUP BY app_id, metric`, []any{tenantID}, func(r driver.Rows) error {
		var app, metric string
		var v int64
		if err := r.Scan(&app, &metric, &v); err != nil {
			return err
		}
		out[appMetric{app, metric}] = v
		return nil
	})
	return out
}

// chWindow sums usage_minute for one app and metric over [from, to) (unix
// seconds; clamped to DateTime's range).
func (s *stack) chWindow(app, metric string, from, to int64) int64 {
	s.t.Helper()
	from, to = max(from, 0), min(to, 1<<32-1) // DateTime is a uint32
	var v int64
	s.chEach(`SELECT sum(value) FROM sluice.usage_minute
WHERE tenant_id = ? AND app_id = ? AND metric = ? AND toUInt32(t) >= ? AND toUInt32(t) < ?`,
		[]any{tenantID, app, metric, uint32(from), uint32(to)}, func(r driver.Rows) error { return r.Scan(&v) })
	return v
}

// checkClickHouse compares the rollups with the ledger: per (app, metric,
// minute) the sum must lie within the ledger's bounds (equal to the
// acknowledged usage when nothing is uncertain), per (app, metric) the total
// likewise, and the hour, day and month rollups must hold the same totals as
// the minute rollup.
func (s *stack) checkClickHouse(l *ledger) {
	s.t.Helper()
	got := s.chMinutes()
	keys := make(map[minuteKey]bool)
	for k := range got {
		keys[k] = true
	}
	for k := range l.certain {
		keys[k] = true
	}
	for _, c := range l.loose {
		for m := c.lo / 60000; m <= c.hi/60000; m++ {
			for _, u := range c.usage {
				for _, anc := range lineage(u.metric) {
					keys[minuteKey{c.app, anc, m}] = true
				}
			}
		}
	}
	bad := 0
	for k := range keys {
		lo, hi := l.bounds(k.app, k.metric, k.minute, k.minute+1)
		if g := got[k]; g < lo || g > hi {
			bad++
			if bad <= 20 {
				s.t.Errorf("usage_minute %s/%s at %s: ClickHouse has %d, acknowledged %d (at most %d with uncertain calls)",
					k.app, k.metric, time.Unix(k.minute*60, 0).UTC().Format("15:04"), g, lo, hi)
			}
		}
	}
	if bad > 20 {
		s.t.Errorf("... %d (app, metric, minute) groups differ in all", bad)
	}
	minuteTotals := make(map[appMetric]int64)
	for k, v := range got {
		minuteTotals[appMetric{k.app, k.metric}] += v
	}
	for _, app := range loadAppsAndCapped() {
		for _, m := range metrics {
			lo, hi := l.bounds(app, m, -1<<40, 1<<40)
			if g := minuteTotals[appMetric{app, m}]; g < lo || g > hi {
				s.t.Errorf("total %s/%s: ClickHouse has %d, acknowledged %d (at most %d with uncertain calls): off by %+d",
					app, m, g, lo, hi, g-lo)
			}
		}
	}
	// The roots' totals (hits takes its descendants' usage) are all the
	// usage there is.
	var roots int64
	for k, v := range minuteTotals {
		if _, child := parents[k.metric]; !child {
			roots += v
		}
	}
	s.t.Logf("ClickHouse holds %d units in root metrics; acknowledged %d, unknown outcome %d", roots, l.ackedUnits, l.unknownUnits)
	if roots < l.ackedUnits || roots > l.ackedUnits+l.unknownUnits {
		s.t.Errorf("ClickHouse holds %d units, acknowledged %d (+%d unknown): %+d", roots, l.ackedUnits, l.unknownUnits, roots-l.ackedUnits)
	}
	for _, table := range []string{"usage_hour", "usage_day", "usage_month"} {
		tot := s.chTotals(table)
		for k, v := range minuteTotals {
			if tot[k] != v {
				s.t.Errorf("%s total %s/%s = %d, usage_minute has %d", table, k.app, k.metric, tot[k], v)
			}
		}
		for k, v := range tot {
			if _, ok := minuteTotals[k]; !ok && v != 0 {
				s.t.Errorf("%s total %s/%s = %d, usage_minute has none", table, k.app, k.metric, v)
			}
		}
	}
}

func loadAppsAndCapped() []string { return append(append([]string(nil), loadApps...), "cap1", "cap2") }

// lineage returns the metric and its ancestors, nearest first.
func lineage(m string) []string {
	out := []string{m}
	for p, ok := parents[m]; ok; p, ok = parents[p] {
		out = append(out, p)
	}
	return out
}
