package query

import (
	"context"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
)

// MaxTopCandidates bounds the applications whose edge minutes the candidate
// top-N reads (see topApps); with more, it falls back to one query over the
// whole range.
const MaxTopCandidates = 2000

// topPath says how topApps computed an answer (for tests and debug logs).
type topPath uint8

const (
	// topWhole: the range is whole UTC hours; one query over day/hour rows.
	topWhole topPath = iota
	// topCandidates: ragged ends, bounded by usage_hour; edge minutes read
	// for the candidates only.
	topCandidates
	// topFallback: ragged ends read for every application in one query
	// (no whole hour inside the range, or too many candidates).
	topFallback
)

// topApps returns the limit applications with the largest usage under f over
// the one bucket b = [from, to), descending, ties by app_id: exactly what one
// query summing every table of planFor(b) per application answers.
//
// That query is slow when from or to is not a whole UTC hour ("the last 30
// days" ending now): the minutes at the ends come from usage_minute with a
// filter on t alone, which its sort key (…, metric, app_id, t) cannot narrow,
// so it reads every minute row of the metric. topApps instead bounds each
// application's total between two cheap sums and reads minutes only for the
// applications that can still be in the answer:
//
//  1. lo(a) = the sum over the whole-hour part [ceil(from), floor(to)) of the
//     range, from the day and hour tables as planFor splits it. Usage values
//     are never negative (the API accepts none, and set values "#N" are not
//     summed into the rollups), so exact(a) >= lo(a).
//  2. hi(a) = lo(a) + the sum from usage_hour over the (at most two) partial
//     hours holding the ragged ends. They contain the edge minutes, so
//     exact(a) <= hi(a).
//  3. T = the limit-th largest lo (0 with fewer applications). Candidates are
//     the applications with hi >= T.
//  4. exact = lo + the edge minutes from usage_minute, read for the
//     candidates only (app_id IN the set, sent as an external table); sort and
//     cut to limit.
//
// Why it is exact: at least limit applications have exact >= lo >= T, and
// they are all candidates (hi >= lo >= T). An application that is not a
// candidate has exact <= hi < T, strictly below limit others, so it cannot be
// in the top limit whatever the tie-break by app_id; ties at T are kept
// because the test is >=. An application is listed only if it has a row in
// the range (a whole-hour row or an edge minute), as the single query would.
//
// When the range holds no whole hour (every application would be a
// candidate) or there are more than maxCandidates candidates, topApps runs
// the single query instead. Every query goes through run, under ctx's
// deadline.
func (s *Server) topApps(ctx context.Context, sc scope, f filter, b buckets, limit int) ([]topApp, topPath, *apiError) {
	p := planFor(b)
	if len(p[chschema.UsageMinute]) == 0 {
		apps, e := s.topDirect(ctx, sc, p, f, limit)
		return apps, topWhole, e
	}
	from, to := b[0].UTC(), b[len(b)-1].UTC()
	lo, hi := from.Truncate(time.Hour), to.Truncate(time.Hour)
	if lo.Before(from) {
		lo = lo.Add(time.Hour)
	}
	if !lo.Before(hi) {
		apps, e := s.topDirect(ctx, sc, p, f, limit)
		return apps, topFallback, e
	}
	var edgeHours, edges []span
	if lo.After(from) {
		edgeHours = append(edgeHours, span{lo.Add(-time.Hour), lo})
		edges = append(edges, span{from, lo})
	}
	if hi.Before(to) {
		edgeHours = append(edgeHours, span{hi, hi.Add(time.Hour)})
		edges = append(edges, span{hi, to})
	}

	type bound struct {
		app    string
		lo, hi int64
		whole  uint8
	}
	var rows []bound
	e := s.run(ctx, sc.topBoundsSQL(s.db, planFor(buckets{lo, hi}), lo, hi, edgeHours, f), func(r driver.Rows) error {
		var x bound
		if err := r.Scan(&x.app, &x.lo, &x.hi, &x.whole); err != nil {
			return err
		}
		rows = append(rows, x)
		return nil
	})
	if e != nil {
		return nil, topCandidates, e
	}
	var los []int64
	for _, x := range rows {
		if x.whole == 1 {
			los = append(los, x.lo)
		}
	}
	var threshold int64
	if len(los) >= limit {
		sort.Slice(los, func(i, j int) bool { return los[i] > los[j] })
		threshold = los[limit-1]
	}
	exact := map[string]int64{}
	present := map[string]bool{}
	var cands []string
	for _, x := range rows {
		if x.hi >= threshold {
			cands = append(cands, x.app)
			exact[x.app] = x.lo
			present[x.app] = x.whole == 1
		}
	}
	if len(cands) > s.maxCandidates {
		apps, e := s.topDirect(ctx, sc, p, f, limit)
		return apps, topFallback, e
	}
	if len(cands) > 0 {
		sort.Strings(cands) // a stable statement for the same candidates
		e = s.run(ctx, sc.topEdgeSQL(s.db, edges, f, cands), func(r driver.Rows) error {
			var app string
			var v int64
			if err := r.Scan(&app, &v); err != nil {
				return err
			}
			exact[app] = chschema.AddTotal(exact[app], v)
			present[app] = true
			return nil
		})
		if e != nil {
			return nil, topCandidates, e
		}
	}
	apps := make([]topApp, 0, len(cands))
	for _, a := range cands {
		if present[a] {
			apps = append(apps, topApp{AppID: a, Value: exact[a]})
		}
	}
	sort.Slice(apps, func(i, j int) bool {
		if apps[i].Value != apps[j].Value {
			return apps[i].Value > apps[j].Value
		}
		return apps[i].AppID < apps[j].AppID
	})
	if len(apps) > limit {
		apps = apps[:limit]
	}
	return apps, topCandidates, nil
}

// topDirect answers the top-N with one query summing every table of p per
// application (topSQL).
func (s *Server) topDirect(ctx context.Context, sc scope, p plan, f filter, limit int) ([]topApp, *apiError) {
	apps := []topApp{}
	e := s.run(ctx, sc.topSQL(s.db, p, f, limit), func(r driver.Rows) error {
		var a topApp
		if err := r.Scan(&a.AppID, &a.Value); err != nil {
			return err
		}
		apps = append(apps, a)
		return nil
	})
	return apps, e
}
