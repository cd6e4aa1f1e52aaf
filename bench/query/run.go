package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/query"
)

// runConfig are the flags of the run subcommand.
type runConfig struct {
	url                string
	token              string
	runs               int
	nSeries, nTZ, nTop int
	nTopRanges         int
	nExport            int
	warmup             int
	seed               uint64
}

func (r *runConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&r.url, "url", "", "base URL of a running query API (sluice serve --roles query with the config of `query config`); empty starts one in-process")
	fs.StringVar(&r.token, "token", QueryToken, "bearer token for -url")
	fs.IntVar(&r.runs, "runs", 3, "measurement runs (figures are reported per run and as the median of runs)")
	fs.IntVar(&r.nSeries, "n-series", 1000, "iterations of the series query per run")
	fs.IntVar(&r.nTZ, "n-tz", 200, "iterations of the Asia/Kolkata series per run (0 skips it)")
	fs.IntVar(&r.nTop, "n-top", 300, "iterations of the top-10 query per run")
	fs.IntVar(&r.nTopRanges, "n-top-ranges", 30, "iterations of each top-10 over a range that is not a whole month (hour-aligned, minute-aligned) per run (0 skips them)")
	fs.IntVar(&r.nExport, "n-export", 50, "iterations of the export per run")
	fs.IntVar(&r.warmup, "warmup", 5, "unmeasured iterations of each query before each run")
	fs.Uint64Var(&r.seed, "seed", 1, "seed of the random application choice")
}

// Document is the catalog of the data set: the tenant with its tokens, the
// service with the metric hierarchy, plans and every application, so that
// the query API resolves the ids the rows carry.
func (d Dataset) Document() *catalog.Document {
	svc := catalog.ServiceSpec{ID: Service, Tokens: []string{"bench-service-token"}, AuthMode: catalog.ModeAppID}
	for _, m := range Metrics {
		svc.Metrics = append(svc.Metrics, catalog.MetricSpec{Name: m, Parent: Parent[m]})
	}
	for _, p := range Plans {
		svc.Plans = append(svc.Plans, catalog.PlanSpec{ID: p})
	}
	for a := 0; a < d.Apps; a++ {
		svc.Applications = append(svc.Applications, catalog.AppSpec{ID: AppID(a), Plan: plan(uint64(a))})
	}
	return &catalog.Document{Tenants: []catalog.TenantSpec{{
		ID: Tenant, AdminToken: AdminToken, QueryTokens: []string{QueryToken}, Services: []catalog.ServiceSpec{svc},
	}}}
}

// fixedCatalog publishes one Snapshot forever.
type fixedCatalog struct{ s *catalog.Snapshot }

func (c fixedCatalog) Load() *catalog.Snapshot { return c.s }

