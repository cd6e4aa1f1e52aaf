package query

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
)

// PathAlerts lists utilization alerts.
const PathAlerts = "/api/v1/alerts"

// DefaultAlertsLimit is the page size of /api/v1/alerts without limit.
const DefaultAlertsLimit = 100

// alertJSON is one alert of the answer: the fields of the alert event
// (ingest/alerts.Alert), less the node that saw it.
type alertJSON struct {
	ID          string `json:"id"`
	ServiceID   string `json:"service_id"`
	AppID       string `json:"app_id"`
	Metric      string `json:"metric"`
	Period      string `json:"period"`
	WindowStart string `json:"window_start"`
	Threshold   uint16 `json:"threshold"`
	Value       int64  `json:"value"`
	Max         int64  `json:"max"`
	Time        string `json:"time"`
}

// alertsAnswer is the answer of /api/v1/alerts. Next, when present, is the
// cursor of the following page.
type alertsAnswer struct {
	From   string      `json:"from"`
	To     string      `json:"to"`
	Alerts []alertJSON `json:"alerts"`
	Next   string      `json:"next,omitempty"`
}

// cursor is a position in the alerts' order (time, then id): the page
// starts after it. Its text form is "UNIXSECONDS-ID".
type cursor struct {
	t  int64
	id string
}

func parseCursor(s string) (cursor, *apiError) {
	bad := badRequest("invalid_cursor", "cursor must be the next value of a previous answer")
	ts, id, ok := strings.Cut(s, "-")
	if !ok || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return cursor{}, bad
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || t < minTime.Unix() || t > maxTime.Unix() {
		return cursor{}, bad
	}
	return cursor{t: t, id: id}, nil
}

// alerts answers GET /api/v1/alerts: the tenant's alerts with time in
// [from, to), oldest first, optionally of one service and one application,
// at most limit per page. Copies of one alert (one id) are one item.
func (s *Server) alerts(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	var svcID string
	if id, ok := arg(ctx, "service_id"); ok {
		svc, e := service(snap, sc, id, ok)
		if e != nil {
			return e
		}
		svcID = svc.ID
	}
	app, hasApp := arg(ctx, "app_id")
	if hasApp {
		if e := checkAppID(app); e != nil {
			return e
		}
	}
	limit := DefaultAlertsLimit
	if _, ok := arg(ctx, "limit"); ok {
		n, e := parseLimit(ctx)
		if e != nil {
			return e
		}
		limit = n
	}
	from, to, e := timeRange(ctx, s.now())
	if e != nil {
		return e
	}
	var after *cursor
	if c, ok := arg(ctx, "cursor"); ok {
		cur, e := parseCursor(c)
		if e != nil {
			return e
		}
		after = &cur
	}

	q := sc.selectFrom(s.db, chschema.Alerts,
		"id, any(service_id), any(app_id), any(metric), any(period), any(window_start), any(threshold), argMin(value, t), any(max), min(t) AS first_seen")
	q.and("t >= toDateTime(?) AND t < toDateTime(?)", uint32(from.Unix()), uint32(to.Unix()))
	if svcID != "" {
		q.and("service_id = ?", svcID)
	}
	if hasApp {
		q.and("app_id = ?", app)
	}
	q.raw(" GROUP BY id")
	if after != nil {
		q.raw(" HAVING first_seen > toDateTime(?) OR (first_seen = toDateTime(?) AND id > ?)")
		q.args = append(q.args, uint32(after.t), uint32(after.t), after.id)
	}
	q.raw(" ORDER BY first_seen, id LIMIT " + strconv.Itoa(limit+1))

	ans := alertsAnswer{From: fmtTime(from, time.UTC), To: fmtTime(to, time.UTC), Alerts: []alertJSON{}}
	var last cursor
	e = s.run(context.Background(), q, func(rows driver.Rows) error {
		var (
			a         alertJSON
			win, when time.Time
		)
		if err := rows.Scan(&a.ID, &a.ServiceID, &a.AppID, &a.Metric, &a.Period, &win, &a.Threshold, &a.Value, &a.Max, &when); err != nil {
			return err
		}
		if len(ans.Alerts) == limit {
			ans.Next = strconv.FormatInt(last.t, 10) + "-" + last.id
			return nil
		}
		a.WindowStart, a.Time = fmtTime(win, time.UTC), fmtTime(when, time.UTC)
		ans.Alerts = append(ans.Alerts, a)
		last = cursor{t: when.Unix(), id: a.ID}
		return nil
	})
	if e != nil {
		return e
	}
	return writeJSON(ctx, ans)
}
