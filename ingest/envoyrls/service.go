package envoyrls

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// Bounds of one request. Envoy sends a handful of descriptors of a few
// entries each; these bounds keep a hostile caller's work per call small.
const (
	MaxDescriptors  = 64   // descriptors per request
	MaxEntries      = 16   // entries per descriptor
	MaxKeyBytes     = 256  // bytes of an entry's key, and of the domain
	MaxValueBytes   = 1024 // bytes of an entry's value
	MaxMessageBytes = 1 << 20
	// MaxConns bounds the gRPC listener's open connections (gateways keep
	// a few each); past it new connections wait to be accepted.
	MaxConns = 4096
)

// EventSink receives the usage events of the calls. Append must copy or
// encode e before it returns. *kafka.Producer implements it.
type EventSink interface {
	Append(e *event.Event) error
}

// sinkHealth is implemented by sinks that can refuse events; calls consult
// it before they count, so that a full spool refuses calls rather than
// counting usage it cannot record.
type sinkHealth interface{ Accepting() bool }

// Options configure a Service. Limiter is required.
type Options struct {
	// Limiter holds the counters; share the Service Management API's.
	Limiter *limiter.Limiter
	// Sink receives one usage event per descriptor with a rate limit.
	// Default: events are discarded (tests and benchmarks only).
	Sink EventSink
	// Tenant is the tenant the domains belong to in events. Default "envoy".
	Tenant string
	// Clock is read once per call. Give the Limiter the same clock. Default
	// time.Now.
	Clock func() time.Time
	// Region and Node are stamped on every event.
	Region, Node string
	// IDs hands out event ids; share the node's generator in a cluster.
	IDs *event.IDGenerator
	// Metrics receives the per-domain counters. Default: a private registry.
	Metrics *metrics.Registry
	// MaxValues caps the active values per domain (DefaultMaxValues).
	// Past it, a descriptor's new values share one counter set per rate
	// limit (application "~overflow") until values are dropped: limits stay
	// enforced, more strictly, and memory stays bounded.
	MaxValues int
	// Headers adds x-ratelimit-limit, x-ratelimit-remaining and
	// x-ratelimit-reset to responses, for the descriptor closest to its
	// limit (the over-limit one when there is one).
	Headers bool
	// Logger reports configuration loads. Default slog.Default().
	Logger *slog.Logger
	// OnLoad, if set, is called with every configuration Reload puts in
	// force, after it is in force (the node declares the domains in the
	// catalog with it).
	OnLoad func(*Config)
}

// Service answers Envoy's RateLimitService (gRPC) and Envoy ratelimit's
// POST /json from a Config. It is safe for concurrent use.
type Service struct {
	rlpb.UnimplementedRateLimitServiceServer

	lim     *limiter.Limiter
	sink    EventSink
	health  sinkHealth
	tenant  string
	clock   func() time.Time
	region  string
	node    string
	ids     *event.IDGenerator
	reg     *metrics.Registry
	maxVals int
	headers bool
	log     *slog.Logger
	onLoad  func(*Config)

	cfg     atomic.Pointer[Config]
	lastSum atomic.Uint64 // sumFiles of the files the last Reload read

	mu      sync.Mutex
	domains atomic.Pointer[map[string]*domainState] // copy on write under mu

	loadsOK, loadsFailed *metrics.Counter
	noConfig             *metrics.Counter // calls answered Unavailable

	pool sync.Pool // *callState
}

// domainState is what outlives reloads for a domain: its values and
// counters of calls.
type domainState struct {
	vals                   *values
	calls, over, shadowOut *metrics.Counter
	events, refused        *metrics.Counter
}

