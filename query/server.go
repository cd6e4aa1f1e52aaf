package query

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/httpserver"
	"github.com/sluice-dev/sluice/query/billing"
)

// DefaultQueryTimeout is Options.QueryTimeout's default: long enough for a
// month of hourly points over thousands of applications, short enough that a
// dashboard sees a clear 503 instead of hanging.
const DefaultQueryTimeout = 10 * time.Second

// Options configure a Server. Catalog and Conn are required.
type Options struct {
	// Catalog publishes the configuration: tokens, services, metrics.
	// *catalog.Store satisfies it.
	Catalog interface{ Load() *catalog.Snapshot }
	// Conn is a native-protocol ClickHouse connection (pool), e.g. from
	// chschema.Connect. The Server does not close it.
	Conn driver.Conn
	// Database holds the rollup tables. Default chschema.DefaultDatabase.
	Database string
	// QueryTimeout bounds every series, top and denials call: the call
	// answers within it. A query still running a quarter of it (at most 1 s)
	// before its end is killed on the server, confirmed gone, and the call
	// answers 503 query_timeout; the query's max_execution_time (whole
	// seconds, rounded up) is its share too. Default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// ExportTimeout bounds a billing export (max_execution_time). Default
	// billing.DefaultTimeout.
	ExportTimeout time.Duration
	// Logger receives errors and slow queries. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for default ranges. Default time.Now.
	Now func() time.Time
	// Changes answers /api/v1/changes; without it that endpoint answers 503
	// changes_unavailable. Run it on the node's configuration log.
	Changes *ChangeFeed
}

// Server answers the query API. Its Handler is safe for concurrent use.
type Server struct {
	cat     interface{ Load() *catalog.Snapshot }
	conn    driver.Conn
	db      string
	timeout time.Duration
	export  time.Duration
	log     *slog.Logger
	now     func() time.Time

	// slowdown, if set, is a constant SQL condition added to every table
	// read: the tests' way to make a query genuinely slow on the server.
	slowdown string
	// maxGroups is MaxGroups, lowered by a test.
	maxGroups int
	// maxCandidates is MaxTopCandidates, lowered by a test.
	maxCandidates int
	// changeFeed is Options.Changes.
	changeFeed *ChangeFeed
}

// New checks o and returns a Server.
func New(o Options) (*Server, error) {
	if o.Catalog == nil || o.Conn == nil {
		return nil, errors.New("query: Catalog and Conn are required")
	}
	if o.Database == "" {
		o.Database = chschema.DefaultDatabase
	}
	if err := chschema.CheckDatabase(o.Database); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.ExportTimeout <= 0 {
		o.ExportTimeout = billing.DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{cat: o.Catalog, conn: o.Conn, db: o.Database, timeout: o.QueryTimeout,
		export: o.ExportTimeout, log: o.Logger, now: o.Now, maxGroups: MaxGroups,
		maxCandidates: MaxTopCandidates, changeFeed: o.Changes}, nil
}

// Paths of the API.
const (
	PathUsage    = "/api/v1/usage"
	PathTop      = "/api/v1/top"
	PathDenials  = "/api/v1/denials"
	PathExport   = "/api/v1/export"
	PathHealth   = "/health"
	statsService = "/stats/services/"
	statsApp     = "/stats/applications/"
	statsSuffix  = "/usage.json"
)

// Handler serves one request.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	defer func() {
		if r := recover(); r != nil {
			// The endpoint, not the path: a path is the client's bytes.
			s.log.Error("query API panic", "endpoint", endpointOf(string(ctx.Path())), "panic", r, "stack", string(debug.Stack()))
			writeError(ctx, errf(500, "internal_error", "internal error"))
		}
	}()
	if e := s.route(ctx); e != nil {
		writeError(ctx, e)
	}
}

func (s *Server) route(ctx *fasthttp.RequestCtx) *apiError {
	path := string(ctx.Path())
	var h func(*fasthttp.RequestCtx, scope, *catalog.Snapshot) *apiError
	stats := false
	switch {
	case path == PathHealth, path == PathOpenAPI:
		if !ctx.IsGet() && !ctx.IsHead() {
			return errf(405, "method_not_allowed", "use GET")
		}
		ctx.SetContentType("application/json")
		if path == PathHealth {
			ctx.SetBodyString(`{"status":"ok"}` + "\n")
		} else {
			ctx.SetBody(openAPI)
		}
		return nil
	case path == PathUsage:
		h = s.usage
	case path == PathTop:
		h = s.top
	case path == PathDenials:
		h = s.denials
	case path == PathExport:
		h = s.exportHandler
	case path == PathAlerts:
		h = s.alerts
	case path == PathUtilization:
		h = s.utilization
	case path == PathChanges:
		h = s.changes
	case path == PathServices:
		h = s.services
	case path == PathApplications:
		h = s.applications
	case isStats(path, statsService):
		id := path[len(statsService) : len(path)-len(statsSuffix)]
		h = func(c *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
			return s.stats(c, sc, snap, id, "")
		}
		stats = true
	case isStats(path, statsApp):
		id := path[len(statsApp) : len(path)-len(statsSuffix)]
		h = func(c *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
			return s.stats(c, sc, snap, "", id)
		}
		stats = true
	default:
		return errf(404, "not_found", "no such endpoint; see /api/v1/usage, /api/v1/top, /api/v1/denials, /api/v1/utilization, /api/v1/changes, /api/v1/services, /api/v1/applications, /api/v1/export, /api/v1/alerts, /stats/...")
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		return errf(405, "method_not_allowed", "use GET")
	}
	snap := s.cat.Load()
	if snap == nil {
		return errf(503, "clickhouse_unavailable", "configuration not loaded yet")
	}
	sc, e := authenticate(ctx, snap, stats)
	if e != nil {
		return e
	}
	sc.slowdown = s.slowdown
	return h(ctx, sc, snap)
}