// startQueryServer runs the query API in-process on a loopback port.
func startQueryServer(ctx context.Context, ch *clickHouse, db string, d Dataset) (string, error) {
	doc := d.Document()
	if err := doc.Validate(); err != nil {
		return "", fmt.Errorf("bench catalog: %w", err)
	}
	snap, err := catalog.Build(doc, catalog.NewKeyRegistry())
	if err != nil {
		return "", fmt.Errorf("bench catalog: %w", err)
	}
	srv, err := query.New(query.Options{Catalog: fixedCatalog{snap}, Conn: ch.conn, Database: db})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			slog.Error("query server stopped", "err", err)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// bench is one measured query kind.
type bench struct {
	name   string
	target time.Duration
	n      int
	url    func(r *rand.Rand) string
	// check validates one answer against the Go model (run once per run,
	// outside the measured iterations).
	check func(url string, body []byte) error
}

// phase is one run of one bench.
type phase struct {
	p50, p99, max time.Duration
	bytes         int
	failed        int // calls that did not answer 200 (their latency is counted)
	log           logStats
}

func runBench(ctx context.Context, ch *clickHouse, c config, d Dataset) error {
	rc := c.run
	base, token := rc.url, rc.token
	if base == "" {
		var err error
		if base, err = startQueryServer(ctx, ch, c.db, d); err != nil {
			return err
		}
		token = QueryToken
	}
	slog.Info("computing the Go model for answer checks")
	want := d.Expected()
	from, to := d.Month.Format(time.RFC3339), d.End().Format(time.RFC3339)
	benches := []bench{
		{
			name: fmt.Sprintf("series: %d-day hourly series of one random app (hits)", d.Days), target: 50 * time.Millisecond, n: rc.nSeries,
			url: func(r *rand.Rand) string {
				return fmt.Sprintf("%s%s?service_id=%s&metric=hits&app_id=%s&from=%s&to=%s&granularity=hour",
					base, query.PathUsage, Service, AppID(r.IntN(d.Apps)), from, to)
			},
			check: func(u string, body []byte) error { return d.checkSeries(u, body) },
		},
		{
			name: fmt.Sprintf("series, tz=Asia/Kolkata (+05:30, hours are not UTC hours): %d-day hourly series of one random app (no target; shows the minute-table path)", d.Days), n: rc.nTZ,
			url: func(r *rand.Rand) string {
				return fmt.Sprintf("%s%s?service_id=%s&metric=hits&app_id=%s&from=%s&to=%s&granularity=hour&tz=Asia/Kolkata",
					base, query.PathUsage, Service, AppID(r.IntN(d.Apps)), from, to)
			},
			check: func(u string, body []byte) error { return d.checkSeries(u, body) },
		},
		{
			name: fmt.Sprintf("top: top-10 of %d applications over %d days (hits)", d.Apps, d.Days), target: 200 * time.Millisecond, n: rc.nTop,
			url: func(*rand.Rand) string {
				return fmt.Sprintf("%s%s?service_id=%s&metric=hits&from=%s&to=%s&limit=10", base, query.PathTop, Service, from, to)
			},
			check: func(_ string, body []byte) error { return checkTop(body, hitsOf(want)) },
		},
		d.topRange("hour-aligned", base, d.Month.Add(time.Hour), d.End().Add(-time.Hour), rc.nTopRanges),
		d.topRange("minute-aligned", base, d.Month.Add(7*time.Minute), d.End().Add(-7*time.Minute), rc.nTopRanges),
		{
			name: fmt.Sprintf("export: billing export of %s, all %d apps (CSV, body read)", d.Month.Format("2006-01"), d.Apps), target: 2 * time.Second, n: rc.nExport,
			url: func(*rand.Rand) string {
				return fmt.Sprintf("%s%s?month=%s&format=csv", base, query.PathExport, d.Month.Format("2006-01"))
			},
			check: func(_ string, body []byte) error { return d.checkExport(body, want) },
		},
	}

	benches = slices.DeleteFunc(benches, func(b bench) bool { return b.n <= 0 })
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	get := func(u string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("GET %s: reading body: %w", u, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, body)
		}
		return body, nil
	}

	load0 := loadAvg()
	results := make([][]phase, len(benches))
	for run := 0; run < rc.runs; run++ {
		for i, b := range benches {
			r := rand.New(rand.NewPCG(rc.seed, uint64(run*10+i)))
			// Check one answer, then warm up (connection, caches).
			// A failed call (e.g. 503 query_timeout on a busy machine) is
			// retried for the check and counted, not fatal, when measured.
			u := b.url(r)
			var body []byte
			var err error
			for try := 0; try < 3; try++ {
				if body, err = get(u); err == nil {
					break
				}
				slog.Warn("check call failed", "query", b.name, "err", err)
			}
			if err != nil {
				return err
			}
			if err := b.check(u, body); err != nil {
				return fmt.Errorf("%s: wrong answer: %w", b.name, err)
			}
			for w := 0; w < rc.warmup; w++ {
				if _, err := get(b.url(r)); err != nil {
					slog.Warn("warm-up call failed", "query", b.name, "err", err)
				}
			}
			// system.query_log has whole-second times: start and end the
			// measured loop on fresh seconds so that only its queries fall
			// into [start, end].
			start := nextSecond()
			lat := make([]time.Duration, b.n)
			bytes, failed := 0, 0
			for k := range lat {
				u := b.url(r)
				t0 := time.Now()
				body, err := get(u)
				lat[k] = time.Since(t0)
				if err != nil {
					failed++
					slog.Warn("measured call failed", "query", b.name, "after", lat[k], "err", err)
					continue
				}
				bytes = len(body)
			}
			end := time.Now()
			nextSecond()
			slices.Sort(lat)
			ph := phase{p50: pct(lat, 50), p99: pct(lat, 99), max: lat[len(lat)-1], bytes: bytes, failed: failed}
			if ph.log, err = readQueryLog(ctx, ch.conn, c.db, start, end); err != nil {
				slog.Warn("query log unavailable", "err", err)
			}
			results[i] = append(results[i], ph)
			slog.Info("measured", "run", run+1, "query", b.name, "n", b.n, "p50", ph.p50, "p99", ph.p99, "max", ph.max,
				"body_bytes", bytes, "failed", failed, "ch_queries", ph.log.queries, "tables", ph.log.tables, "read_rows_p50", ph.log.readRowsP50,
				"read_rows_max", ph.log.readRowsMax, "ch_ms_p50", ph.log.durP50, "ch_ms_p99", ph.log.durP99, "load", loadAvg())
		}
	}
	load1 := loadAvg()
	printReport(os.Stdout, benches, results, load0, load1)
	return nil
}

