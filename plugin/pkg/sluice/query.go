package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Query types: the queryType of a query, one per query API endpoint.
const (
	QueryUsage       = "usage"
	QueryTop         = "top"
	QueryDenials     = "denials"
	QueryUtilization = "utilization"
	QueryChanges     = "changes"
)

// QueryTypes lists every query type, for the dashboards' test and the
// editors.
var QueryTypes = []string{QueryUsage, QueryTop, QueryDenials, QueryUtilization, QueryChanges}

// Utilization formats.
const (
	// FormatTable is one table of every limit (panels).
	FormatTable = "table"
	// FormatNumeric is one frame per limit with its ratio as the only
	// number and the limit as labels (numeric-multi): what alert rules
	// reduce and compare with a threshold.
	FormatNumeric = "numeric"
)

// MaxApps bounds the applications one query names: each is one call.
const MaxApps = 25

// Query is the JSON model of a query, as the query editor writes it.
type Query struct {
	QueryType   string   `json:"queryType"`
	ServiceID   string   `json:"serviceId"`
	Metric      string   `json:"metric"`
	AppIDs      []string `json:"appIds"`
	GroupBy     string   `json:"groupBy"`     // usage: app_id, metric, region, code or ""
	Granularity string   `json:"granularity"` // "" or auto: from interval and max data points
	Limit       int      `json:"limit"`       // top, changes
	Period      string   `json:"period"`      // utilization
	MinRatio    float64  `json:"minRatio"`    // utilization
	Format      string   `json:"format"`      // utilization: table or numeric
	Timezone    string   `json:"timezone"`    // IANA name; "", utc or browser: UTC
}

// Frame field names, which the dashboards refer to.
const (
	FieldTime        = "time"
	FieldValue       = "value"
	FieldAppID       = "app_id"
	FieldPlanID      = "plan_id"
	FieldState       = "state"
	FieldMetric      = "metric"
	FieldPeriod      = "period"
	FieldMax         = "max"
	FieldUsage       = "usage"
	FieldRatio       = "ratio"
	FieldWindowStart = "window_start"
	FieldWindowEnd   = "window_end"
	FieldTitle       = "title"
	FieldText        = "text"
	FieldTags        = "tags"
)

// Fields lists the fields each query type's frames have, for the
// dashboards' test.
var Fields = map[string][]string{
	QueryUsage:       {FieldTime, FieldValue},
	QueryDenials:     {FieldTime, FieldValue},
	QueryTop:         {FieldAppID, FieldValue},
	QueryUtilization: {FieldAppID, FieldPlanID, FieldState, FieldMetric, FieldPeriod, FieldMax, FieldUsage, FieldRatio, FieldWindowStart, FieldWindowEnd},
	QueryChanges:     {FieldTime, FieldTitle, FieldText, FieldTags},
}

// QueryData answers each query of req with the frames of its query API call.
// A failing query gets its own error; the others still answer.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

// badQuery is an error in the query itself (a 400 for Grafana).
type badQuery string

func (e badQuery) Error() string { return string(e) }

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) backend.DataResponse {
	if d.err != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, "data source settings: "+d.err.Error())
	}
	var q Query
	if err := json.Unmarshal(dq.JSON, &q); err != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, "query JSON: "+err.Error())
	}
	if q.QueryType == "" {
		q.QueryType = dq.QueryType
	}
	var frames data.Frames
	var err error
	switch q.QueryType {
	case QueryUsage, QueryDenials:
		frames, err = d.series(ctx, q, dq)
	case QueryTop:
		frames, err = d.top(ctx, q, dq)
	case QueryUtilization:
		frames, err = d.utilization(ctx, q)
	case QueryChanges:
		frames, err = d.changes(ctx, q, dq)
	default:
		err = badQuery("unknown query type " + strconv.Quote(q.QueryType) + "; want one of " + strings.Join(QueryTypes, ", "))
	}
	if err != nil {
		return errResponse(err)
	}
	return backend.DataResponse{Frames: frames}
}

// errResponse maps an error to a data response with the right status and
// source (the user's query, or Sluice downstream).
func errResponse(err error) backend.DataResponse {
	var bq badQuery
	var ae *apiError
	switch {
	case errors.As(err, &bq):
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourcePlugin, err.Error())
	case errors.As(err, &ae):
		st := backend.Status(ae.Status)
		if ae.Status >= 500 {
			st = backend.StatusBadGateway
		}
		return backend.ErrDataResponseWithSource(st, backend.ErrorSourceDownstream, err.Error())
	case errors.Is(err, errUnreachable):
		return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
	}
	return backend.ErrDataResponseWithSource(backend.StatusInternal, backend.ErrorSourcePlugin, err.Error())
}

