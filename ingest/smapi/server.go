package smapi

import (
	"log/slog"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/httpserver"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// EventSink receives the usage events of accepted and denied calls. Append
// must copy or encode e before it returns: the handler reuses e at once. An
// error means the event was not taken (a full spool with the refuse policy);
// the handler then answers 503 for calls whose usage it could not record.
type EventSink interface {
	Append(e *event.Event) error
}

// SinkHealth is optionally implemented by an EventSink that can refuse
// events. Accepting reports whether Append is currently expected to succeed;
// authrep and report consult it before they count usage in the limiter, so
// that a full spool turns into a 503 without counted-but-unrecorded usage.
// It must be cheap and must not block.
type SinkHealth interface {
	Accepting() bool
}

// Verdict is a Router's answer for one call.
type Verdict uint8

const (
	// Decide: this node decides the call.
	Decide Verdict = iota
	// Answered: the answer is in the request context already (relayed from
	// the node that decided it).
	Answered
	// Unavailable: no node can decide the call now; it is answered 503 with
	// Retry-After.
	Unavailable
)

// Router places calls in a cluster of API nodes (cluster.Node implements
// it). Route is called for authorize and authrep calls (and their OAuth
// variants) that passed every check before the limits, so that a call is
// decided by the node that owns its application. After a Decide verdict the
// server calls Done(token, units) once the call's event is appended, with the
// usage units it admitted (0 for a denial or an authorize).
type Router interface {
	Route(ctx *fasthttp.RequestCtx, svc *catalog.Service, app *catalog.App) (token int32, v Verdict)
	Done(token int32, units int64)
}

// Options configure a Server. Catalog and Limiter are required.
type Options struct {
	// Catalog publishes the configuration snapshot; Load is called once per
	// request. *catalog.Store satisfies it.
	Catalog interface{ Load() *catalog.Snapshot }
	// Limiter holds the usage counters.
	Limiter *limiter.Limiter
	// Sink receives usage events. Default: events are discarded (counted as
	// dropped), which is only right for tests and benchmarks.
	Sink EventSink
	// Clock is read once per request for event timestamps and the report
	// timestamp window. Default: time.Now. Give the Limiter the same clock.
	Clock func() time.Time
	// Region and Node are stamped on every event.
	Region, Node string
	// Version is reported by /status.
	Version string
	// Ready reports whether config is loaded and counters are restored. Until
	// it returns true, /status answers "starting" with 503 and the
	// transaction endpoints answer 503 service_unavailable. Default: always
	// ready.
	Ready func() bool
	// Metrics receives the server's metrics and is served at GET /metrics.
	// Default: a private registry (nothing is served).
	Metrics *metrics.Registry
	// Router, in a cluster, says which node decides each call. Default:
	// this node decides every call.
	Router Router
	// IDs hands out event ids. Default: a fresh generator. A cluster node
	// shares it with its projection, which skips this process's own events
	// by their id prefix.
	IDs *event.IDGenerator
	// Status, if set, appends further members to the /status JSON object
	// (`"name":value`, without a leading comma).
	Status func(dst []byte) []byte
	// Watcher, if set, sees the counters every admitted authrep and every
	// reported transaction moved (utilization alerts).
	Watcher UsageWatcher
	// Caps, with regions side by side, narrows the strict global limits of
	// a plan to this region's share (ingest/region.Shares). Default: none.
	Caps Caps
}

// Caps narrows the limits of plans with strict global limits
// (catalog.Plan.Strict) to what this region may admit: Cap gets a copy of
// the plan's limits in dst and lowers the Max of each strict one; the server
// calls Done with Cap's token once the limiter has decided. Both are on the
// hot path and must not block. Answers still show the plan's max.
type Caps interface {
	Cap(dst []limiter.Limit, app *catalog.App, now time.Time) ([]limiter.Limit, uint32)
	Done(token uint32)
}

// Server answers the 3scale Service Management API. Its Handler is safe for
// concurrent use.
type Server struct {
	cat     interface{ Load() *catalog.Snapshot }
	lim     *limiter.Limiter
	sink    EventSink
	health  SinkHealth
	clock   func() time.Time
	ready   func() bool
	region  string
	node    string
	ids     *event.IDGenerator
	reg     *metrics.Registry
	serveMx bool
	router  Router
	caps    Caps
	status  func(dst []byte) []byte
	watch   UsageWatcher

	statusOK, statusStarting []byte

	pool sync.Pool // *reqState
	m    serverMetrics
	errs errorLog // report transactions not recorded, per service
}

// New returns a Server. It panics if Catalog or Limiter is nil: a server
// without them cannot answer anything.
func New(o Options) *Server {
	if o.Catalog == nil || o.Limiter == nil {
		panic("smapi: Options.Catalog and Options.Limiter are required")
	}
	s := &Server{
		cat:    o.Catalog,
		lim:    o.Limiter,
		sink:   o.Sink,
		clock:  o.Clock,
		ready:  o.Ready,
		region: o.Region,
		node:   o.Node,
		ids:    o.IDs,
		reg:    o.Metrics,
		router: o.Router,
		caps:   o.Caps,
		status: o.Status,
		watch:  o.Watcher,
	}
	if s.ids == nil {
		s.ids = event.NewIDGenerator()
	}
	if s.sink == nil {
		s.sink = discardSink{}
	}
	s.health, _ = s.sink.(SinkHealth)
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.ready == nil {
		s.ready = func() bool { return true }
	}
	if s.reg == nil {
		s.reg = metrics.NewRegistry()
	} else {
		s.serveMx = true
	}
	s.statusOK = appendStatusJSON(nil, "ok", o.Version)
	s.statusStarting = appendStatusJSON(nil, "starting", o.Version)
	s.pool.New = func() any { return newReqState() }
	s.m.register(s.reg, s.lim)
	return s
}

type discardSink struct{}

func (discardSink) Append(*event.Event) error { return errDiscarded }

type sinkError string

func (e sinkError) Error() string { return string(e) }

const errDiscarded = sinkError("smapi: no event sink configured")

func appendStatusJSON(dst []byte, status, version string) []byte {
	dst = append(dst, `{"status":"`...)
	dst = append(dst, status...)
	dst = append(dst, `","version":{"backend":"`...)
	for i := 0; i < len(version); i++ {
		c := version[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			// Control characters have no place in a version string.
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, `"}}`...)
}

// reqState is the per-request scratch memory, pooled so that the hot path
// does not allocate once the pool is warm.
type reqState struct {
	arena  []byte
	p      authParams
	opts   options
	lreq   limiter.Request
	capped []limiter.Limit // the plan's limits narrowed by Caps
	usage  []limiter.Usage
	dec    limiter.Decision
	ev     event.Event
	body   []byte
	reason []byte
	num    []byte
	batch  *batch
	// changes are the counters a reported transaction moved (with a
	// Watcher).
	changes []limiter.Change
}

func newReqState() *reqState {
	st := &reqState{
		arena:  make([]byte, 0, 4096),
		usage:  make([]limiter.Usage, 0, limiter.MaxUsage),
		body:   make([]byte, 0, 2048),
		reason: make([]byte, 0, 256),
		num:    make([]byte, 0, 32),
	}
	st.p.usage = make([]rawUsage, 0, limiter.MaxUsage)
	st.dec.Reports = make([]limiter.Report, 0, 16)
	st.ev.Usage = make([]event.Usage, 0, limiter.MaxUsage)
	return st
}

func (st *reqState) reset() {
	st.arena = st.arena[:0]
	st.p.reset()
	st.opts = options{}
	st.usage = st.usage[:0]
	st.body = st.body[:0]
	st.reason = st.reason[:0]
	st.num = st.num[:0]
}

// maxPooledArena bounds the decode arena a pooled reqState keeps: a request
// line may be 1 MiB long, and the pool must not keep one such arena per
// state it holds after such requests have passed.
const maxPooledArena = 64 << 10

// maxPooledTxns bounds the transactions a pooled reqState keeps room for
// (about 300 bytes each): batches of a few hundred are what agents send, and
// a state that drops its room after each of them allocates it anew for the
// next one.
const maxPooledTxns = 512

// putState returns st to the pool, unless a long request grew its arena (or
// a large batch its transactions) past what ordinary calls need; the garbage
// collector takes those.
func (s *Server) putState(st *reqState) {
	if cap(st.arena) > maxPooledArena || (st.batch != nil && cap(st.batch.txns) > maxPooledTxns) {
		return
	}
	s.pool.Put(st)
}

// endpoint identifies a route for dispatch and metrics.
type endpoint uint8

const (
	epAuthorize endpoint = iota
	epAuthrep
	epOAuthAuthorize
	epOAuthAuthrep
	epReport
	epStatus
	epCheck
	epAvailable
	epMetrics
	epErrors
	epUnknown
	numEndpoints
)

var endpointNames = [numEndpoints]string{
	"authorize", "authrep", "oauth_authorize", "oauth_authrep", "report",
	"status", "check", "available", "metrics", "errors", "unknown",
}

func route(path []byte) endpoint {
	switch string(path) {
	case "/transactions/authorize.xml":
		return epAuthorize
	case "/transactions/authrep.xml":
		return epAuthrep
	case "/transactions/oauth_authorize.xml":
		return epOAuthAuthorize
	case "/transactions/oauth_authrep.xml":
		return epOAuthAuthrep
	case "/transactions.xml":
		return epReport
	case "/status":
		return epStatus
	case "/check.txt":
		return epCheck
	case "/available":
		return epAvailable
	case "/metrics":
		return epMetrics
	}
	if _, ok := errorsServiceID(path); ok {
		return epErrors
	}
	return epUnknown
}

// outcome classifies an answer for metrics.
type outcome uint8

const (
	outAuthorized outcome = iota // 200 on authorize/authrep, 202 on report, 2xx elsewhere
	outDenied                    // 409
	outError                     // 4xx/5xx
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"authorized", "denied", "error"}

var (
	ctXML          = []byte(ContentType)
	ctJSON         = []byte("application/json")
	ctText         = []byte("text/plain; charset=utf-8")
	hdrOptions     = []byte("3scale-options")
	hdrRejection   = []byte("3scale-rejection-reason")
	hdrLimitRemain = []byte("3scale-limit-remaining")
	hdrLimitReset  = []byte("3scale-limit-reset")
	hdrLimitMax    = []byte("3scale-limit-max-value")
	hdrAllow       = []byte("Allow")
	allowGet       = []byte("GET")
	allowGetHead   = []byte("GET, HEAD")
	allowPost      = []byte("POST")
	bodyCheck      = []byte("ok\n")
)

// Handler serves one request. Mount it as the fasthttp handler of the API
// listener (or call it from a router for the paths it owns).
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	ep := route(ctx.Path())
	out := s.dispatch(ctx, ep)
	s.m.requests[ep][out].Inc()
	s.m.latency[ep].ObserveDuration(time.Since(start))
}

func (s *Server) dispatch(ctx *fasthttp.RequestCtx, ep endpoint) outcome {
	ctx.Response.Header.DisableNormalizing()
	if len(ctx.Request.Header.RequestURI()) > MaxURLLength {
		return s.writeError(ctx, nil, errRequestURITooLong, nil, nil)
	}
	switch ep {
	case epAuthorize, epAuthrep, epOAuthAuthorize, epOAuthAuthrep:
		if !ctx.IsGet() {
			ctx.Response.Header.SetBytesKV(hdrAllow, allowGet)
			return s.writeError(ctx, nil, errMethodNotAllowed, nil, nil)
		}
		if !s.ready() {
			return s.writeError(ctx, nil, errServiceUnavailable, nil, nil)
		}
		st := s.pool.Get().(*reqState)
		st.reset()
		out := s.authorize(ctx, st, ep)
		s.putState(st)
		return out
	case epReport:
		if !ctx.IsPost() {
			ctx.Response.Header.SetBytesKV(hdrAllow, allowPost)
			return s.writeError(ctx, nil, errMethodNotAllowed, nil, nil)
		}
		if !s.ready() {
			return s.writeError(ctx, nil, errServiceUnavailable, nil, nil)
		}
		st := s.pool.Get().(*reqState)
		st.reset()
		out := s.report(ctx, st)
		s.putState(st)
		return out
	case epStatus:
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.SetBytesKV(hdrAllow, allowGetHead)
			return s.writeError(ctx, nil, errMethodNotAllowed, nil, nil)
		}
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		if !s.ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.Response.SetBody(s.statusStarting)
			return outError
		}
		if s.status == nil {
			ctx.Response.SetBody(s.statusOK)
			return outAuthorized
		}
		body := append(make([]byte, 0, 256), s.statusOK[:len(s.statusOK)-1]...)
		body = append(s.status(append(body, ',')), '}')
		ctx.Response.SetBody(body)
		return outAuthorized
	case epCheck, epAvailable:
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.SetBytesKV(hdrAllow, allowGetHead)
			return s.writeError(ctx, nil, errMethodNotAllowed, nil, nil)
		}
		ctx.Response.Header.SetContentTypeBytes(ctText)
		if ep == epCheck {
			ctx.Response.SetBody(bodyCheck)
		}
		return outAuthorized
	case epErrors:
		id, _ := errorsServiceID(ctx.Path())
		return s.serveErrors(ctx, id)
	case epMetrics:
		if s.serveMx {
			if !ctx.IsGet() {
				ctx.Response.Header.SetBytesKV(hdrAllow, allowGet)
				return s.writeError(ctx, nil, errMethodNotAllowed, nil, nil)
			}
			ctx.Response.Header.SetContentType(metrics.ContentType)
			if err := s.reg.WritePrometheus(ctx); err != nil {
				return outError
			}
			return outAuthorized
		}
	}
	return s.writeError(ctx, nil, errNotFound, nil, nil)
}

