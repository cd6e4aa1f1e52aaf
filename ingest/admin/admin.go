// Package admin is the admin API: JSON over HTTP, per tenant, authenticated
// with the tenant's admin token (`Authorization: Bearer <admin_token>`), to
// read and change services, metrics, plans, limits, applications, app keys
// and referrer filters. Every change is validated as a whole configuration,
// written to the configuration log as events, and answered once this node
// has applied it, so a GET after a PUT sees the PUT. docs/admin-api.md in the
// repository lists every route; openapi.json describes each (served by
// ServeOpenAPI), and the package tests hold the API to it.
//
// A tenant sees only its own part of the configuration: every lookup starts
// from the tenant the token belongs to, so another tenant's services answer
// 404 exactly like services that do not exist.
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/internal/httpserver"
)

// Prefix is the path the API is mounted under.
const Prefix = "/admin/api/v1/"

// Owns reports whether path belongs to the admin API: /admin and
// everything under it. A router sends these paths to Handler, and errors
// the HTTP server meets on them to WriteFailure, so that every answer under
// /admin has the admin API's JSON shape (paths under /admin outside Prefix
// are 404 not_found).
func Owns(path []byte) bool {
	const root = "/admin"
	return len(path) >= len(root) && string(path[:len(root)]) == root &&
		(len(path) == len(root) || path[len(root)] == '/')
}

// MaxBodySize bounds request bodies; larger ones get 413. The fasthttp
// server's MaxRequestBodySize must be at least this.
const MaxBodySize = 1 << 20

// API serves the admin API over a configuration projection.
type API struct {
	proj    *configlog.Projection
	logger  *slog.Logger
	timeout time.Duration
}

// New returns the admin API reading and writing the configuration through
// proj, whose Run must be going. Changes that the projection has not applied
// within timeout (0: 10s) fail with 503.
func New(proj *configlog.Projection, logger *slog.Logger, timeout time.Duration) *API {
	if logger == nil {
		logger = slog.Default()
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &API{proj: proj, logger: logger, timeout: timeout}
}

// apiError is an error answer.
type apiError struct {
	status  int
	code    string
	message string
	details []catalog.Problem
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg}
}

func notFound(what string) *apiError { return errf(404, "not_found", what+" not found") }

// request is one call, authenticated.
type request struct {
	ctx    *fasthttp.RequestCtx
	tenant string // the token's tenant id
	method string
	segs   []string // path segments after Prefix, unescaped
	// scope is the part of the configuration the route reads and writes:
	// the service the path names (every tenant, service and plan when it
	// names none) and the one application it names, if any (see
	// configlog.Scope and UpdateIn).
	scope configlog.Scope
}

// Handler serves one admin API request.
func (a *API) Handler(ctx *fasthttp.RequestCtx) {
	if err := a.serve(ctx); err != nil {
		a.writeError(ctx, err)
	}
}

func (a *API) serve(ctx *fasthttp.RequestCtx) error {
	raw := string(ctx.URI().PathOriginal())
	rest, ok := strings.CutPrefix(raw, Prefix)
	if !ok {
		// Nothing is served outside Prefix: no token opens it.
		return notFound("route")
	}
	tenant, ok := a.authenticate(ctx)
	if !ok {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
		return errf(401, "unauthorized", "missing or invalid admin token")
	}
	rest = strings.TrimSuffix(rest, "/")
	var segs []string
	if rest != "" {
		for _, s := range strings.Split(rest, "/") {
			u, err := url.PathUnescape(s)
			if err != nil || u == "" {
				return errf(400, "bad_request", "malformed path")
			}
			segs = append(segs, u)
		}
	}
	if len(ctx.PostBody()) > MaxBodySize {
		return errf(413, "body_too_large", "request body larger than "+strconv.Itoa(MaxBodySize)+" bytes")
	}
	r := &request{ctx: ctx, tenant: tenant, method: string(ctx.Method()), segs: segs}
	r.scope.Tenant = tenant
	if len(segs) >= 2 && segs[0] == "services" {
		r.scope.Service = segs[1]
		if len(segs) >= 4 && segs[2] == "applications" {
			r.scope.Apps = []string{segs[3]}
		}
	}
	return a.route(r)
}

