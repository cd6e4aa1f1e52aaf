package catalog

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sluice-dev/sluice/limiter"
)

// KeyRegistry assigns each (tenant, service, application) a limiter.AppKey
// and each (tenant, service, metric name) a limiter.MetricID: the identities
// the limiter keys its counters by. An identity, once assigned, never
// changes and is never given to another application or metric for the life
// of the process, across any number of rebuilds: the limiter's counters
// follow the application and the metric through configuration changes
// (adding, deleting, reordering or reparenting metrics moves no usage), and
// an application or metric deleted and created again gets its old identity,
// and its counters, back (3scale keeps counters by application id and metric
// name too; a restart rebuilds them from the events, which name both).
// Identities are not stable across processes; anything persisted names
// applications and metrics by id and name. The registry only grows, by one
// small entry per application and per metric name ever seen. The zero value
// is ready to use; it is safe for concurrent use.
//
// A service has at most MaxMetricIDs metric ids for the life of the process:
// a configuration that would give one service more distinct metric names
// than that, counting those it has deleted, is refused (Build, Reserve).
type KeyRegistry struct {
	mu      sync.Mutex
	keys    map[svcRef]map[string]limiter.AppKey // by service, then application id: 28 bytes an application
	last    limiter.AppKey
	metrics map[svcRef]map[string]limiter.MetricID // ids 0..len-1, in order of first sight
}

type svcRef struct{ tenant, service string }

// MaxMetricIDs is how many limiter.MetricIDs one service can be given in
// the life of a process: 0 to 0xFFFE, as limiter.NoParent is 0xFFFF. Every
// distinct metric name the service has had since the process started holds
// one (at most MaxMetrics at a time), so it takes 256 complete renamings of
// a full service to run out; a restart starts again from the names in the
// configuration.
const MaxMetricIDs = int(limiter.NoParent)

// NewKeyRegistry returns an empty registry.
func NewKeyRegistry() *KeyRegistry { return &KeyRegistry{} }

// Key returns the application's key, assigning the next free one on first
// use. Keys start at 1.
func (r *KeyRegistry) Key(tenant, service, app string) limiter.AppKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := svcRef{tenant, service}
	m := r.keys[ref]
	if k, ok := m[app]; ok {
		return k
	}
	if m == nil {
		if r.keys == nil {
			r.keys = make(map[svcRef]map[string]limiter.AppKey)
		}
		m = make(map[string]limiter.AppKey)
		r.keys[ref] = m
	}
	r.last++
	m[app] = r.last
	return r.last
}

// Lookup returns the application's key if one was assigned.
func (r *KeyRegistry) Lookup(tenant, service, app string) (limiter.AppKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.keys[svcRef{tenant, service}][app]
	return k, ok
}

// MetricID returns the id of the service's metric name if one was assigned.
func (r *KeyRegistry) MetricID(tenant, service, metric string) (limiter.MetricID, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.metrics[svcRef{tenant, service}][metric]
	return id, ok
}

// metricIDs fills ids[i] with the id of ms[i], assigning the next free ids
// to names the service never had. All or nothing: when the new names do not
// fit in the service's ids, it assigns none and returns how many are left.
func (r *KeyRegistry) metricIDs(tenant, service string, ms []MetricSpec, ids []limiter.MetricID) (left int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := svcRef{tenant, service}
	known := r.metrics[ref]
	fresh := 0
	for i := range ms {
		if _, ok := known[ms[i].Name]; !ok {
			fresh++
		}
	}
	if left = MaxMetricIDs - len(known); fresh > left {
		return left, false
	}
	if known == nil {
		if r.metrics == nil {
			r.metrics = make(map[svcRef]map[string]limiter.MetricID)
		}
		known = make(map[string]limiter.MetricID, len(ms))
		r.metrics[ref] = known
	}
	for i := range ms {
		id, ok := known[ms[i].Name]
		if !ok {
			id = limiter.MetricID(len(known))
			known[ms[i].Name] = id
		}
		ids[i] = id
	}
	return left - fresh, true
}

