package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// getConfig answers GET /config: the tenant's whole configuration as a
// configuration document (JSON, or YAML with ?format=yaml or an Accept
// header naming yaml), ready to be loaded as a file.
func (a *API) getConfig(r *request) error {
	exp, ok := a.proj.Export(r.tenant)
	if !ok {
		return notFound("tenant")
	}
	format := string(r.ctx.QueryArgs().Peek("format"))
	if format == "" && bytes.Contains(r.ctx.Request.Header.Peek("Accept"), []byte("yaml")) {
		format = "yaml"
	}
	switch format {
	case "yaml":
		var b bytes.Buffer
		if err := exp.Document().WriteYAML(&b); err != nil {
			return err
		}
		r.ctx.SetContentType("application/yaml")
		r.ctx.SetStatusCode(200)
		r.ctx.SetBody(b.Bytes())
	case "", "json":
		// Streamed: a tenant with a million applications is a body of
		// hundreds of megabytes, written as it is encoded.
		r.ctx.SetContentType("application/json")
		r.ctx.SetStatusCode(200)
		r.ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			if err := exp.WriteJSON(w); err != nil {
				a.logger.Warn("admin: config export cut short", "tenant", r.tenant, "err", err)
			}
		})
	default:
		return errf(400, "bad_request", "format must be json or yaml")
	}
	return nil
}

// listApps answers one page of a service's applications, in id order.
func (a *API) listApps(r *request, sid string) error {
	page, perPage, err := paging(r)
	if err != nil {
		return err
	}
	apps, total, ok := a.proj.AppPage(r.tenant, sid, (page-1)*perPage, perPage)
	if !ok {
		return notFound("service")
	}
	var spec catalog.ServiceSpec
	writeJSON(r.ctx, 200, pageBody(catalog.FieldName(&spec, &spec.Applications), nonNil(apps), page, perPage, total))
	return nil
}

func (a *API) putService(r *request, sid string) error {
	return a.changeDoc(r, func(doc *catalog.Document, t *catalog.TenantSpec) (int, any, error) {
		// Service ids are global names: one that another tenant holds is
		// not available, and that is all the answer says. It is decided
		// here, on the configuration the change applies to, so that of two
		// tenants racing for a new id the second is told it is taken.
		for i := range doc.Tenants {
			if o := &doc.Tenants[i]; o.ID != r.tenant && o.Service(sid) != nil {
				return 0, nil, errf(409, "conflict", "service id is not available")
			}
		}
		cur := t.Service(sid)
		var spec catalog.ServiceSpec
		if err := decodeBody(r, curOrNil(cur), &spec); err != nil {
			return 0, nil, err
		}
		if spec.ID == "" {
			spec.ID = sid
		}
		if err := checkID(spec.ID, sid, catalog.FieldName(&spec, &spec.ID)); err != nil {
			return 0, nil, err
		}
		if cur != nil {
			*cur = spec
			return 200, spec, nil
		}
		t.Services = append(t.Services, spec)
		return 201, spec, nil
	})
}

// curOrNil avoids a typed nil pointer in an interface.
func curOrNil[T any](p *T) any {
	if p == nil {
		return nil
	}
	return p
}

func (a *API) deleteService(r *request, sid string) error {
	return a.change(r, func(t *catalog.TenantSpec) (int, any, error) {
		i := slices.IndexFunc(t.Services, func(s catalog.ServiceSpec) bool { return s.ID == sid })
		if i < 0 {
			return 0, nil, notFound("service")
		}
		t.Services = slices.Delete(t.Services, i, i+1)
		return 204, nil, nil
	})
}

// changeService runs fn on one service of the tenant (404 if it has none).
func (a *API) changeService(r *request, sid string, fn func(s *catalog.ServiceSpec) (int, any, error)) error {
	return a.change(r, func(t *catalog.TenantSpec) (int, any, error) {
		s := t.Service(sid)
		if s == nil {
			return 0, nil, notFound("service")
		}
		return fn(s)
	})
}