// writeError answers with an <error> document. st may be nil (no
// extensions parsed yet).
func (s *Server) writeError(ctx *fasthttp.RequestCtx, st *reqState, c errCode, arg, arg2 []byte) outcome {
	ctx.SetStatusCode(c.Status())
	ctx.Response.Header.SetContentTypeBytes(ctXML)
	if st != nil && st.opts.rejectionReasonHeader {
		ctx.Response.Header.SetBytesKV(hdrRejection, s2b(c.String()))
	}
	if st != nil && st.opts.noBody {
		return outError
	}
	if st != nil {
		st.body = appendError(st.body[:0], c, arg, arg2)
		ctx.Response.SetBody(st.body)
		return outError
	}
	// Rare paths (404, 405, 503, 414): a stack buffer keeps them cheap.
	var buf [512]byte
	ctx.Response.SetBody(appendError(buf[:0], c, arg, arg2))
	return outError
}

// s2b views a string's bytes without copying; the result must not be
// modified.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// b2s views b as a string without copying, for calls to functions that do
// not retain their argument.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// WriteFailure answers a request the HTTP server could not read in the
// 3scale format: 413 request_entity_too_large, 414 request_uri_too_long,
// 431 request_header_too_large, anything else 400 bad_request. It is the
// OnFailure of NewServer's server.
func WriteFailure(ctx *fasthttp.RequestCtx, f httpserver.Failure) {
	c := errBadRequest
	switch f.Status {
	case fasthttp.StatusRequestEntityTooLarge:
		c = errRequestEntityTooLarge
	case fasthttp.StatusRequestURITooLong:
		c = errRequestURITooLong
	case fasthttp.StatusRequestHeaderFieldsTooLarge:
		c = errRequestHeaderTooLarge
	}
	ctx.Response.Header.DisableNormalizing()
	ctx.SetStatusCode(c.Status())
	ctx.Response.Header.SetContentTypeBytes(ctXML)
	var buf [512]byte
	ctx.Response.SetBody(appendError(buf[:0], c, nil, nil))
}