// endpointOf names the endpoint a path is routed to, for log lines.
func endpointOf(path string) string {
	switch {
	case path == PathHealth, path == PathUsage, path == PathTop, path == PathDenials, path == PathExport,
		path == PathUtilization, path == PathChanges, path == PathServices, path == PathApplications, path == PathAlerts:
		return path
	case isStats(path, statsService):
		return statsService + "{id}" + statsSuffix
	case isStats(path, statsApp):
		return statsApp + "{id}" + statsSuffix
	}
	return "unknown"
}

// isStats reports whether path is prefix + id + statsSuffix. The prefix and
// the suffix must not overlap: fasthttp folds "//" in paths, so an empty id
// turns "/stats/services//usage.json" into "/stats/services/usage.json".
func isStats(path, prefix string) bool {
	return len(path) >= len(prefix)+len(statsSuffix) && strings.HasPrefix(path, prefix) && strings.HasSuffix(path, statsSuffix)
}

// authenticate maps the request's token to its tenant: the only place a
// scope is made. Tokens come from `Authorization: Bearer`, or for the
// 3scale-style stats endpoints also from access_token, as 3scale's tools send
// it.
func authenticate(ctx *fasthttp.RequestCtx, snap *catalog.Snapshot, allowParam bool) (scope, *apiError) {
	tok := ""
	if h := ctx.Request.Header.Peek("Authorization"); len(h) > 0 {
		const p = "bearer "
		if len(h) <= len(p) || !strings.EqualFold(string(h[:len(p)]), p) {
			return scope{}, errf(401, "invalid_token", "Authorization must be `Bearer <token>`")
		}
		tok = strings.TrimSpace(string(h[len(p):]))
	} else if allowParam {
		tok, _ = arg(ctx, "access_token")
	}
	if tok == "" {
		return scope{}, errf(401, "missing_token", "send `Authorization: Bearer <admin or query token>`")
	}
	if t := snap.QueryTokens[tok]; t != nil {
		for _, q := range t.QueryTokens {
			if subtle.ConstantTimeCompare([]byte(q), []byte(tok)) == 1 && t.ID != "" {
				return scope{tenant: t.ID}, nil
			}
		}
	}
	if t := snap.AdminTokens[tok]; t != nil && t.ID != "" && subtle.ConstantTimeCompare([]byte(t.AdminToken), []byte(tok)) == 1 {
		return scope{tenant: t.ID}, nil
	}
	return scope{}, errf(401, "invalid_token", "unknown token")
}

// writeJSON answers v with 200.
func writeJSON(ctx *fasthttp.RequestCtx, v any) *apiError {
	b, err := json.Marshal(v)
	if err != nil {
		return errf(500, "internal_error", "encode answer")
	}
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
	return nil
}

// MaxURLLength bounds the request line of a query API call: a longer one
// is 414 uri_too_long. Every parameter of the API fits many times over.
const MaxURLLength = 8 << 10

// HTTPServer returns the HTTP server of the query listener with handler
// s.Handler: small request limits (every call is a GET), a write timeout
// long enough for an export, and the guarantees of internal/httpserver (no
// request bytes in logs, bare-LF and non-HTTP requests refused at once).
// Requests it cannot read get the API's JSON errors: 400 bad_request, 413
// body_too_large, 414 uri_too_long, 431 header_too_large.
func (s *Server) HTTPServer() *httpserver.Server {
	return httpserver.New(&fasthttp.Server{
		Handler:            s.Handler,
		Name:               "sluice-query",
		ReadBufferSize:     16 << 10,
		MaxRequestBodySize: 64 << 10,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       s.export + 30*time.Second,
		IdleTimeout:        2 * time.Minute,
		NoDefaultDate:      true,
	}, httpserver.Options{Logger: s.log, OnFailure: writeFailure, MaxRequestLine: MaxURLLength})
}

// writeFailure answers a request the HTTP server could not read.
func writeFailure(ctx *fasthttp.RequestCtx, f httpserver.Failure) {
	writeError(ctx, errf(f.Status, f.Code(), f.Reason))
}

// Serve answers on ln until ctx is done, then stops accepting and lets
// in-flight calls finish (up to 30 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("query API shutdown: %w", err)
	}
	return nil
}