func (a *API) routeMetrics(r *request, sid string, s []string) error {
	switch len(s) {
	case 0:
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
			return pageOf(r, catalog.FieldName(svc, &svc.Metrics), svc.Metrics)
		})
	case 1:
	default:
		return notFound("route")
	}
	name := s[0]
	if err := r.allow("GET", "PUT", "DELETE"); err != nil {
		return err
	}
	switch r.method {
	case "GET":
		return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
			i := svc.Metric(name)
			if i < 0 {
				return nil, notFound("metric")
			}
			return svc.Metrics[i], nil
		})
	case "PUT":
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			i := svc.Metric(name)
			var cur *catalog.MetricSpec
			if i >= 0 {
				cur = &svc.Metrics[i]
			}
			var m catalog.MetricSpec
			if err := decodeBody(r, curOrNil(cur), &m); err != nil {
				return 0, nil, err
			}
			if m.Name == "" {
				m.Name = name
			}
			if err := checkID(m.Name, name, catalog.FieldName(&m, &m.Name)); err != nil {
				return 0, nil, err
			}
			if cur != nil {
				*cur = m
				return 200, m, nil
			}
			// New metrics go last, after those declared before.
			svc.Metrics = append(svc.Metrics, m)
			return 201, m, nil
		})
	default:
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			i := svc.Metric(name)
			if i < 0 {
				return 0, nil, notFound("metric")
			}
			svc.Metrics = slices.Delete(svc.Metrics, i, i+1)
			return 204, nil, nil
		})
	}
}

func (a *API) routePlans(r *request, sid string, s []string) error {
	if len(s) == 0 {
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
			return pageOf(r, catalog.FieldName(svc, &svc.Plans), svc.Plans)
		})
	}
	pid := s[0]
	if len(s) > 1 {
		if s[1] != "limits" {
			return notFound("route")
		}
		return a.routeLimits(r, sid, pid, s[2:])
	}
	if err := r.allow("GET", "PUT", "DELETE"); err != nil {
		return err
	}
	switch r.method {
	case "GET":
		return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
			p := svc.Plan(pid)
			if p == nil {
				return nil, notFound("plan")
			}
			return p, nil
		})
	case "PUT":
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			cur := svc.Plan(pid)
			var p catalog.PlanSpec
			if err := decodeBody(r, curOrNil(cur), &p); err != nil {
				return 0, nil, err
			}
			if p.ID == "" {
				p.ID = pid
			}
			if err := checkID(p.ID, pid, catalog.FieldName(&p, &p.ID)); err != nil {
				return 0, nil, err
			}
			if cur != nil {
				*cur = p
				return 200, p, nil
			}
			svc.Plans = append(svc.Plans, p)
			return 201, p, nil
		})
	default:
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			i := slices.IndexFunc(svc.Plans, func(p catalog.PlanSpec) bool { return p.ID == pid })
			if i < 0 {
				return 0, nil, notFound("plan")
			}
			svc.Plans = slices.Delete(svc.Plans, i, i+1)
			return 204, nil, nil
		})
	}
}

// samePeriod compares periods by meaning ("sliding:60s" is "sliding:1m").
func samePeriod(a, b string) bool {
	pa, ea := limiter.ParsePeriod(a)
	pb, eb := limiter.ParsePeriod(b)
	if ea == nil && eb == nil {
		return pa == pb
	}
	return a == b
}

func findLimit(p *catalog.PlanSpec, metric, period string) int {
	return slices.IndexFunc(p.Limits, func(l catalog.LimitSpec) bool {
		return l.Metric == metric && samePeriod(l.Period, period)
	})
}

func (a *API) routeLimits(r *request, sid, pid string, s []string) error {
	withPlan := func(fn func(p *catalog.PlanSpec) (int, any, error)) error {
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			p := svc.Plan(pid)
			if p == nil {
				return 0, nil, notFound("plan")
			}
			return fn(p)
		})
	}
	readPlan := func(fn func(p *catalog.PlanSpec) (any, error)) error {
		return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
			p := svc.Plan(pid)
			if p == nil {
				return nil, notFound("plan")
			}
			return fn(p)
		})
	}
	switch len(s) {
	case 0:
		if err := r.allow("GET", "POST"); err != nil {
			return err
		}
		if r.method == "GET" {
			return readPlan(func(p *catalog.PlanSpec) (any, error) {
				return pageOf(r, catalog.FieldName(p, &p.Limits), p.Limits)
			})
		}
		return withPlan(func(p *catalog.PlanSpec) (int, any, error) {
			var l catalog.LimitSpec
			if err := decodeBody(r, nil, &l); err != nil {
				return 0, nil, err
			}
			if findLimit(p, l.Metric, l.Period) >= 0 {
				return 0, nil, errf(409, "conflict", "the plan already has a limit for this metric and period; PUT it to change its max")
			}
			p.Limits = append(p.Limits, l)
			return 201, l, nil
		})
	case 2:
	default:
		return notFound("route")
	}
	metric, period := s[0], s[1]
	if err := r.allow("GET", "PUT", "DELETE"); err != nil {
		return err
	}
	switch r.method {
	case "GET":
		return readPlan(func(p *catalog.PlanSpec) (any, error) {
			i := findLimit(p, metric, period)
			if i < 0 {
				return nil, notFound("limit")
			}
			return p.Limits[i], nil
		})
	case "PUT":
		return withPlan(func(p *catalog.PlanSpec) (int, any, error) {
			i := findLimit(p, metric, period)
			cur := catalog.LimitSpec{Metric: metric, Period: period}
			if i >= 0 {
				cur = p.Limits[i]
			}
			var l catalog.LimitSpec
			if err := decodeBody(r, &cur, &l); err != nil {
				return 0, nil, err
			}
			if l.Metric != metric || !samePeriod(l.Period, period) {
				e := errf(422, "invalid_config", "metric and period in the body do not match the path")
				e.details = []catalog.Problem{{Path: catalog.FieldName(&l, &l.Metric), Message: "metric and period come from the path"}}
				return 0, nil, e
			}
			if i >= 0 {
				p.Limits[i] = l
				return 200, l, nil
			}
			p.Limits = append(p.Limits, l)
			return 201, l, nil
		})
	default:
		return withPlan(func(p *catalog.PlanSpec) (int, any, error) {
			i := findLimit(p, metric, period)
			if i < 0 {
				return 0, nil, notFound("limit")
			}
			p.Limits = slices.Delete(p.Limits, i, i+1)
			return 204, nil, nil
		})
	}
}