// metricIDsProblem describes a service that would need more metric ids
// than it has left.
func metricIDsProblem(path string, sd *ServiceSpec, left int) Problem {
	return Problem{Path: at(path, sd, &sd.Metrics), Message: fmt.Sprintf(
		"service %q would need more metric ids than the %d it has left: a service has at most %d distinct metric names "+
			"for the life of a node process, deleted ones included (a deleted metric keeps its id so that no other metric "+
			"inherits its counters); reuse earlier names, or restart the nodes", sd.ID, left, MaxMetricIDs)}
}

// servicePath is the path of doc.Tenants[ti].Services[si].
func servicePath(doc *Document, ti, si int) string {
	t := &doc.Tenants[ti]
	return index(at(index(FieldName(doc, &doc.Tenants), ti), t, &t.Services), si)
}

// Reserve assigns the limiter ids of every metric in doc, so that Build of
// doc (or of any document whose services' metric names are among doc's and
// those seen before) cannot run out of them. It returns a
// *ValidationError naming every service whose new metric names do not fit
// in its ids (see MaxMetricIDs); such a service gets no new id. Writers call
// it before appending a configuration to the log: a refusal there keeps the
// log free of a configuration this process could not build.
func (r *KeyRegistry) Reserve(doc *Document) error {
	var probs []Problem
	var ids []limiter.MetricID
	for ti := range doc.Tenants {
		td := &doc.Tenants[ti]
		for si := range td.Services {
			sd := &td.Services[si]
			ids = slices.Grow(ids[:0], len(sd.Metrics))[:len(sd.Metrics)]
			if left, ok := r.metricIDs(td.ID, sd.ID, sd.Metrics, ids); !ok {
				probs = append(probs, metricIDsProblem(servicePath(doc, ti, si), sd, left))
			}
		}
	}
	if len(probs) > 0 {
		return &ValidationError{Problems: probs}
	}
	return nil
}

// Build validates doc and builds its fully indexed Snapshot, with application
// keys and metric ids from keys (a nil keys uses a fresh registry, which is
// only right for tests and tools: the serving process keeps one registry for
// its lifetime). It returns a *ValidationError when doc is invalid, or when
// a service would need more metric ids than keys has left for it (see
// MaxMetricIDs). doc is not retained: the Snapshot shares no memory with it.
func Build(doc *Document, keys *KeyRegistry) (*Snapshot, error) {
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	if keys == nil {
		keys = NewKeyRegistry()
	}
	snap := &Snapshot{
		Tenants:      make(map[string]*Tenant, len(doc.Tenants)),
		Services:     make(map[string]*Service),
		ServiceToken: make(map[string]*TokenGrant),
		ProviderKeys: make(map[string]*ProviderAccount),
		AdminTokens:  make(map[string]*Tenant, len(doc.Tenants)),
		QueryTokens:  make(map[string]*Tenant),
	}
	for ti := range doc.Tenants {
		td := &doc.Tenants[ti]
		t := &Tenant{
			ID:            td.ID,
			AdminToken:    td.AdminToken,
			QueryTokens:   cloneStrings(td.QueryTokens),
			Services:      make(map[string]*Service, len(td.Services)),
			WebhookURL:    td.WebhookURL,
			WebhookSecret: td.WebhookSecret,
		}
		snap.Tenants[t.ID] = t
		snap.AdminTokens[t.AdminToken] = t
		for _, q := range td.QueryTokens {
			snap.QueryTokens[q] = t
		}
		for si := range td.Services {
			path := servicePath(doc, ti, si)
			s, err := buildService(t, &td.Services[si], keys, path)
			if err != nil {
				var ve *ValidationError
				if errors.As(err, &ve) {
					return nil, err
				}
				return nil, fmt.Errorf("catalog: build %s: %w", path, err)
			}
			t.Services[s.ID] = s
			snap.Services[s.ID] = s
			for _, tok := range s.Tokens {
				g := snap.ServiceToken[tok]
				if g == nil {
					g = &TokenGrant{Services: make(map[string]*Service, 1)}
					snap.ServiceToken[tok] = g
				}
				g.Services[s.ID] = s
			}
			if s.ProviderKey != "" {
				pa := snap.ProviderKeys[s.ProviderKey]
				if pa == nil {
					pa = &ProviderAccount{Tenant: t, Services: make(map[string]*Service, 1)}
					snap.ProviderKeys[s.ProviderKey] = pa
				}
				pa.Services[s.ID] = s
				if s.Default {
					pa.Default = s
				}
			}
		}
	}
	return snap, nil
}

