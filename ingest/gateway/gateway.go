package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/internal/httpserver"
)

// Paging bounds: 3scale's admin API and APIcast use 500 as the largest and
// default page size.
const (
	MaxPerPage = 500
	MaxPage    = 1_000_000
)

// root is where this package's paths start; families are the paths below
// it that this package answers (the admin API keeps the rest of /admin).
const root = "/admin/api/"

var families = [][]byte{[]byte(root + "account/"), []byte(root + "services.json"), []byte(root + "services/")}

// Owns reports whether path is one of this package's: under
// /admin/api/account/ or /admin/api/services (3scale's paths; the admin
// API's are under /admin/api/v1). A router sends these paths to Handler
// and the HTTP server's failures on them to WriteFailure.
func Owns(path []byte) bool {
	for _, f := range families {
		if bytes.HasPrefix(path, f) {
			return true
		}
	}
	return false
}

// Options configure an API.
type Options struct {
	// Projection is the node's configuration projection (its Run going).
	Projection *configlog.Projection
	// PublicURL is where gateways reach this Sluice's Service Management
	// API: the `backend` of every proxy config (an absolute http or https
	// URL without path).
	PublicURL string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Timeout bounds a promotion's wait for the configuration log. Default
	// 10s.
	Timeout time.Duration
}

// API serves the gateway configuration endpoints.
type API struct {
	proj    *configlog.Projection
	backend backendJSON
	logger  *slog.Logger
	timeout time.Duration
}

// New returns the API, or an error when PublicURL is not an absolute http
// or https URL without a path.
func New(o Options) (*API, error) {
	u, err := url.Parse(o.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("gateway: public URL %q: want http(s)://host[:port] without a path", o.PublicURL)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &API{
		proj:    o.Projection,
		backend: backendJSON{Endpoint: u.Scheme + "://" + u.Host, Host: u.Host},
		logger:  o.Logger,
		timeout: o.Timeout,
	}, nil
}

// apiError is an error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

// errorBody is 3scale's error shape ({"error": text}) with a
// machine-readable code beside it.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Handler serves one request.
func (a *API) Handler(ctx *fasthttp.RequestCtx) {
	if err := a.serve(ctx); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			a.logger.Error("gateway: request failed", "err", err)
			ae = errf(500, "internal", "internal error")
		}
		writeJSON(ctx, ae.status, errorBody{Error: ae.message, Code: ae.code})
	}
}

// WriteFailure answers, in this package's JSON error shape, a request the
// HTTP server could not read.
func WriteFailure(ctx *fasthttp.RequestCtx, f httpserver.Failure) {
	writeJSON(ctx, f.Status, errorBody{Error: f.Reason, Code: f.Code()})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		ctx.Error("internal error", 500)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b.Bytes())
}

// request is one authenticated request.
type request struct {
	ctx    *fasthttp.RequestCtx
	tenant *catalog.Tenant
	snap   *catalog.Snapshot
	segs   []string // path segments after /admin/api/, unescaped, ".json" cut from the last
}