// granularity steps, finest first, with their (approximate) length.
var steps = []struct {
	name string
	d    time.Duration
}{
	{"minute", time.Minute}, {"hour", time.Hour}, {"day", 24 * time.Hour}, {"week", 7 * 24 * time.Hour}, {"month", 31 * 24 * time.Hour},
}

// maxBuckets is the query API's bound on buckets per series.
const maxBuckets = 1500

// Granularity maps Grafana's range, interval and max data points to the
// query API's granularity: the finest calendar step not shorter than the
// interval that gives at most maxDataPoints (and the API's 1,500) buckets.
// An explicit granularity other than auto wins.
func Granularity(explicit string, tr backend.TimeRange, interval time.Duration, maxDataPoints int64) string {
	if explicit != "" && explicit != "auto" {
		return explicit
	}
	limit := int64(maxBuckets)
	if maxDataPoints > 0 && maxDataPoints < limit {
		limit = maxDataPoints
	}
	span := tr.To.Sub(tr.From)
	for _, s := range steps {
		if s.d < interval {
			continue
		}
		if n := int64(span/s.d) + 2; n <= limit { // +2: the range widens to whole buckets
			return s.name
		}
	}
	return "month"
}

// timezone maps the query's zone to the API's tz ("" is UTC).
func timezone(tz string) string {
	switch strings.ToLower(tz) {
	case "", "utc", "browser", "default":
		return ""
	}
	return tz
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// checkApps validates the applications of a query.
func checkApps(ids []string) ([]string, error) {
	var out []string
	for _, a := range ids {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) > MaxApps {
		return nil, badQuery("at most " + strconv.Itoa(MaxApps) + " applications per query; use group by app_id or Top applications")
	}
	return out, nil
}

// series answers usage and denials: one call per application named (or one
// for the whole service), each series a frame of (time, value) with the
// group and the application as labels.
func (d *Datasource) series(ctx context.Context, q Query, dq backend.DataQuery) (data.Frames, error) {
	if q.ServiceID == "" {
		return nil, badQuery("choose a service")
	}
	apps, err := checkApps(q.AppIDs)
	if err != nil {
		return nil, err
	}
	path := pathUsage
	if q.QueryType == QueryDenials {
		path = pathDenials
	}
	base := url.Values{"service_id": {q.ServiceID}, "from": {rfc3339(dq.TimeRange.From)}, "to": {rfc3339(dq.TimeRange.To)},
		"granularity": {Granularity(q.Granularity, dq.TimeRange, dq.Interval, dq.MaxDataPoints)}}
	if tz := timezone(q.Timezone); tz != "" {
		base.Set("tz", tz)
	}
	if q.QueryType == QueryUsage {
		if q.Metric != "" {
			base.Set("metric", q.Metric)
		}
		if q.GroupBy != "" {
			base.Set("group_by", q.GroupBy)
		}
	}
	calls := []string{""}
	if len(apps) > 0 {
		calls = apps
	}
	var frames data.Frames
	for _, app := range calls {
		params := url.Values{}
		for k, v := range base {
			params[k] = v
		}
		if app != "" {
			params.Set("app_id", app)
		}
		var ans seriesAnswer
		if err := d.api.get(ctx, path, params, true, &ans); err != nil {
			return nil, err
		}
		groupKey := q.GroupBy
		if q.QueryType == QueryDenials {
			groupKey = "reason"
		}
		for _, s := range ans.Series {
			labels := data.Labels{}
			for k, v := range s.Group {
				labels[k] = fmt.Sprint(v)
			}
			if app != "" {
				labels["app_id"] = app
			}
			times := make([]time.Time, len(s.Points))
			values := make([]int64, len(s.Points))
			for i, p := range s.Points {
				t, err := time.Parse(time.RFC3339, p.T)
				if err != nil {
					return nil, fmt.Errorf("answer of %s: bad time %q", path, p.T)
				}
				times[i], values[i] = t, p.Value
			}
			vf := data.NewField(FieldValue, labels, values)
			vf.Config = &data.FieldConfig{Unit: "short", DisplayNameFromDS: displayName(q, groupKey, labels, app)}
			f := data.NewFrame(q.QueryType, data.NewField(FieldTime, nil, times), vf)
			f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1},
				ExecutedQueryString: path + "?" + params.Encode()}
			frames = append(frames, f)
		}
	}
	return frames, nil
}