func (a *API) routeApps(r *request, sid string, s []string) error {
	if len(s) == 0 {
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.listApps(r, sid)
	}
	aid := s[0]
	if len(s) > 1 {
		switch s[1] {
		case "keys":
			return a.routeKeys(r, sid, aid, s[2:])
		case "referrer_filters":
			return a.routeReferrers(r, sid, aid, s[2:])
		}
		return notFound("route")
	}
	if err := r.allow("GET", "PUT", "DELETE"); err != nil {
		return err
	}
	switch r.method {
	case "GET":
		return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
			app := svc.App(aid)
			if app == nil {
				return nil, notFound("application")
			}
			return app, nil
		})
	case "PUT":
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			cur := svc.App(aid)
			var app catalog.AppSpec
			if err := decodeBody(r, curOrNil(cur), &app); err != nil {
				return 0, nil, err
			}
			if app.ID == "" {
				app.ID = aid
			}
			if err := checkID(app.ID, aid, catalog.FieldName(&app, &app.ID)); err != nil {
				return 0, nil, err
			}
			if cur != nil {
				*cur = app
				return 200, app, nil
			}
			if app.UserKey == "" && (svc.AuthMode == "" || svc.AuthMode == catalog.ModeUserKey) {
				app.UserKey = catalog.NewSecret("")
			}
			svc.Applications = append(svc.Applications, app)
			return 201, app, nil
		})
	default:
		return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			i := slices.IndexFunc(svc.Applications, func(a catalog.AppSpec) bool { return a.ID == aid })
			if i < 0 {
				return 0, nil, notFound("application")
			}
			svc.Applications = slices.Delete(svc.Applications, i, i+1)
			return 204, nil, nil
		})
	}
}

// withApp runs fn on one application of one service of the tenant.
func (a *API) withApp(r *request, sid, aid string, fn func(app *catalog.AppSpec) (int, any, error)) error {
	return a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
		app := svc.App(aid)
		if app == nil {
			return 0, nil, notFound("application")
		}
		return fn(app)
	})
}

func (a *API) readApp(r *request, sid, aid string, fn func(app *catalog.AppSpec) (any, error)) error {
	return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
		app := svc.App(aid)
		if app == nil {
			return nil, notFound("application")
		}
		return fn(app)
	})
}

// decodeSmall decodes a small fixed-shape JSON body strictly: a value of
// the wrong type (a number for a string) is 422 with the field's path, as
// in decodeBody; anything else wrong is 400.
func decodeSmall(r *request, into any) error {
	dec := json.NewDecoder(bytes.NewReader(r.ctx.PostBody()))
	dec.DisallowUnknownFields()
	err := dec.Decode(into)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		e := errf(422, "invalid_config", "the body does not have the expected shape")
		e.details = []catalog.Problem{{Path: te.Field, Message: "expected " + jsonKind(te.Type) + ", got " + firstWord(te.Value)}}
		return e
	}
	return errf(400, "bad_request", "malformed body: "+sanitize(err))
}

// jsonKind names the JSON kind a Go type decodes from, in the words of
// catalog's shape problems.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	}
	return "a " + t.Kind().String()
}

// firstWord keeps the kind of an UnmarshalTypeError's value ("number" of
// "number 12"), never the value: "a number", "an object".
func firstWord(v string) string {
	if i := strings.IndexByte(v, ' '); i >= 0 {
		v = v[:i]
	}
	switch v {
	case "object", "array":
		return "an " + v
	case "bool":
		return "a boolean"
	}
	return "a " + v
}