func (a *API) serve(ctx *fasthttp.RequestCtx) error {
	raw := string(ctx.URI().PathOriginal())
	rest, ok := strings.CutPrefix(raw, root)
	if !ok {
		return errf(404, "not_found", "no such route")
	}
	rest, ok = strings.CutSuffix(rest, ".json")
	if !ok {
		return errf(404, "not_found", "no such route: this API answers JSON, paths end in .json")
	}
	// Paths outside the served families are not found, token or not, as
	// the admin API answers paths outside its prefix.
	if first, _, _ := strings.Cut(rest, "/"); first != "account" && first != "services" {
		return errf(404, "not_found", "no such route")
	}
	snap := a.proj.Store().Load()
	tenant, status := authenticate(ctx, snap)
	switch status {
	case 401:
		ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="sluice"`)
		return errf(401, "unauthorized", "Authentication required: send the admin token as access_token or as the HTTP Basic user name")
	case 403:
		return errf(403, "access_denied", "Access denied")
	}
	var segs []string
	for _, s := range strings.Split(rest, "/") {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return errf(404, "not_found", "no such route")
		}
		segs = append(segs, u)
	}
	return a.route(&request{ctx: ctx, tenant: tenant, snap: snap, segs: segs})
}

// authenticate finds the tenant of the request's admin token: status 0 and
// the tenant, 401 when no token was sent, 403 when it is not an admin
// token. The map lookup finds the candidate; the constant-time comparison
// decides.
func authenticate(ctx *fasthttp.RequestCtx, snap *catalog.Snapshot) (*catalog.Tenant, int) {
	tok := ctx.QueryArgs().Peek("access_token")
	if len(tok) == 0 {
		tok = basicToken(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	}
	if len(tok) == 0 {
		return nil, 401
	}
	t := snap.AdminTokens[string(tok)]
	if t == nil || subtle.ConstantTimeCompare([]byte(t.AdminToken), tok) != 1 {
		return nil, 403
	}
	return t, 0
}

// basicToken returns the token of an HTTP Basic header: the user name when
// the password is empty (APIcast), the password when the user name is
// empty (the porta Go client); nothing otherwise.
func basicToken(h []byte) []byte {
	const scheme = "basic "
	if len(h) <= len(scheme) || !strings.EqualFold(string(h[:len(scheme)]), scheme) {
		return nil
	}
	enc := bytes.TrimSpace(h[len(scheme):])
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(dec, enc)
	if err != nil {
		return nil
	}
	user, pass, ok := bytes.Cut(dec[:n], []byte(":"))
	switch {
	case !ok:
		return nil
	case len(pass) == 0:
		return user
	case len(user) == 0:
		return pass
	}
	return nil
}

func (r *request) allow(methods ...string) error {
	m := string(r.ctx.Method())
	for _, x := range methods {
		if m == x {
			return nil
		}
	}
	r.ctx.Response.Header.Set("Allow", strings.Join(methods, ", "))
	return errf(405, "method_not_allowed", "method "+m+" not allowed here")
}

func (a *API) route(r *request) error {
	s := r.segs
	switch {
	case len(s) == 3 && s[0] == "account" && s[1] == "proxy_configs":
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.accountConfigs(r, s[2])
	case len(s) == 1 && s[0] == "services":
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.services(r)
	case len(s) >= 2 && s[0] == "services":
		svc := r.service(s[1])
		if svc == nil {
			return errf(404, "not_found", "no such service")
		}
		return a.routeService(r, svc, s[2:])
	}
	return errf(404, "not_found", "no such route")
}

func (a *API) routeService(r *request, svc *catalog.Service, s []string) error {
	switch {
	case len(s) == 0:
		if err := r.allow("GET"); err != nil {
			return err
		}
		writeJSON(r.ctx, 200, serviceEnvelope{Service: serviceOf(svc)})
		return nil
	case len(s) == 1 && s[0] == "proxy":
		if err := r.allow("GET"); err != nil {
			return err
		}
		spec := a.spec(svc)
		if spec == nil {
			return errf(404, "not_found", "no such service")
		}
		g := spec.Gateway.Effective(spec)
		writeJSON(r.ctx, 200, proxyEnvelope{Proxy: a.proxyOf(svc, &g)})
		return nil
	case len(s) >= 3 && s[0] == "proxy" && s[1] == "configs":
	default:
		return errf(404, "not_found", "no such route")
	}
	env := s[2]
	if !configlog.ValidEnv(env) {
		return errf(404, "not_found", "no such environment: want staging or production")
	}
	switch len(s) {
	case 3:
		if err := r.allow("GET"); err != nil {
			return err
		}
		return a.versions(r, svc, env)
	case 4:
		if err := r.allow("GET"); err != nil {
			return err
		}
		n, err := parseVersion(s[3])
		if err != nil {
			return err
		}
		v := a.proj.GatewayVersion(r.tenant.ID, svc.ID, env, n)
		if v == nil {
			return errf(404, "not_found", "no such version")
		}
		writeJSON(r.ctx, 200, configEnvelope{ProxyConfig: a.configOf(svc, v)})
		return nil
	case 5:
		if s[4] != "promote" {
			break
		}
		if err := r.allow("POST"); err != nil {
			return err
		}
		return a.promote(r, svc, env, s[3])
	}
	return errf(404, "not_found", "no such route")
}

// service returns the tenant's service id, or nil (another tenant's
// services included).
func (r *request) service(id string) *catalog.Service {
	if s := r.snap.Services[id]; s != nil && s.Tenant == r.tenant {
		return s
	}
	return nil
}

// spec returns a service's document form (its gateway block).
func (a *API) spec(svc *catalog.Service) *catalog.ServiceSpec {
	t := a.proj.Document().Tenant(svc.Tenant.ID)
	if t == nil {
		return nil
	}
	return t.Service(svc.ID)
}

// parseVersion reads a version segment: "latest" is 0.
func parseVersion(s string) (int64, error) {
	if s == "latest" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, errf(400, "invalid_version", "version must be latest or a positive integer")
	}
	return n, nil
}

// paging reads page and per_page: 1 and 500 when absent, 400 when not
// numbers in range.
func paging(r *request) (page, perPage int, err error) {
	page, perPage = 1, MaxPerPage
	args := r.ctx.QueryArgs()
	for _, p := range []struct {
		name string
		into *int
		max  int
	}{{"page", &page, MaxPage}, {"per_page", &perPage, MaxPerPage}} {
		v := args.Peek(p.name)
		if v == nil {
			continue
		}
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > p.max {
			return 0, 0, errf(400, "invalid_paging", fmt.Sprintf("%s must be an integer from 1 to %d", p.name, p.max))
		}
		*p.into = n
	}
	return page, perPage, nil
}

// window returns the bounds of page in a list of n items.
func window(n, page, perPage int) (lo, hi int) {
	lo64 := int64(page-1) * int64(perPage)
	if lo64 >= int64(n) {
		return n, n
	}
	lo = int(lo64)
	return lo, min(n, lo+perPage)
}

// sortedServices returns the tenant's services by id.
func sortedServices(t *catalog.Tenant) []*catalog.Service {
	out := make([]*catalog.Service, 0, len(t.Services))
	for _, s := range t.Services {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *API) services(r *request) error {
	page, perPage, err := paging(r)
	if err != nil {
		return err
	}
	all := sortedServices(r.tenant)
	lo, hi := window(len(all), page, perPage)
	out := servicesEnvelope{Services: make([]serviceEnvelope, 0, hi-lo)}
	for _, s := range all[lo:hi] {
		out.Services = append(out.Services, serviceEnvelope{Service: serviceOf(s)})
	}
	writeJSON(r.ctx, 200, out)
	return nil
}

// accountConfigs answers every service's configuration in env: the one
// APIcast loads (version latest, or a version number; host keeps the
// services whose hosts include it).
func (a *API) accountConfigs(r *request, env string) error {
	if !configlog.ValidEnv(env) {
		return errf(404, "not_found", "no such environment: want staging or production")
	}
	page, perPage, err := paging(r)
	if err != nil {
		return err
	}
	var version int64
	if v := r.ctx.QueryArgs().Peek("version"); len(v) > 0 {
		if version, err = parseVersion(string(v)); err != nil {
			return err
		}
	}
	host := string(r.ctx.QueryArgs().Peek("host"))
	var match []*configlog.GatewayVersion
	var svcs []*catalog.Service
	for _, s := range sortedServices(r.tenant) {
		v := a.proj.GatewayVersion(r.tenant.ID, s.ID, env, version)
		if v == nil || host != "" && !hasHost(v.Gateway.Hosts, host) {
			continue
		}
		match = append(match, v)
		svcs = append(svcs, s)
	}
	lo, hi := window(len(match), page, perPage)
	out := configsEnvelope{ProxyConfigs: make([]configEnvelope, 0, hi-lo)}
	for i := lo; i < hi; i++ {
		out.ProxyConfigs = append(out.ProxyConfigs, configEnvelope{ProxyConfig: a.configOf(svcs[i], match[i])})
	}
	writeJSON(r.ctx, 200, out)
	return nil
}

func hasHost(hosts []string, host string) bool {
	for _, h := range hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

func (a *API) versions(r *request, svc *catalog.Service, env string) error {
	page, perPage, err := paging(r)
	if err != nil {
		return err
	}
	all := a.proj.GatewayVersions(r.tenant.ID, svc.ID, env)
	lo, hi := window(len(all), page, perPage)
	out := configsEnvelope{ProxyConfigs: make([]configEnvelope, 0, hi-lo)}
	for _, v := range all[lo:hi] {
		out.ProxyConfigs = append(out.ProxyConfigs, configEnvelope{ProxyConfig: a.configOf(svc, v)})
	}
	writeJSON(r.ctx, 200, out)
	return nil
}

// promote is 3scale's promotion: a staging version to production, `to`
// from the form body, a JSON body or the query string.
func (a *API) promote(r *request, svc *catalog.Service, env, version string) error {
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	to := r.ctx.PostArgs().Peek("to")
	if len(to) == 0 {
		to = r.ctx.QueryArgs().Peek("to")
	}
	if len(to) == 0 && bytes.HasPrefix(r.ctx.Request.Header.ContentType(), []byte("application/json")) {
		var body struct {
			To string `json:"to"`
		}
		if json.Unmarshal(r.ctx.PostBody(), &body) != nil {
			return errf(400, "bad_request", "body must be a JSON object")
		}
		to = []byte(body.To)
	}
	if env != configlog.EnvStaging || string(to) != configlog.EnvProduction {
		return errf(422, "invalid_promotion", "a promotion goes from staging to production: POST .../configs/staging/{version}/promote.json with to=production")
	}
	if n == 0 {
		return errf(400, "invalid_version", "promote a version number, not latest")
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	v, err := a.proj.Promote(ctx, r.tenant.ID, svc.ID, n)
	if errors.Is(err, configlog.ErrNoVersion) {
		return errf(404, "not_found", "no such version")
	}
	if errors.Is(err, configlog.ErrStaleVersion) {
		return errf(422, "invalid_promotion", "the version maps requests to a metric the service no longer has; edit staging first")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errf(503, "unavailable", "the configuration log did not take the promotion in time; retry")
	}
	if err != nil {
		return fmt.Errorf("promote %s: %w", svc.ID, err)
	}
	writeJSON(r.ctx, 201, configEnvelope{ProxyConfig: a.configOf(svc, v)})
	return nil
}