// displayName names a series as a legend shows it: the group value (and the
// application when several are named), else the metric or "denied".
func displayName(q Query, groupKey string, labels data.Labels, app string) string {
	var parts []string
	if app != "" && groupKey != "app_id" {
		parts = append(parts, app)
	}
	if groupKey != "" && labels[groupKey] != "" {
		parts = append(parts, labels[groupKey])
	}
	if len(parts) == 0 {
		if q.QueryType == QueryDenials {
			return "denied"
		}
		return q.Metric
	}
	return strings.Join(parts, " ")
}

// top answers the top applications over the whole range as a table of
// (app_id, value).
func (d *Datasource) top(ctx context.Context, q Query, dq backend.DataQuery) (data.Frames, error) {
	if q.ServiceID == "" || q.Metric == "" {
		return nil, badQuery("choose a service and a metric")
	}
	params := url.Values{"service_id": {q.ServiceID}, "metric": {q.Metric}, "from": {rfc3339(dq.TimeRange.From)}, "to": {rfc3339(dq.TimeRange.To)}}
	if q.Limit != 0 {
		params.Set("limit", strconv.Itoa(q.Limit))
	}
	var ans topAnswer
	if err := d.api.get(ctx, pathTop, params, true, &ans); err != nil {
		return nil, err
	}
	ids := make([]string, len(ans.Apps))
	vals := make([]int64, len(ans.Apps))
	for i, a := range ans.Apps {
		ids[i], vals[i] = a.AppID, a.Value
	}
	// Table fields keep their names (no display names): dashboards match
	// and rename them by name.
	vf := data.NewField(FieldValue, nil, vals)
	vf.Config = &data.FieldConfig{Unit: "short"}
	f := data.NewFrame(QueryTop, data.NewField(FieldAppID, nil, ids), vf)
	f.Meta = &data.FrameMeta{Type: data.FrameTypeTable, PreferredVisualization: data.VisTypeTable, ExecutedQueryString: pathTop + "?" + params.Encode()}
	return data.Frames{f}, nil
}

