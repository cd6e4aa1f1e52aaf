package admin

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
)

// gatewayState is the answer of GET and PUT .../gateway: the service's
// gateway block as stored, and the latest version of each environment.
type gatewayState struct {
	Gateway    *catalog.GatewaySpec `json:"gateway"`
	Staging    int64                `json:"staging_version"`
	Production int64                `json:"production_version"`
}

// promotion is the answer of POST .../gateway/promote.
type promotion struct {
	Environment  string `json:"environment"`
	Version      int64  `json:"version"`
	PromotedFrom int64  `json:"promoted_from"`
}

func (a *API) gatewayState(tenant, sid string, g *catalog.GatewaySpec) gatewayState {
	st := gatewayState{Gateway: g}
	if v := a.proj.GatewayVersion(tenant, sid, configlog.EnvStaging, 0); v != nil {
		st.Staging = v.Version
	}
	if v := a.proj.GatewayVersion(tenant, sid, configlog.EnvProduction, 0); v != nil {
		st.Production = v.Version
	}
	return st
}

// routeGateway serves /services/{id}/gateway (GET, PUT: the staging
// configuration) and /services/{id}/gateway/promote (POST: staging's
// latest version to production).
func (a *API) routeGateway(r *request, sid string, s []string) error {
	switch {
	case len(s) == 0:
		if err := r.allow("GET", "PUT"); err != nil {
			return err
		}
		if r.method == "GET" {
			return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) {
				return a.gatewayState(r.tenant, sid, svc.Gateway), nil
			})
		}
		var put *catalog.GatewaySpec
		err := a.changeService(r, sid, func(svc *catalog.ServiceSpec) (int, any, error) {
			var g catalog.GatewaySpec
			if err := decodeBody(r, nil, &g); err != nil {
				return 0, nil, err
			}
			svc.Gateway, put = &g, &g
			return 200, nil, nil
		})
		if err != nil || put == nil {
			return err
		}
		writeJSON(r.ctx, 200, a.gatewayState(r.tenant, sid, put))
		return nil
	case len(s) == 1 && s[0] == "promote":
		if err := r.allow("POST"); err != nil {
			return err
		}
		var body struct {
			Version int64 `json:"version"`
		}
		if b := r.ctx.PostBody(); len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil || body.Version < 0 {
				return errf(400, "bad_request", "body must be a JSON object, optionally with a positive version")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		defer cancel()
		v, err := a.proj.Promote(ctx, r.tenant, sid, body.Version)
		switch {
		case errors.Is(err, configlog.ErrNoVersion):
			return notFound("gateway version")
		case errors.Is(err, configlog.ErrStaleVersion):
			return errf(422, "invalid_config", "the staging version maps requests to a metric the service no longer has; edit the gateway first")
		case errors.Is(err, context.DeadlineExceeded):
			return errf(503, "unavailable", "the configuration log did not take the promotion in time; retry")
		case err != nil:
			return err
		}
		writeJSON(r.ctx, 201, promotion{Environment: v.Environment, Version: v.Version, PromotedFrom: v.PromotedFrom})
		return nil
	}
	return notFound("route")
}