// ParseAuthMode maps the document's auth_mode ("" is user_key).
func ParseAuthMode(s string) (AuthMode, bool) {
	switch s {
	case "", ModeUserKey:
		return AuthUserKey, true
	case ModeAppID:
		return AuthAppID, true
	case ModeOAuth:
		return AuthOAuth, true
	}
	return 0, false
}

// String returns the document's spelling of the mode.
func (m AuthMode) String() string {
	switch m {
	case AuthAppID:
		return ModeAppID
	case AuthOAuth:
		return ModeOAuth
	}
	return ModeUserKey
}

// ParseState maps the document's state ("" is active).
func ParseState(s string) (State, bool) {
	switch s {
	case "", StateActive:
		return Active, true
	case StateSuspended:
		return Suspended, true
	}
	return 0, false
}

// String returns the document's spelling of the state.
func (s State) String() string {
	if s == Suspended {
		return StateSuspended
	}
	return StateActive
}

// noPos marks a metric id the service does not have in Service.pos.
const noPos = 0xFFFF

func buildService(t *Tenant, sd *ServiceSpec, keys *KeyRegistry, path string) (*Service, error) {
	mode, _ := ParseAuthMode(sd.AuthMode)
	state, _ := ParseState(sd.State)
	ids := make([]limiter.MetricID, len(sd.Metrics))
	if left, ok := keys.metricIDs(t.ID, sd.ID, sd.Metrics, ids); !ok {
		return nil, &ValidationError{Problems: []Problem{metricIDsProblem(path, sd, left)}}
	}
	// Tables by id span the ids in use: ids never come back to a metric that
	// left, so after many renamings they grow sparse (2 bytes a hole, 128 KiB
	// each at most, by MaxMetricIDs).
	n := 0
	for _, id := range ids {
		n = max(n, int(id)+1)
	}
	s := &Service{
		Tenant:                  t,
		ID:                      sd.ID,
		Tokens:                  cloneStrings(sd.Tokens),
		ProviderKey:             sd.ProviderKey,
		Default:                 sd.Default,
		AuthMode:                mode,
		ReferrerFiltersRequired: sd.ReferrerFiltersRequired,
		State:                   state,
		Metrics:                 make([]Metric, len(sd.Metrics)),
		MetricIndex:             make(map[string]limiter.MetricID, len(sd.Metrics)),
		Parents:                 make([]limiter.MetricID, n),
		Children:                make([][]limiter.MetricID, len(sd.Metrics)),
		pos:                     make([]uint16, n),
		AlertThresholds:         alertThresholds(sd.AlertThresholds),
	}
	for id := range n {
		s.Parents[id], s.pos[id] = limiter.NoParent, noPos
	}
	at := make(map[string]int, len(sd.Metrics)) // name -> position
	for i, m := range sd.Metrics {
		s.MetricIndex[m.Name] = ids[i]
		s.pos[ids[i]] = uint16(i)
		at[m.Name] = i
	}
	for i, m := range sd.Metrics {
		parent := limiter.NoParent
		if m.Parent != "" {
			parent = s.MetricIndex[m.Parent]
			s.Children[at[m.Parent]] = append(s.Children[at[m.Parent]], ids[i])
		}
		s.Metrics[i] = Metric{Name: m.Name, ID: ids[i], Parent: parent}
		s.Parents[ids[i]] = parent
	}
	tb := &serviceTables{plans: make(map[string]*planRef, len(sd.Plans)), apps: &AppIndex{}, userKeys: &shardMap[string]{}}
	for pi := range sd.Plans {
		p, err := compilePlan(s, &sd.Plans[pi])
		if err != nil {
			return nil, err
		}
		tb.plans[p.ID] = newPlanRef(p)
	}
	for ai := range sd.Applications {
		ad := &sd.Applications[ai]
		a := newApp(s, tb.plans[ad.Plan], ad, keys)
		tb.apps.put(a.ID, a)
		if mode == AuthUserKey && a.UserKey != "" {
			tb.userKeys.put(a.UserKey, a.ID)
		}
	}
	s.tables.Store(tb)
	return s, nil
}