// utilization answers usage against limits: a table of every limit, or
// (format numeric) one frame per limit with its ratio, for alert rules.
func (d *Datasource) utilization(ctx context.Context, q Query) (data.Frames, error) {
	if q.ServiceID == "" {
		return nil, badQuery("choose a service")
	}
	apps, err := checkApps(q.AppIDs)
	if err != nil {
		return nil, err
	}
	base := url.Values{"service_id": {q.ServiceID}}
	if q.Metric != "" {
		base.Set("metric", q.Metric)
	}
	if q.Period != "" {
		base.Set("period", q.Period)
	}
	if q.MinRatio != 0 {
		base.Set("min_ratio", strconv.FormatFloat(q.MinRatio, 'g', -1, 64))
	}
	calls := []string{""}
	if len(apps) > 0 {
		calls = apps
	}
	var rows []utilizationRow
	for _, app := range calls {
		params := url.Values{}
		for k, v := range base {
			params[k] = v
		}
		if app != "" {
			params.Set("app_id", app)
		}
		var ans utilizationAnswer
		if err := d.api.get(ctx, pathUtilization, params, true, &ans); err != nil {
			return nil, err
		}
		rows = append(rows, ans.Limits...)
	}
	if len(calls) > 1 { // each answer is by ratio; so is the whole
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Ratio > rows[j].Ratio })
	}
	executed := pathUtilization + "?" + base.Encode()
	// Fields keep their names (no display names), so that dashboards match
	// them by name; numeric frames are told apart by their labels.
	ratioConf := func() *data.FieldConfig {
		one := data.ConfFloat64(1)
		zero := data.ConfFloat64(0)
		return &data.FieldConfig{Unit: "percentunit", Min: &zero, Max: &one}
	}
	if q.Format == FormatNumeric {
		frames := make(data.Frames, 0, len(rows))
		for _, r := range rows {
			labels := data.Labels{FieldAppID: r.AppID, FieldPlanID: r.PlanID, FieldMetric: r.Metric, FieldPeriod: r.Period}
			f := data.NewField(FieldRatio, labels, []float64{r.Ratio})
			f.Config = ratioConf()
			fr := data.NewFrame(QueryUtilization, f)
			fr.Meta = &data.FrameMeta{Type: data.FrameTypeNumericMulti, TypeVersion: data.FrameTypeVersion{0, 1}, ExecutedQueryString: executed}
			frames = append(frames, fr)
		}
		return frames, nil
	}
	n := len(rows)
	cols := struct {
		app, plan, state, metric, period []string
		max, usage                       []int64
		ratio                            []float64
		start, end                       []time.Time
	}{make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]int64, n), make([]int64, n), make([]float64, n), make([]time.Time, n), make([]time.Time, n)}
	for i, r := range rows {
		cols.app[i], cols.plan[i], cols.state[i], cols.metric[i], cols.period[i] = r.AppID, r.PlanID, r.State, r.Metric, r.Period
		cols.max[i], cols.usage[i], cols.ratio[i] = r.Max, r.Usage, r.Ratio
		var err error
		if cols.start[i], err = time.Parse(time.RFC3339, r.WindowStart); err != nil {
			return nil, fmt.Errorf("answer of %s: bad window_start %q", pathUtilization, r.WindowStart)
		}
		if cols.end[i], err = time.Parse(time.RFC3339, r.WindowEnd); err != nil {
			return nil, fmt.Errorf("answer of %s: bad window_end %q", pathUtilization, r.WindowEnd)
		}
	}
	short := func(f *data.Field) *data.Field {
		f.Config = &data.FieldConfig{Unit: "short"}
		return f
	}
	ratio := data.NewField(FieldRatio, nil, cols.ratio)
	ratio.Config = ratioConf()
	f := data.NewFrame(QueryUtilization,
		data.NewField(FieldAppID, nil, cols.app),
		data.NewField(FieldPlanID, nil, cols.plan),
		data.NewField(FieldState, nil, cols.state),
		data.NewField(FieldMetric, nil, cols.metric),
		data.NewField(FieldPeriod, nil, cols.period),
		short(data.NewField(FieldMax, nil, cols.max)),
		short(data.NewField(FieldUsage, nil, cols.usage)),
		ratio,
		data.NewField(FieldWindowStart, nil, cols.start),
		data.NewField(FieldWindowEnd, nil, cols.end),
	)
	f.Meta = &data.FrameMeta{Type: data.FrameTypeTable, PreferredVisualization: data.VisTypeTable, ExecutedQueryString: executed}
	return data.Frames{f}, nil
}

// changes answers configuration changes as an annotation frame: time,
// title (the kind), text and tags.
func (d *Datasource) changes(ctx context.Context, q Query, dq backend.DataQuery) (data.Frames, error) {
	if q.ServiceID == "" {
		return nil, badQuery("choose a service")
	}
	apps, err := checkApps(q.AppIDs)
	if err != nil {
		return nil, err
	}
	if len(apps) > 1 {
		return nil, badQuery("changes take one application or none")
	}
	params := url.Values{"service_id": {q.ServiceID}, "from": {rfc3339(dq.TimeRange.From)}, "to": {rfc3339(dq.TimeRange.To)}}
	if len(apps) == 1 {
		params.Set("app_id", apps[0])
	}
	if q.Limit != 0 {
		params.Set("limit", strconv.Itoa(q.Limit))
	}
	var ans changesAnswer
	if err := d.api.get(ctx, pathChanges, params, true, &ans); err != nil {
		return nil, err
	}
	n := len(ans.Changes)
	times, titles, texts, tags := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n)
	for i, c := range ans.Changes {
		t, err := time.Parse(time.RFC3339Nano, c.Time)
		if err != nil {
			return nil, fmt.Errorf("answer of %s: bad time %q", pathChanges, c.Time)
		}
		times[i], titles[i], texts[i] = t, c.Kind, c.Text
		tg := []string{c.Kind}
		if c.AppID != "" {
			tg = append(tg, "app:"+c.AppID)
		}
		if c.PlanID != "" {
			tg = append(tg, "plan:"+c.PlanID)
		}
		tags[i] = strings.Join(tg, ",")
	}
	f := data.NewFrame(QueryChanges, data.NewField(FieldTime, nil, times), data.NewField(FieldTitle, nil, titles),
		data.NewField(FieldText, nil, texts), data.NewField(FieldTags, nil, tags))
	f.Meta = &data.FrameMeta{ExecutedQueryString: pathChanges + "?" + params.Encode()}
	return data.Frames{f}, nil
}