// sanitize keeps encoding/json's message short. It names fields, types and
// at most the offending character, never the value of a string field.
func sanitize(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

type keyBody struct {
	Key string `json:"key"`
}

func (a *API) routeKeys(r *request, sid, aid string, s []string) error {
	switch len(s) {
	case 0:
		if err := r.allow("GET", "POST"); err != nil {
			return err
		}
		if r.method == "GET" {
			return a.readApp(r, sid, aid, func(app *catalog.AppSpec) (any, error) {
				return map[string]any{catalog.FieldName(app, &app.Keys): nonNil(app.Keys)}, nil
			})
		}
		return a.withApp(r, sid, aid, func(app *catalog.AppSpec) (int, any, error) {
			var kb keyBody
			if len(bytes.TrimSpace(r.ctx.PostBody())) > 0 {
				if err := decodeSmall(r, &kb); err != nil {
					return 0, nil, err
				}
			}
			if kb.Key == "" {
				kb.Key = catalog.NewSecret("")
			}
			if slices.Contains(app.Keys, kb.Key) {
				return 0, nil, errf(409, "conflict", "the application already has this key")
			}
			app.Keys = append(app.Keys, kb.Key)
			return 201, kb, nil
		})
	case 1:
	default:
		return notFound("route")
	}
	key := s[0]
	if err := r.allow("GET", "PUT", "DELETE"); err != nil {
		return err
	}
	switch r.method {
	case "GET":
		return a.readApp(r, sid, aid, func(app *catalog.AppSpec) (any, error) {
			if !slices.Contains(app.Keys, key) {
				return nil, notFound("key")
			}
			return keyBody{Key: key}, nil
		})
	case "PUT":
		return a.withApp(r, sid, aid, func(app *catalog.AppSpec) (int, any, error) {
			if slices.Contains(app.Keys, key) {
				return 200, keyBody{Key: key}, nil
			}
			app.Keys = append(app.Keys, key)
			return 201, keyBody{Key: key}, nil
		})
	default:
		return a.withApp(r, sid, aid, func(app *catalog.AppSpec) (int, any, error) {
			i := slices.Index(app.Keys, key)
			if i < 0 {
				return 0, nil, notFound("key")
			}
			app.Keys = slices.Delete(app.Keys, i, i+1)
			if len(app.Keys) == 0 {
				app.Keys = nil
			}
			return 204, nil, nil
		})
	}
}

type filterBody struct {
	Filter string `json:"filter"`
}

func (a *API) routeReferrers(r *request, sid, aid string, s []string) error {
	switch len(s) {
	case 0:
		if err := r.allow("GET", "PUT", "POST"); err != nil {
			return err
		}
		switch r.method {
		case "GET":
			return a.readApp(r, sid, aid, func(app *catalog.AppSpec) (any, error) {
				return map[string]any{catalog.FieldName(app, &app.ReferrerFilters): nonNil(app.ReferrerFilters)}, nil
			})
		case "PUT":
			return a.withApp(r, sid, aid, func(app *catalog.AppSpec) (int, any, error) {
				var list []string
				if err := catalog.Decode(r.ctx.PostBody(), catalog.FormatJSON, &list); err != nil {
					return 0, nil, shapeError(err)
				}
				app.ReferrerFilters = list
				return 200, map[string]any{catalog.FieldName(app, &app.ReferrerFilters): nonNil(list)}, nil
			})
		default:
			return a.withApp(r, sid, aid, func(app *catalog.AppSpec) (int, any, error) {
				var fb filterBody
				if err := decodeSmall(r, &fb); err != nil {
					return 0, nil, err
				}
				if slices.Contains(app.ReferrerFilters, fb.Filter) {
					return 0, nil, errf(409, "conflict", "the application already has this referrer filter")
				}
				app.ReferrerFilters = append(app.ReferrerFilters, fb.Filter)
				return 201, fb, nil
			})
		}
	case 1:
	default:
		return notFound("route")
	}
	filter := s[0]
	if err := r.allow("GET", "DELETE"); err != nil {
		return err
	}
	if r.method == "GET" {
		return a.readApp(r, sid, aid, func(app *catalog.AppSpec) (any, error) {
			if !slices.Contains(app.ReferrerFilters, filter) {
				return nil, notFound("referrer filter")
			}
			return filterBody{Filter: filter}, nil
		})
	}
	return a.withApp(r, sid, aid, func(app *catalog.AppSpec) (int, any, error) {
		i := slices.Index(app.ReferrerFilters, filter)
		if i < 0 {
			return 0, nil, notFound("referrer filter")
		}
		app.ReferrerFilters = slices.Delete(app.ReferrerFilters, i, i+1)
		if len(app.ReferrerFilters) == 0 {
			app.ReferrerFilters = nil
		}
		return 204, nil, nil
	})
}
