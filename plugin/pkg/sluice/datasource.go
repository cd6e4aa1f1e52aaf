package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
)

// PluginID is the data source's id in plugin.json; Grafana refuses a
// backend that registers under another.
const PluginID = "sluice-datasource"

// Datasource is one configured Sluice data source (one per Grafana data
// source and settings version). It is safe for concurrent use.
type Datasource struct {
	settings Settings
	err      error // settings that could not be read: every call says so
	api      *client
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory datasource.Manage calls when a data
// source is created or its settings change. Bad settings do not fail here:
// the health check and every query report them.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	st, err := ParseSettings(s.JSONData, s.URL, s.DecryptedSecureJSONData)
	if err == nil {
		err = st.check()
	}
	return &Datasource{settings: st, err: err, api: newClient(st)}, nil
}

// Dispose releases idle connections when Grafana replaces the instance.
func (d *Datasource) Dispose() { d.api.http.CloseIdleConnections() }

// CheckHealth tells Grafana's "Save & test" whether Sluice is reachable at
// the URL (GET /health) and then whether the token is valid (GET
// /api/v1/services, which reads only the configuration); the message says
// which of the two failed.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	fail := func(msg string) (*backend.CheckHealthResult, error) {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: msg}, nil
	}
	if d.err != nil {
		return fail("Settings: " + d.err.Error())
	}
	var h struct{ Status string }
	if err := d.api.get(ctx, pathHealth, nil, false, &h); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return fail(fmt.Sprintf("Not a Sluice query API at %s: /health answered HTTP %d", d.settings.URL, ae.Status))
		}
		return fail("S" + strings.TrimPrefix(err.Error(), "s")) // a sentence
	}
	if h.Status != "ok" {
		return fail(fmt.Sprintf("Not a Sluice query API at %s: /health did not say ok", d.settings.URL))
	}
	var sv servicesAnswer
	if err := d.api.get(ctx, pathServices, nil, true, &sv); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return fail("Sluice is reachable at " + d.settings.URL + ", but it refused the token (" + ae.Code + "): enter an admin or query token of the tenant")
		}
		return fail("Sluice is reachable, but listing services failed: " + err.Error())
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
		Message: "Sluice is reachable and the token is valid: " + strconv.Itoa(len(sv.Services)) + " service(s)"}, nil
}

// Resource paths of CallResource, the editors' pick lists.
const (
	resourceServices     = "services"
	resourceMetrics      = "metrics"
	resourceApplications = "applications"
)

// pickItem is one entry of a pick list.
type pickItem struct {
	Value       string `json:"value"`
	Label       string `json:"label"`
	Description string `json:"description,omitempty"`
}

// CallResource answers the editors' pick lists as JSON arrays of {value,
// label, description}: GET services, metrics?serviceId=S,
// applications?serviceId=S[&prefix=P][&limit=N].
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	send := func(status int, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode resource answer: %w", err)
		}
		return sender.Send(&backend.CallResourceResponse{Status: status,
			Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: b})
	}
	fail := func(err error) error {
		status := http.StatusBadGateway
		var ae *apiError
		if errors.As(err, &ae) {
			status = ae.Status
		}
		return send(status, map[string]string{"message": err.Error()})
	}
	if d.err != nil {
		return send(http.StatusBadRequest, map[string]string{"message": d.err.Error()})
	}
	if req.Method != http.MethodGet {
		return send(http.StatusMethodNotAllowed, map[string]string{"message": "use GET"})
	}
	u, err := url.Parse(req.URL)
	if err != nil {
		return send(http.StatusBadRequest, map[string]string{"message": "bad resource URL"})
	}
	q := u.Query()
	switch req.Path {
	case resourceServices, resourceMetrics:
		var sv servicesAnswer
		if err := d.api.get(ctx, pathServices, nil, true, &sv); err != nil {
			return fail(err)
		}
		out := []pickItem{}
		if req.Path == resourceServices {
			for _, s := range sv.Services {
				out = append(out, pickItem{Value: s.ID, Label: s.ID, Description: strconv.Itoa(len(s.Metrics)) + " metrics, " + strconv.Itoa(len(s.Plans)) + " plans"})
			}
			return send(http.StatusOK, out)
		}
		svc := q.Get("serviceId")
		for _, s := range sv.Services {
			if s.ID != svc {
				continue
			}
			for _, m := range s.Metrics {
				it := pickItem{Value: m.Name, Label: m.Name}
				if m.Parent != "" {
					it.Description = "counts toward " + m.Parent
				}
				out = append(out, it)
			}
		}
		return send(http.StatusOK, out)
	case resourceApplications:
		params := url.Values{"service_id": {q.Get("serviceId")}}
		if p := q.Get("prefix"); p != "" {
			params.Set("prefix", p)
		}
		if l := q.Get("limit"); l != "" {
			params.Set("limit", l)
		}
		var aa applicationsAnswer
		if err := d.api.get(ctx, pathApplications, params, true, &aa); err != nil {
			return fail(err)
		}
		out := []pickItem{}
		for _, a := range aa.Applications {
			out = append(out, pickItem{Value: a.ID, Label: a.ID, Description: "plan " + a.PlanID + ", " + a.State})
		}
		return send(http.StatusOK, out)
	}
	return send(http.StatusNotFound, map[string]string{"message": "no resource " + strconv.Quote(req.Path) + "; try services, metrics, applications"})
}