// compilePlan turns a valid plan of s into its runtime form.
func compilePlan(s *Service, pd *PlanSpec) (*Plan, error) {
	p := &Plan{ID: pd.ID, Name: pd.Name, Limits: make([]limiter.Limit, len(pd.Limits))}
	for li, l := range pd.Limits {
		per, err := limiter.ParsePeriod(l.Period)
		if err != nil {
			return nil, err // Validate has checked it; defensive
		}
		p.Limits[li] = limiter.Limit{Metric: s.MetricIndex[l.Metric], Period: per, Max: l.Max}
		p.Exact = p.Exact || l.Consistency != ConsistencyLocal
		if l.Scope != ScopeRegion {
			p.Global = append(p.Global, p.Limits[li])
		}
		if l.Strict {
			p.Strict = append(p.Strict, li)
		}
	}
	return p, nil
}

// newApp turns a valid application of s on plan into its runtime form.
func newApp(s *Service, plan *planRef, ad *AppSpec, keys *KeyRegistry) *App {
	state, _ := ParseState(ad.State)
	return &App{
		Service:         s,
		ID:              ad.ID,
		Key:             keys.Key(s.Tenant.ID, s.ID, ad.ID),
		plan:            plan,
		UserKey:         ad.UserKey,
		Keys:            cloneStrings(ad.Keys),
		ReferrerFilters: cloneStrings(ad.ReferrerFilters),
		RedirectURL:     ad.RedirectURL,
		State:           state,
	}
}

// Store publishes the current Snapshot. Readers call Load on every request;
// it never blocks and never allocates. Writers build a new Snapshot and Swap
// it in. The zero value is ready to use.
type Store struct {
	p atomic.Pointer[Snapshot]
}

var emptySnapshot = &Snapshot{
	Tenants:      map[string]*Tenant{},
	Services:     map[string]*Service{},
	ServiceToken: map[string]*TokenGrant{},
	ProviderKeys: map[string]*ProviderAccount{},
	AdminTokens:  map[string]*Tenant{},
	QueryTokens:  map[string]*Tenant{},
}

// Ancestors calls fn with each ancestor of the metric of (tenant, service),
// nearest first, by the configuration in force: the rollup's hierarchy. An
// unknown tenant, service or metric has none.
func (s *Store) Ancestors(tenant, service, metric string, fn func(parent string)) {
	svc := s.Load().Services[service]
	if svc == nil || svc.Tenant == nil || svc.Tenant.ID != tenant {
		return
	}
	id, ok := svc.MetricIndex[metric]
	if !ok {
		return
	}
	for p := svc.Parents[id]; p != limiter.NoParent; p = svc.Parents[p] {
		fn(svc.MetricName(p))
	}
}

// NewStore returns a Store publishing s (nil: an empty snapshot).
func NewStore(s *Snapshot) *Store {
	st := &Store{}
	if s != nil {
		st.p.Store(s)
	}
	return st
}

// Load returns the current Snapshot, never nil: before the first Swap it is
// an empty Snapshot that knows no tenant. The caller must not modify it.
func (s *Store) Load() *Snapshot {
	if p := s.p.Load(); p != nil {
		return p
	}
	return emptySnapshot
}

// Swap publishes next and returns the Snapshot it replaces (nil if none).
func (s *Store) Swap(next *Snapshot) *Snapshot {
	return s.p.Swap(next)
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}