// nextSecond sleeps until just after the next whole second and returns that
// second.
func nextSecond() time.Time {
	now := time.Now()
	s := now.Truncate(time.Second).Add(time.Second)
	time.Sleep(s.Sub(now) + 20*time.Millisecond)
	return s
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	k := (len(sorted)*p + 99) / 100
	return sorted[max(k-1, 0)]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func printReport(w io.Writer, benches []bench, results [][]phase, load0, load1 string) {
	fmt.Fprintf(w, "\nload average (1 5 15 min) at start: %s, at end: %s\n\n", load0, load1)
	fmt.Fprintln(w, "| query | iterations × runs | p50 (median of runs) | p99 (median of runs) | p99 per run | target (p99) | met | ClickHouse: tables read | rows read per query | ClickHouse time p50 / p99 | body | failed calls |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for i, b := range benches {
		var p50s, p99s []time.Duration
		var per []string
		failed := 0
		for _, ph := range results[i] {
			failed += ph.failed
			p50s = append(p50s, ph.p50)
			p99s = append(p99s, ph.p99)
			per = append(per, ms(ph.p99))
		}
		m99 := median(p99s)
		met, target := "yes", "≤ "+ms(b.target)
		switch {
		case b.target == 0:
			met, target = "–", "none"
		case m99 > b.target || failed > 0:
			met = "**no**"
		}
		last := results[i][len(results[i])-1]
		fmt.Fprintf(w, "| %s | %d × %d | %s | %s | %s | %s | %s | %s | %s | %d / %d ms | %d B | %d |\n",
			b.name, b.n, len(results[i]), ms(median(p50s)), ms(m99), strings.Join(per, " · "), target, met,
			strings.Join(last.log.tables, ", "), rowsRange(last.log), last.log.durP50, last.log.durP99, last.bytes, failed)
		if last.log.queries != b.n {
			fmt.Fprintf(w, "\n(query log of the last run: %d ClickHouse queries for %d requests)\n", last.log.queries, b.n)
		}
	}
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" }

func rowsRange(l logStats) string {
	if l.queries == 0 {
		return "n/a"
	}
	if l.readRowsP50 == l.readRowsMax {
		return strconv.FormatUint(l.readRowsP50, 10)
	}
	return fmt.Sprintf("%d (max %d)", l.readRowsP50, l.readRowsMax)
}

// logStats summarize system.query_log for the queries of one phase.
type logStats struct {
	queries                  int
	tables                   []string
	readRowsP50, readRowsMax uint64
	durP50, durP99           uint64 // query_duration_ms
}

var tableRE = regexp.MustCompile(`\b(usage_(?:minute|hour|day|month))\b`)

// readQueryLog reads the finished queries on db's rollup tables between start
// and end from system.query_log (the scratch server enables it; on another
// server it may be off, then the figures are missing).
func readQueryLog(ctx context.Context, conn driver.Conn, db string, start, end time.Time) (logStats, error) {
	var st logStats
	if err := conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		return st, err
	}
	rows, err := conn.Query(ctx, `SELECT query, read_rows, query_duration_ms FROM system.query_log
WHERE type = 2 AND query_start_time >= ? AND event_time <= ? AND query LIKE ? AND query NOT LIKE '%system.%'`,
		start.UTC(), end.UTC().Truncate(time.Second), "%"+db+".usage_%")
	if err != nil {
		return st, err
	}
	defer rows.Close()
	tables := map[string]bool{}
	var rr, dur []uint64
	for rows.Next() {
		var q string
		var r, d uint64
		if err := rows.Scan(&q, &r, &d); err != nil {
			return st, err
		}
		for _, m := range tableRE.FindAllStringSubmatch(q, -1) {
			tables[m[1]] = true
		}
		rr, dur = append(rr, r), append(dur, d)
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	st.queries = len(rr)
	for t := range tables {
		st.tables = append(st.tables, t)
	}
	sort.Strings(st.tables)
	if len(rr) > 0 {
		slices.Sort(rr)
		slices.Sort(dur)
		st.readRowsP50, st.readRowsMax = rr[len(rr)/2], rr[len(rr)-1]
		st.durP50, st.durP99 = dur[len(dur)/2], dur[(len(dur)*99+99)/100-1]
	}
	return st, nil
}

// checkSeries compares an hourly series of one app with the Go model: every
// minute of the data set is summed into the hour (of the query's time zone)
// it falls in; the answer must have exactly those sums, zeros elsewhere.
func (d Dataset) checkSeries(u string, body []byte) error {
	var ans struct {
		Series []struct {
			Points []struct {
				T     string `json:"t"`
				Value int64  `json:"value"`
			} `json:"points"`
			Total int64 `json:"total"`
		} `json:"series"`
		Total int64 `json:"total"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return err
	}
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	a, err := strconv.Atoi(strings.TrimPrefix(pu.Query().Get("app_id"), "app-"))
	if err != nil {
		return fmt.Errorf("app of %s: %w", u, err)
	}
	loc := time.UTC
	if tz := pu.Query().Get("tz"); tz != "" {
		if loc, err = time.LoadLocation(tz); err != nil {
			return err
		}
	}
	want := map[int64]int64{}
	var total int64
	for m := 0; m < d.Minutes(); m++ {
		v := values(gIndex(uint64(m), uint64(a), uint64(d.Apps)), uint64(a)).hits
		t := d.Month.Add(time.Duration(m) * time.Minute).In(loc)
		h := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc).Unix()
		want[h] += v
		total += v
	}
	if len(ans.Series) != 1 {
		return fmt.Errorf("%d series, want 1: %.200s", len(ans.Series), body)
	}
	seen := 0
	for i, p := range ans.Series[0].Points {
		t, err := time.Parse(time.RFC3339, p.T)
		if err != nil {
			return fmt.Errorf("point %d: %w", i, err)
		}
		w, ok := want[t.Unix()]
		if ok {
			seen++
		}
		if p.Value != w {
			return fmt.Errorf("point %d (%s): %d, want %d", i, p.T, p.Value, w)
		}
	}
	if seen != len(want) {
		return fmt.Errorf("%d points, %d of the %d hours with usage", len(ans.Series[0].Points), seen, len(want))
	}
	if ans.Total != total || ans.Series[0].Total != total {
		return fmt.Errorf("total %d (series %d), want %d", ans.Total, ans.Series[0].Total, total)
	}
	return nil
}

// topRange is a top-10 over [from, to), a range a dashboard might ask for
// that is not whole UTC months ("the last 30 days"): whole days in the
// middle and hours (and minutes, unless hour-aligned) at both ends, so the
// query API reads more than usage_month.
func (d Dataset) topRange(kind, base string, from, to time.Time, n int) bench {
	var want []int64
	return bench{
		name: fmt.Sprintf("top, %s range %s – %s: top-10 of %d applications (hits)", kind,
			from.Format("01-02T15:04Z"), to.Format("01-02T15:04Z"), d.Apps),
		target: 200 * time.Millisecond, n: n,
		url: func(*rand.Rand) string {
			return fmt.Sprintf("%s%s?service_id=%s&metric=hits&from=%s&to=%s&limit=10", base, query.PathTop, Service,
				from.Format(time.RFC3339), to.Format(time.RFC3339))
		},
		check: func(_ string, body []byte) error {
			if want == nil {
				want = d.hitsBetween(int(from.Sub(d.Month)/time.Minute), int(to.Sub(d.Month)/time.Minute))
			}
			return checkTop(body, want)
		},
	}
}

// hitsOf returns every app's hits total.
func hitsOf(t Totals) []int64 {
	h := make([]int64, len(t.Usage))
	for a, u := range t.Usage {
		h[a] = u[0]
	}
	return h
}

// hitsBetween returns every app's hits over minutes [m0, m1) of the data set.
func (d Dataset) hitsBetween(m0, m1 int) []int64 {
	h := make([]int64, d.Apps)
	apps := uint64(d.Apps)
	for m := uint64(m0); m < uint64(m1); m++ {
		for a := uint64(0); a < apps; a++ {
			h[a] += values(gIndex(m, a, apps), a).hits
		}
	}
	return h
}

// checkTop compares a top-10 with the Go model's hits per app (descending,
// ties by app_id).
func checkTop(body []byte, hits []int64) error {
	var ans struct {
		Apps []struct {
			AppID string `json:"app_id"`
			Value int64  `json:"value"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return err
	}
	idx := make([]int, len(hits))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool {
		a, b := hits[idx[i]], hits[idx[j]]
		if a != b {
			return a > b
		}
		return AppID(idx[i]) < AppID(idx[j])
	})
	if len(ans.Apps) != min(10, len(idx)) {
		return fmt.Errorf("%d apps, want 10", len(ans.Apps))
	}
	for i, got := range ans.Apps {
		if got.AppID != AppID(idx[i]) || got.Value != hits[idx[i]] {
			return fmt.Errorf("rank %d: %s %d, want %s %d", i+1, got.AppID, got.Value, AppID(idx[i]), hits[idx[i]])
		}
	}
	return nil
}

// checkExport parses the CSV and compares every row with the Go model.
func (d Dataset) checkExport(body []byte, want Totals) error {
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		return err
	}
	if len(recs) != 1+d.Apps*len(Metrics) {
		return fmt.Errorf("%d CSV records, want header + %d", len(recs), d.Apps*len(Metrics))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"month", "tenant_id", "service_id", "app_id", "plan_id", "metric", "value"} {
		if _, ok := col[h]; !ok {
			return fmt.Errorf("CSV header %v lacks %s", recs[0], h)
		}
	}
	seen := map[[2]string]bool{}
	var errs []error
	for _, r := range recs[1:] {
		app, metric := r[col["app_id"]], r[col["metric"]]
		a, err := strconv.Atoi(strings.TrimPrefix(app, "app-"))
		mi := slices.Index(Metrics, metric)
		if err != nil || a < 0 || a >= d.Apps || mi < 0 || seen[[2]string{app, metric}] {
			errs = append(errs, fmt.Errorf("unexpected row %v", r))
			continue
		}
		seen[[2]string{app, metric}] = true
		v, err := strconv.ParseInt(r[col["value"]], 10, 64)
		if err != nil || v != want.Usage[a][mi] || r[col["tenant_id"]] != Tenant || r[col["service_id"]] != Service || r[col["plan_id"]] != plan(uint64(a)) {
			errs = append(errs, fmt.Errorf("row %v: want value %d plan %s", r, want.Usage[a][mi], plan(uint64(a))))
		}
		if len(errs) > 5 {
			break
		}
	}
	return errors.Join(errs...)
}
