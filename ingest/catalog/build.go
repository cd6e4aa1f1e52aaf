package catalog

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sluice-dev/sluice/limiter"
)

// KeyRegistry assigns each (tenant, service, application) a limiter.AppKey.
// A key, once assigned, never changes and is never given to another
// application for the life of the process, across any number of rebuilds:
// the limiter's counters follow the application through configuration
// changes, and an application deleted and created again gets its old key
// back (3scale keeps counters by application id too). Keys are not stable
// across processes; anything persisted names applications by id. The
// registry only grows, by one small entry per application ever seen. The zero
// value is ready to use; it is safe for concurrent use.
type KeyRegistry struct {
	mu   sync.Mutex
	keys map[appRef]limiter.AppKey
	last limiter.AppKey
}

type appRef struct{ tenant, service, app string }

// NewKeyRegistry returns an empty registry.
func NewKeyRegistry() *KeyRegistry { return &KeyRegistry{} }

// Key returns the application's key, assigning the next free one on first
// use. Keys start at 1.
func (r *KeyRegistry) Key(tenant, service, app string) limiter.AppKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := appRef{tenant, service, app}
	if k, ok := r.keys[ref]; ok {
		return k
	}
	if r.keys == nil {
		r.keys = make(map[appRef]limiter.AppKey)
	}
	r.last++
	r.keys[ref] = r.last
	return r.last
}

// Lookup returns the application's key if one was assigned.
func (r *KeyRegistry) Lookup(tenant, service, app string) (limiter.AppKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.keys[appRef{tenant, service, app}]
	return k, ok
}

// Build validates doc and builds its fully indexed Snapshot, with application
// keys from keys (a nil keys uses a fresh registry, which is only right for
// tests and tools: the serving process keeps one registry for its lifetime).
// doc is not retained: the Snapshot shares no memory with it.
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
			ID:          td.ID,
			AdminToken:  td.AdminToken,
			QueryTokens: cloneStrings(td.QueryTokens),
			Services:    make(map[string]*Service, len(td.Services)),
		}
		snap.Tenants[t.ID] = t
		snap.AdminTokens[t.AdminToken] = t
		for _, q := range td.QueryTokens {
			snap.QueryTokens[q] = t
		}
		for si := range td.Services {
			s, err := buildService(t, &td.Services[si], keys)
			if err != nil {
				return nil, fmt.Errorf("catalog: build %s: %w", index(field(index("tenants", ti), "services"), si), err)
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

func buildService(t *Tenant, sd *ServiceSpec, keys *KeyRegistry) (*Service, error) {
	mode, _ := ParseAuthMode(sd.AuthMode)
	state, _ := ParseState(sd.State)
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
		Parents:                 make([]limiter.MetricID, len(sd.Metrics)),
		Children:                make([][]limiter.MetricID, len(sd.Metrics)),
		Plans:                   make(map[string]*Plan, len(sd.Plans)),
		Apps:                    make(map[string]*App, len(sd.Applications)),
		UserKeys:                make(map[string]*App),
	}
	for i, m := range sd.Metrics {
		s.MetricIndex[m.Name] = limiter.MetricID(i)
	}
	for i, m := range sd.Metrics {
		parent := limiter.NoParent
		if m.Parent != "" {
			parent = s.MetricIndex[m.Parent]
			s.Children[parent] = append(s.Children[parent], limiter.MetricID(i))
		}
		s.Metrics[i] = Metric{Name: m.Name, ID: limiter.MetricID(i), Parent: parent}
		s.Parents[i] = parent
	}
	for pi := range sd.Plans {
		pd := &sd.Plans[pi]
		p := &Plan{ID: pd.ID, Name: pd.Name, Limits: make([]limiter.Limit, len(pd.Limits))}
		for li, l := range pd.Limits {
			per, err := limiter.ParsePeriod(l.Period)
			if err != nil {
				return nil, err // Validate has checked it; defensive
			}
			p.Limits[li] = limiter.Limit{Metric: s.MetricIndex[l.Metric], Period: per, Max: l.Max}
			p.Exact = p.Exact || l.Consistency != ConsistencyLocal
		}
		s.Plans[p.ID] = p
	}
	for ai := range sd.Applications {
		ad := &sd.Applications[ai]
		state, _ := ParseState(ad.State)
		a := &App{
			Service:         s,
			ID:              ad.ID,
			Key:             keys.Key(t.ID, s.ID, ad.ID),
			Plan:            s.Plans[ad.Plan],
			UserKey:         ad.UserKey,
			Keys:            cloneStrings(ad.Keys),
			ReferrerFilters: cloneStrings(ad.ReferrerFilters),
			RedirectURL:     ad.RedirectURL,
			State:           state,
		}
		s.Apps[a.ID] = a
		if mode == AuthUserKey && a.UserKey != "" {
			s.UserKeys[a.UserKey] = a
		}
	}
	return s, nil
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