// authenticate returns the tenant of the bearer token. The map lookup finds
// the candidate; the constant-time comparison is what decides.
func (a *API) authenticate(ctx *fasthttp.RequestCtx) (string, bool) {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(string(h[:len(scheme)]), scheme) {
		return "", false
	}
	tok := bytes.TrimSpace(h[len(scheme):])
	t := a.proj.Store().Load().AdminTokens[string(tok)]
	if t == nil || subtle.ConstantTimeCompare([]byte(t.AdminToken), tok) != 1 {
		return "", false
	}
	return t.ID, true
}

// methods checks r's method against the allowed ones.
func (r *request) allow(methods ...string) error {
	for _, m := range methods {
		if r.method == m {
			return nil
		}
	}
	r.ctx.Response.Header.Set("Allow", strings.Join(methods, ", "))
	return errf(405, "method_not_allowed", "method "+r.method+" not allowed here")
}

func (a *API) route(r *request) error {
	s := r.segs
	switch {
	case len(s) == 1 && s[0] == "config":
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.getConfig(r)
	case len(s) >= 1 && s[0] == "services":
		return a.routeServices(r, s[1:])
	}
	return notFound("route")
}

func (a *API) routeServices(r *request, s []string) error {
	if len(s) == 0 {
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.read(r, func(t *catalog.TenantSpec) (any, error) {
			return pageOf(r, catalog.FieldName(t, &t.Services), t.Services)
		})
	}
	sid := s[0]
	s = s[1:]
	if len(s) == 0 {
		if err := r.allow("GET", "PUT", "DELETE"); err != nil {
			return err
		}
		switch r.method {
		case "GET":
			return a.readService(r, sid, func(svc *catalog.ServiceSpec) (any, error) { return svc, nil })
		case "PUT":
			return a.putService(r, sid)
		default:
			return a.deleteService(r, sid)
		}
	}
	switch s[0] {
	case "metrics":
		return a.routeMetrics(r, sid, s[1:])
	case "plans":
		return a.routePlans(r, sid, s[1:])
	case "applications":
		return a.routeApps(r, sid, s[1:])
	case "gateway":
		return a.routeGateway(r, sid, s[1:])
	}
	return notFound("route")
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// read answers a GET from the request's scope of the current
// configuration: services without their applications (they have their own
// paged list), and the one application the path names.
func (a *API) read(r *request, fn func(t *catalog.TenantSpec) (any, error)) error {
	t := a.proj.View(r.scope).Tenant(r.tenant)
	if t == nil {
		return notFound("tenant")
	}
	v, err := fn(t)
	if err != nil {
		return err
	}
	writeJSON(r.ctx, 200, v)
	return nil
}

func (a *API) readService(r *request, sid string, fn func(s *catalog.ServiceSpec) (any, error)) error {
	return a.read(r, func(t *catalog.TenantSpec) (any, error) {
		svc := t.Service(sid)
		if svc == nil {
			return nil, notFound("service")
		}
		return fn(svc)
	})
}

// change runs fn on the tenant's part of a copy of the configuration and
// commits the result through the projection. fn returns the status and body
// of the answer.
func (a *API) change(r *request, fn func(t *catalog.TenantSpec) (int, any, error)) error {
	return a.changeDoc(r, func(_ *catalog.Document, t *catalog.TenantSpec) (int, any, error) { return fn(t) })
}

// changeDoc is change for the few changes that must also read the other
// tenants' part of the copy (never write it): the copy is the configuration
// the change applies to, later than any snapshot read before the change.
func (a *API) changeDoc(r *request, fn func(doc *catalog.Document, t *catalog.TenantSpec) (int, any, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	var (
		status int
		body   any
		ti     int
	)
	err := a.proj.UpdateIn(ctx, r.scope, func(doc *catalog.Document) error {
		ti = -1
		for i := range doc.Tenants {
			if doc.Tenants[i].ID == r.tenant {
				ti = i
			}
		}
		if ti < 0 {
			return notFound("tenant")
		}
		// UpdateIn may run the change twice (in its scope, then on the
		// whole document): the answer is the last run's.
		var err error
		status, body, err = fn(doc, &doc.Tenants[ti])
		return err
	})
	var ae *apiError
	var ve *catalog.ValidationError
	switch {
	case err == nil:
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, configlog.ErrConflict):
		// Valid alone, invalid with a change another node made at the same
		// time (the same new service id for two tenants): taken back.
		return errf(409, "conflict", "the change conflicts with a concurrent change and was not made; retry")
	case errors.As(err, &ve):
		return invalid(ve, ti)
	case errors.Is(err, context.DeadlineExceeded):
		a.logger.Error("admin: change not applied in time", "tenant", r.tenant, "err", err)
		return errf(503, "unavailable", "the change was not applied in time; retry")
	default:
		a.logger.Error("admin: change failed", "tenant", r.tenant, "err", err)
		return errf(500, "internal", "the change could not be written")
	}
	if status == 204 {
		r.ctx.SetStatusCode(204)
		return nil
	}
	writeJSON(r.ctx, status, body)
	return nil
}

// invalid turns validation problems into a 422, keeping only the problems in
// the caller's tenant (paths relative to it): another tenant's configuration
// is none of the caller's business.
func invalid(ve *catalog.ValidationError, ti int) *apiError {
	prefix := "tenants[" + strconv.Itoa(ti) + "]."
	e := errf(422, "invalid_config", "the change would make the configuration invalid")
	for _, p := range ve.Problems {
		rel, ok := strings.CutPrefix(p.Path, prefix)
		if !ok {
			continue
		}
		e.details = append(e.details, catalog.Problem{Path: rel, Message: strings.ReplaceAll(p.Message, prefix, "")})
	}
	if len(e.details) == 0 {
		e.message = "the change conflicts with the configuration of another tenant"
	} else {
		e.message = strconv.Itoa(len(e.details)) + " problem(s): " + e.details[0].String()
	}
	return e
}

// decodeBody decodes a JSON body into into, starting from current: fields
// the body leaves out keep current's values, `null` resets a field. Unknown
// fields and wrong types answer 422 with their paths.
func decodeBody(r *request, current, into any) error {
	body := r.ctx.PostBody()
	var overlay map[string]json.RawMessage
	if err := json.Unmarshal(body, &overlay); err != nil || overlay == nil {
		return errf(400, "bad_request", "body must be a JSON object")
	}
	base := map[string]json.RawMessage{}
	if current != nil {
		b, _ := json.Marshal(current)
		_ = json.Unmarshal(b, &base)
	}
	for k, v := range overlay {
		base[k] = v
	}
	merged, _ := json.Marshal(base)
	if err := catalog.Decode(merged, catalog.FormatJSON, into); err != nil {
		return shapeError(err)
	}
	return nil
}

func shapeError(err error) error {
	var ve *catalog.ValidationError
	if errors.As(err, &ve) {
		e := errf(422, "invalid_config", "the body does not have the expected shape")
		e.details = ve.Problems
		return e
	}
	return errf(400, "bad_request", "malformed JSON body")
}

// checkID: an id in the body, if any, must be the one in the path.
func checkID(got, want, field string) error {
	if got != want {
		e := errf(422, "invalid_config", field+" in the body does not match the path")
		e.details = []catalog.Problem{{Path: field, Message: "must be " + strconv.Quote(want) + " as in the path"}}
		return e
	}
	return nil
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details []catalog.Problem `json:"details,omitempty"`
}

func (a *API) writeError(ctx *fasthttp.RequestCtx, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		a.logger.Error("admin: request failed", "err", err)
		ae = errf(500, "internal", "internal error")
	}
	writeJSON(ctx, ae.status, errorBody{Error: errorDetail{Code: ae.code, Message: ae.message, Details: ae.details}})
}

// WriteFailure answers, in the admin API's JSON error shape, a request
// under /admin that the HTTP server could not read: 413 body_too_large, 414
// uri_too_long, 431 header_too_large, anything else 400 bad_request.
func WriteFailure(ctx *fasthttp.RequestCtx, f httpserver.Failure) {
	writeJSON(ctx, f.Status, errorBody{Error: errorDetail{Code: f.Code(), Message: f.Reason}})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // plain data: cannot fail
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b.Bytes())
}