// New returns a Service without configuration: calls are refused with
// Unavailable until SetConfig or Reload succeeds.
func New(o Options) *Service {
	if o.Limiter == nil {
		panic("envoyrls: Options.Limiter is required")
	}
	s := &Service{lim: o.Limiter, sink: o.Sink, tenant: o.Tenant, clock: o.Clock, region: o.Region, node: o.Node,
		ids: o.IDs, reg: o.Metrics, maxVals: o.MaxValues, headers: o.Headers, log: o.Logger, onLoad: o.OnLoad}
	if s.tenant == "" {
		s.tenant = "envoy"
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.ids == nil {
		s.ids = event.NewIDGenerator()
	}
	if s.reg == nil {
		s.reg = metrics.NewRegistry()
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if h, ok := s.sink.(sinkHealth); ok {
		s.health = h
	}
	empty := map[string]*domainState{}
	s.domains.Store(&empty)
	const loadHelp = "Loads of the Envoy ratelimit configuration directory, by result (a failed load keeps the previous configuration)."
	s.loadsOK = s.reg.Counter("sluice_envoy_config_loads_total", loadHelp, "result", "ok")
	s.loadsFailed = s.reg.Counter("sluice_envoy_config_loads_total", loadHelp, "result", "error")
	s.noConfig = s.reg.Counter("sluice_envoy_unavailable_total", "ShouldRateLimit calls refused because no configuration is loaded or events cannot be recorded.")
	s.pool.New = func() any { return new(callState) }
	return s
}

// Config returns the configuration in force, or nil.
func (s *Service) Config() *Config { return s.cfg.Load() }

// SetConfig puts c in force for the calls that start after it returns.
// Counters of descriptors that c keeps (same domain, path, unit and value)
// carry on.
func (s *Service) SetConfig(c *Config) {
	s.mu.Lock()
	old := *s.domains.Load()
	next := make(map[string]*domainState, len(old)+len(c.domains))
	for k, v := range old {
		next[k] = v
	}
	for name := range c.domains {
		if next[name] == nil {
			next[name] = s.newDomainState(name)
		}
	}
	s.domains.Store(&next)
	s.cfg.Store(c)
	s.mu.Unlock()
}

// newDomainState registers a domain's metrics. Series are never removed,
// so their number is that of the domains configured since start.
func (s *Service) newDomainState(name string) *domainState {
	d := &domainState{vals: newValues(s.maxVals)}
	d.calls = s.reg.Counter("sluice_envoy_calls_total", "ShouldRateLimit calls (gRPC and POST /json) by domain.", "domain", name)
	d.over = s.reg.Counter("sluice_envoy_over_limit_total", "ShouldRateLimit calls answered OVER_LIMIT, by domain.", "domain", name)
	d.shadowOut = s.reg.Counter("sluice_envoy_shadow_over_limit_total", "Descriptors over their limit in shadow mode (answered OK, counted), by domain.", "domain", name)
	d.events = s.reg.Counter("sluice_envoy_events_total", "Usage events of ShouldRateLimit calls, by domain and result.", "domain", name, "result", "appended")
	d.refused = s.reg.Counter("sluice_envoy_events_total", "Usage events of ShouldRateLimit calls, by domain and result.", "domain", name, "result", "refused")
	vals := d.vals
	s.reg.GaugeFunc("sluice_envoy_active_values", "Descriptor values with a live counter set, by domain.", func() float64 { return float64(vals.active.Load()) }, "domain", name)
	s.reg.CounterFunc("sluice_envoy_values_overflow_total", "Calls whose new value found the domain at --envoy-max-values and shared its descriptor's overflow counter set.", vals.over.Load, "domain", name)
	return d
}

// Sweep drops the values whose windows have all closed. Run it from a
// ticker (every few seconds): memory then follows the values active in
// their open windows.
func (s *Service) Sweep() {
	now := s.clock()
	for _, d := range *s.domains.Load() {
		d.vals.sweep(now)
	}
}

// callState is one call's scratch, pooled.
type callState struct {
	entries [MaxEntries]Entry
	id, ov  []byte
	buf     []byte
	usage   [1]limiter.Usage
	limits  [1]limiter.Limit
	req     limiter.Request
	dec     limiter.Decision
	ev      event.Event
	rules   [MaxDescriptors]*rule
	hits    [MaxDescriptors]int64
	matches [MaxDescriptors]match
}

// invalid returns the InvalidArgument status for msg.
func invalid(msg string) error { return status.Error(codes.InvalidArgument, msg) }

// ShouldRateLimit implements envoy.service.ratelimit.v3.RateLimitService.
// Bad input is InvalidArgument; no configuration, or a sink that cannot
// take events, is Unavailable.
func (s *Service) ShouldRateLimit(_ context.Context, req *rlpb.RateLimitRequest) (*rlpb.RateLimitResponse, error) {
	return s.decide(req)
}

// validate checks the request's bounds and the features it asks for.
func validate(req *rlpb.RateLimitRequest) error {
	if req.GetDomain() == "" {
		return invalid("rate limit domain must not be empty")
	}
	if len(req.Domain) > MaxKeyBytes {
		return invalid("rate limit domain longer than " + strconv.Itoa(MaxKeyBytes) + " bytes")
	}
	if len(req.Descriptors) == 0 {
		return invalid("rate limit descriptor list must not be empty")
	}
	if len(req.Descriptors) > MaxDescriptors {
		return invalid("more than " + strconv.Itoa(MaxDescriptors) + " descriptors")
	}
	for i, d := range req.Descriptors {
		if d == nil {
			return invalid("descriptor " + strconv.Itoa(i) + " is null")
		}
		if len(d.Entries) > MaxEntries {
			return invalid("descriptor " + strconv.Itoa(i) + " has more than " + strconv.Itoa(MaxEntries) + " entries")
		}
		if d.Limit != nil {
			return invalid("descriptor " + strconv.Itoa(i) + ": per-request limit overrides are not supported; configure the limit in --envoy-config")
		}
		if d.IsNegativeHits {
			return invalid("descriptor " + strconv.Itoa(i) + ": negative hits are not supported")
		}
		if h := d.HitsAddend; h != nil && h.Value > math.MaxInt64 {
			return invalid("descriptor " + strconv.Itoa(i) + ": hits_addend larger than 9223372036854775807")
		}
		for j, e := range d.Entries {
			if e == nil {
				return invalid("descriptor " + strconv.Itoa(i) + " entry " + strconv.Itoa(j) + " is null")
			}
			if len(e.Key) > MaxKeyBytes || len(e.Value) > MaxValueBytes {
				return invalid("descriptor " + strconv.Itoa(i) + " entry " + strconv.Itoa(j) + ": key longer than " +
					strconv.Itoa(MaxKeyBytes) + " bytes or value longer than " + strconv.Itoa(MaxValueBytes))
			}
		}
	}
	return nil
}

// decide answers one request.
func (s *Service) decide(req *rlpb.RateLimitRequest) (*rlpb.RateLimitResponse, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	cfg := s.cfg.Load()
	if cfg == nil {
		s.noConfig.Inc()
		return nil, status.Error(codes.Unavailable, "no rate limit configuration loaded")
	}
	resp := &rlpb.RateLimitResponse{OverallCode: rlpb.RateLimitResponse_OK,
		Statuses: make([]*rlpb.RateLimitResponse_DescriptorStatus, len(req.Descriptors))}
	d := cfg.domains[req.Domain]
	if d == nil {
		// An unknown domain limits nothing, as in Envoy ratelimit.
		for i := range resp.Statuses {
			resp.Statuses[i] = &rlpb.RateLimitResponse_DescriptorStatus{Code: rlpb.RateLimitResponse_OK}
		}
		return resp, nil
	}
	ds := (*s.domains.Load())[req.Domain]
	ds.calls.Inc()
	if s.health != nil && !s.health.Accepting() {
		s.noConfig.Inc()
		return nil, status.Error(codes.Unavailable, "usage events cannot be recorded right now, retry later")
	}

	st := s.pool.Get().(*callState)
	defer s.pool.Put(st)

	base := int64(req.HitsAddend)
	if base == 0 {
		base = 1
	}
	// Resolve every descriptor first: replaces acts across them.
	var replaced map[string]bool
	for i, desc := range req.Descriptors {
		st.hits[i] = base
		if desc.HitsAddend != nil {
			st.hits[i] = int64(desc.HitsAddend.Value) // validate bounded it
		}
		es := st.entries[:len(desc.Entries)]
		for j, e := range desc.Entries {
			es[j] = Entry{Key: e.Key, Value: e.Value}
		}
		m := &st.matches[i]
		st.buf = d.lookup(es, m, st.buf)
		st.rules[i] = m.rule
		if m.rule != nil && len(m.rule.replaces) > 0 {
			if replaced == nil {
				replaced = make(map[string]bool)
			}
			for _, n := range m.rule.replaces {
				replaced[n] = true
			}
		}
	}

	now := s.clock()
	var (
		quotaTotal, quotaFailed, failed int
		hdr                             *rlpb.RateLimitResponse_DescriptorStatus
		hdrRemaining                    = uint32(math.MaxUint32)
		sinkErr                         error
	)
	for i, desc := range req.Descriptors {
		r := st.rules[i]
		if r != nil && r.name != "" && replaced[r.name] {
			r = nil
		}
		if r == nil {
			resp.Statuses[i] = &rlpb.RateLimitResponse_DescriptorStatus{Code: rlpb.RateLimitResponse_OK}
			continue
		}
		es := st.entries[:len(desc.Entries)]
		for j, e := range desc.Entries {
			es[j] = Entry{Key: e.Key, Value: e.Value}
		}
		m := &st.matches[i]
		hits := st.hits[i]
		if r.unlimited {
			resp.Statuses[i] = &rlpb.RateLimitResponse_DescriptorStatus{Code: rlpb.RateLimitResponse_OK, LimitRemaining: math.MaxUint32}
			if hits == 0 {
				continue
			}
			if err := s.emit(st, ds, event.KindAuthrep, req.Domain, appID(es, m), r, hits, now); err != nil {
				sinkErr = err
			}
			continue
		}
		st.id = appendIdentity(st.id[:0], r, es, m)
		st.ov = appendOverflowIdentity(st.ov[:0], r)
		key, app := ds.vals.get(st.id, st.ov, func() string { return appID(es, m) }, r.unit.period, now)

		st.limits[0] = limiter.Limit{Metric: 0, Period: r.unit.period, Max: int64(r.rpu)}
		st.usage[0] = limiter.Usage{Metric: 0, Value: hits}
		lr := &st.req
		*lr = limiter.Request{App: key, Limits: st.limits[:], Usage: st.usage[:], Mode: limiter.ModeAuthRep}
		if hits == 0 {
			// A check: current <= requests_per_unit, as Envoy ratelimit
			// compares zero more hits (the limiter would refuse any usage,
			// zero included, against a limit of 0).
			lr.Usage = nil
		}
		s.lim.Do(lr, &st.dec)
		ok := st.dec.Err == nil && st.dec.Allowed
		ds0 := &rlpb.RateLimitResponse_DescriptorStatus{
			Code:         rlpb.RateLimitResponse_OK,
			CurrentLimit: &rlpb.RateLimitResponse_RateLimit{Name: r.name, RequestsPerUnit: r.rpu, Unit: rlpb.RateLimitResponse_RateLimit_Unit(r.unit.wire)},
		}
		if len(st.dec.Reports) == 1 {
			rep := &st.dec.Reports[0]
			if ok {
				ds0.LimitRemaining = uint32(min(max(rep.Limit.Max-rep.Current, 0), math.MaxUint32))
			}
			reset := st.dec.Reset
			if reset < 0 {
				reset = 0
			}
			ds0.DurationUntilReset = &durationpb.Duration{Seconds: reset}
		}
		kind := event.KindAuthrep
		if !ok {
			ds0.Code = rlpb.RateLimitResponse_OVER_LIMIT
			switch {
			case r.shadow:
				// Shadow mode counts what it would have refused and never refuses.
				ds0.Code = rlpb.RateLimitResponse_OK
				ds.shadowOut.Inc()
				lr.Mode = limiter.ModeReport
				s.lim.Do(lr, &st.dec)
			case r.quota:
				quotaFailed++
				kind = event.KindDenied
			default:
				failed++
				kind = event.KindDenied
			}
		}
		if r.quota {
			quotaTotal++
		}
		resp.Statuses[i] = ds0
		if s.headers {
			if ds0.Code == rlpb.RateLimitResponse_OVER_LIMIT && !r.quota {
				hdr, hdrRemaining = ds0, 0
			} else if ds0.LimitRemaining < hdrRemaining || hdr == nil {
				hdr, hdrRemaining = ds0, ds0.LimitRemaining
			}
		}
		if hits == 0 {
			continue // a check: no usage, no event
		}
		if err := s.emit(st, ds, kind, req.Domain, app, r, hits, now); err != nil {
			sinkErr = err
		}
	}
	if sinkErr != nil {
		// The hits are counted (limits err on the strict side until the
		// window closes), as the Service Management API does in this case.
		s.noConfig.Inc()
		return nil, status.Error(codes.Unavailable, "usage events cannot be recorded right now, retry later")
	}
	if failed > 0 || (quotaTotal > 0 && quotaFailed == quotaTotal) {
		resp.OverallCode = rlpb.RateLimitResponse_OVER_LIMIT
		ds.over.Inc()
	}
	if hdr != nil {
		resp.ResponseHeadersToAdd = []*corepb.HeaderValue{
			{Key: "x-ratelimit-limit", Value: strconv.FormatUint(uint64(hdr.CurrentLimit.RequestsPerUnit), 10)},
			{Key: "x-ratelimit-remaining", Value: strconv.FormatUint(uint64(hdr.LimitRemaining), 10)},
			{Key: "x-ratelimit-reset", Value: strconv.FormatInt(hdr.DurationUntilReset.GetSeconds(), 10)},
		}
	}
	return resp, nil
}

// emit records one descriptor's usage (or denial) as an event of the
// domain's service: metric = the descriptor's path, application = its
// values.
func (s *Service) emit(st *callState, ds *domainState, kind event.Kind, dom, app string, r *rule, hits int64, now time.Time) error {
	if s.sink == nil {
		return nil
	}
	ms := now.UnixMilli()
	ev := &st.ev
	u := ev.Usage[:0]
	reason := ""
	if kind == event.KindDenied {
		reason = "limits_exceeded"
	} else {
		u = append(u, event.Usage{Metric: r.metric, Value: hits})
	}
	*ev = event.Event{ID: s.ids.Next(), Kind: kind, TS: ms, Received: ms, TenantID: s.tenant, ServiceID: dom,
		AppID: app, Usage: u, Reason: reason, Region: s.region, Node: s.node}
	if err := s.sink.Append(ev); err != nil {
		ds.refused.Inc()
		return err
	}
	ds.events.Inc()
	return nil
}