// ServerReadBufferSize is the read buffer of a connection: room for a
// request line of up to ShortRequestLine bytes plus MaxServerHeaderBytes of
// headers. It is what every connection holds, idle ones included.
const ServerReadBufferSize = ShortRequestLine + MaxServerHeaderBytes + 2

// ShortRequestLine is the longest request line a connection reads with
// ServerReadBufferSize. A connection that sends a longer one (a batch
// report in the URL) moves to a second server whose read buffer holds
// maxRequestLine (LongLineReadBufferSize), and stays there; on it, a
// connection holds that buffer only while it reads and answers a request,
// none while idle (fasthttp's ReduceMemoryUsage). A request line that does
// not arrive in one read is held back, in memory the size of what the
// client sent, until it ends (internal/httpserver, Options.LongLines).
const ShortRequestLine = 8<<10 - 2

// LongLineReadBufferSize is the read buffer of a connection, on the second
// server, while it reads a request: the longest request line plus
// MaxServerHeaderBytes.
const LongLineReadBufferSize = maxRequestLine + MaxServerHeaderBytes + 2

// MaxServerHeaderBytes bounds a request's header block; a larger one is 431
// request_header_too_large.
const MaxServerHeaderBytes = 8 << 10

// maxRequestLine is the longest request line the server reads: a longer
// one certainly has a URL over MaxURLLength (method, spaces and version
// take at least 11 bytes) and is a 414 before its end is read. The handler
// checks MaxURLLength exactly.
const maxRequestLine = MaxURLLength + 16

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Logger receives the HTTP server's messages; none quotes a request.
	// Default slog.Default().
	Logger *slog.Logger
	// OnFailure answers requests the server could not read. Default
	// WriteFailure. A listener shared with another API routes by
	// Failure.Path (cmd/sluice sends /admin to the admin API's).
	OnFailure func(*fasthttp.RequestCtx, httpserver.Failure)
}

