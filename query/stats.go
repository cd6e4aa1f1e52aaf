package query

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// statsAnswer is the 3scale analytics shape of
// /stats/services/{id}/usage.json and /stats/applications/{id}/usage.json.
type statsAnswer struct {
	Application *statsApplication `json:"application,omitempty"`
	Metric      statsMetric       `json:"metric"`
	Period      statsPeriod       `json:"period"`
	Total       int64             `json:"total"`
	Values      []int64           `json:"values"`
}

type statsMetric struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	SystemName string `json:"system_name"`
	Unit       string `json:"unit"`
}

type statsPeriod struct {
	Name        string `json:"name"`
	Since       string `json:"since"`
	Until       string `json:"until"`
	Timezone    string `json:"timezone"`
	Granularity string `json:"granularity"`
}

type statsApplication struct {
	ID      string   `json:"id"`
	State   string   `json:"state"`
	Plan    statsRef `json:"plan"`
	Service statsRef `json:"service"`
}

type statsRef struct {
	ID string `json:"id"`
}

// periods of the stats endpoints with their default granularity.
var periods = map[string]Granularity{"day": Hour, "week": Day, "month": Day, "year": Month}

// stats answers the 3scale-style usage stats of a service (serviceID set)
// or of an application (appID set; service_id names its service, and may be
// omitted when the tenant has one application of that id).
//
// Parameters as 3scale's analytics API: metric_name (required), period
// (day, week, month, year; default month), since (YYYY-MM-DD,
// YYYY-MM-DD HH:MM:SS or RFC 3339, read in timezone; default the start of
// the current period), granularity (hour, day, month; default by period:
// hour for a day, day for a week or month, month for a year), timezone
// (IANA; tz is accepted too; default UTC). The period runs from since, moved
// back to the start of its granularity bucket, for one period; until is its
// last second, as 3scale writes it.
func (s *Server) stats(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot, serviceID, appID string) *apiError {
	var svc *catalog.Service
	var app *catalog.App
	var e *apiError
	if appID == "" {
		if svc, e = service(snap, sc, serviceID, serviceID != ""); e != nil {
			return e
		}
	} else {
		if e = checkAppID(appID); e != nil {
			return e
		}
		if id, ok := arg(ctx, "service_id"); ok {
			if svc, e = service(snap, sc, id, true); e != nil {
				return e
			}
			if app = svc.App(appID); app == nil {
				return errf(404, "unknown_application", "service "+quote(svc.ID)+" has no application "+quote(appID))
			}
		} else {
			// Application ids are unique within a service only: find it in
			// the tenant's services, and ask for service_id if ambiguous.
			t := snap.Tenants[sc.tenant]
			if t != nil {
				for _, cand := range snap.Services {
					if cand.Tenant == t && cand.App(appID) != nil {
						if app != nil {
							return badRequest("missing_service_id", "several services have an application "+quote(appID)+"; add service_id")
						}
						svc, app = cand, cand.App(appID)
					}
				}
			}
			if app == nil {
				return errf(404, "unknown_application", "no application "+quote(appID))
			}
		}
	}
	name, ok := arg(ctx, "metric_name")
	if !ok {
		return badRequest("missing_metric", "metric_name is required")
	}
	m, e := metric(svc, name)
	if e != nil {
		return e
	}
	period := "month"
	if v, ok := arg(ctx, "period"); ok {
		period = v
	}
	gran, ok := periods[period]
	if !ok {
		return badRequest("invalid_period", "period must be one of day, week, month, year, not "+quote(period))
	}
	if v, ok := arg(ctx, "granularity"); ok {
		switch g, _ := ParseGranularity(v); g {
		case Hour, Day, Month:
			gran = g
		default:
			return badRequest("invalid_granularity", "granularity must be one of hour, day, month, not "+quote(v))
		}
	}
	tz, ok := arg(ctx, "timezone")
	if !ok {
		tz, _ = arg(ctx, "tz")
	}
	loc, e := parseTZ(tz, "invalid_tz")
	if e != nil {
		return e
	}
	var since time.Time
	if v, ok := arg(ctx, "since"); ok {
		if since, e = parseSince(v, loc); e != nil {
			return e
		}
	} else {
		since = periodStart(s.now(), period, loc)
	}
	since = floorBucket(since, gran, loc)
	ls := since.In(loc)
	y, mo, d := ls.Date()
	switch period {
	case "day":
		d++
	case "week":
		d += 7
	case "month":
		mo++
	case "year":
		y++
	}
	end := time.Date(y, mo, d, ls.Hour(), ls.Minute(), 0, 0, loc)
	if since.Equal(floorBucket(since, Day, loc)) {
		end = limiter.LocalDayStart(y, mo, d, loc) // DST-safe when the day starts off midnight
	}
	if end.After(maxTime) {
		return badRequest("invalid_since", "since must lie between 2000-01-01 and 2100-01-01")
	}
	b, ok := makeBuckets(since, end, gran, loc, MaxBuckets)
	if !ok {
		return badRequest("too_many_buckets", "the period holds more than 1500 "+gran.String()+" buckets; use a coarser granularity")
	}
	f := filter{service: svc.ID, metrics: []string{m.Name}}
	if app != nil {
		f.app = app.ID
	}
	groups, total, e := s.series(context.Background(), sc, f, "", b)
	if e != nil {
		return e
	}
	ans := statsAnswer{
		Metric: statsMetric{ID: int(m.ID), Name: m.Name, SystemName: m.Name, Unit: ""},
		Period: statsPeriod{Name: period, Since: fmtTime(b[0], loc), Until: fmtTime(b[len(b)-1].Add(-time.Second), loc),
			Timezone: tzName(loc), Granularity: gran.String()},
		Total:  total,
		Values: groups[0].values,
	}
	if app != nil {
		planID := ""
		if plan := app.Plan(); plan != nil {
			planID = plan.ID
		}
		ans.Application = &statsApplication{ID: app.ID, State: app.State.String(), Plan: statsRef{planID}, Service: statsRef{svc.ID}}
	}
	return writeJSON(ctx, ans)
}

// parseSince reads 3scale's since: a date (2010-12-01, also 2010-1-27),
// a date and time (2010-12-01 10:00:00) in loc, or RFC 3339.
func parseSince(v string, loc *time.Location) (time.Time, *apiError) {
	var t time.Time
	var err error
	for _, layout := range []string{"2006-1-2", "2006-1-2 15:04:05", "2006-1-2T15:04:05"} {
		if t, err = time.ParseInLocation(layout, v, loc); err == nil {
			break
		}
	}
	if err != nil {
		if t, err = time.Parse(time.RFC3339, v); err != nil {
			return t, badRequest("invalid_since", "since must be YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339, not "+quote(v))
		}
	}
	if t.Before(minTime) || t.After(maxTime) {
		return t, badRequest("invalid_since", "since must lie between 2000-01-01 and 2100-01-01")
	}
	return t, nil
}

// periodStart is the start of the calendar period holding now in loc.
func periodStart(now time.Time, period string, loc *time.Location) time.Time {
	switch period {
	case "day":
		return floorBucket(now, Day, loc)
	case "week":
		return floorBucket(now, Week, loc)
	case "year":
		return limiter.LocalFloor(limiter.Year, now, loc)
	}
	return floorBucket(now, Month, loc)
}