// NewServer returns the HTTP server for the Service Management API: handler
// as its handler, the URL and body limits of this package (MaxURLLength,
// ServerReadBufferSize and LongLineReadBufferSize, MaxBodySize),
// conservative timeouts, and the guarantees of internal/httpserver (no
// request bytes in logs, bare-LF and non-HTTP requests refused at once, 414
// for long request lines). cmd/sluice and tests use it so that both run
// with the same limits.
func NewServer(handler fasthttp.RequestHandler, o ServerOptions) *httpserver.Server {
	if o.OnFailure == nil {
		o.OnFailure = WriteFailure
	}
	server := func(readBuffer int) *fasthttp.Server {
		return &fasthttp.Server{
			Handler:                       handler,
			Name:                          "sluice",
			ReadBufferSize:                readBuffer,
			MaxRequestBodySize:            MaxBodySize,
			ReadTimeout:                   30 * time.Second,
			WriteTimeout:                  30 * time.Second,
			IdleTimeout:                   2 * time.Minute,
			NoDefaultContentType:          true,
			DisableHeaderNamesNormalizing: false,
		}
	}
	return httpserver.New(server(ServerReadBufferSize), httpserver.Options{
		Logger: o.Logger, OnFailure: o.OnFailure,
		MaxRequestLine: maxRequestLine, MaxHeaderBytes: MaxServerHeaderBytes,
		LongLines: server(LongLineReadBufferSize),
	})
}
