package catalog

import (
	"iter"
	"maps"

	"github.com/cespare/xxhash/v2"
)

// appShards is how many maps an AppIndex splits its entries over. A change
// copies one shard: at 100,000 applications in a service that is about 400
// entries (a few microseconds), where copying one map of them all takes
// about 10 ms and leaves megabytes of garbage per change.
const appShards = 256

// AppIndex maps application ids to Apps. It is immutable once published:
// a Stage changes a copy that shares every shard but the touched ones with
// the published index. Lookups never lock and never allocate. The zero
// value is an empty index.
type AppIndex = shardMap[*App]

// shardMap is a map from strings split over appShards maps, so that a
// change copies one of them; see AppIndex. A service also keeps one from
// user_key to application id (not to the App, so that a plan change, which
// publishes new Apps, leaves it alone).
type shardMap[V comparable] struct {
	shards [appShards]map[string]V
	n      int
}

func shardOf(s string) int { return int(xxhash.Sum64String(s) & (appShards - 1)) }

func shardOfBytes(b []byte) int { return int(xxhash.Sum64(b) & (appShards - 1)) }

// Get returns the value under key, or the zero value.
func (x *shardMap[V]) Get(key string) V {
	if x == nil {
		var zero V
		return zero
	}
	return x.shards[shardOf(key)][key]
}

// GetBytes is Get for a key in a byte slice; it does not allocate.
func (x *shardMap[V]) GetBytes(key []byte) V {
	if x == nil {
		var zero V
		return zero
	}
	return x.shards[shardOfBytes(key)][string(key)]
}

// Len returns the number of entries.
func (x *shardMap[V]) Len() int {
	if x == nil {
		return 0
	}
	return x.n
}

// All yields every entry, in no particular order.
func (x *shardMap[V]) All() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		if x == nil {
			return
		}
		for i := range x.shards {
			for k, a := range x.shards[i] {
				if !yield(k, a) {
					return
				}
			}
		}
	}
}

func (x *shardMap[V]) clone() *shardMap[V] {
	if x == nil {
		return &shardMap[V]{}
	}
	c := *x
	return &c
}

// put sets key in x in place: only for an index being built, never for a
// published one.
func (x *shardMap[V]) put(key string, a V) {
	i := shardOf(key)
	if x.shards[i] == nil {
		x.shards[i] = make(map[string]V)
	}
	if _, ok := x.shards[i][key]; !ok {
		x.n++
	}
	x.shards[i][key] = a
}

// serviceTables are the parts of a Service that change with plan and
// application records: published together through Service.tables, so
// that such a change does not build a new Service (and every App that
// points to it).
type serviceTables struct {
	plans    map[string]*planRef // each App on a plan shares its planRef
	apps     *AppIndex           // by application id
	userKeys *shardMap[string]   // user_key to application id, user_key mode only
}

func (s *Service) loadTables() *serviceTables {
	if t := s.tables.Load(); t != nil {
		return t
	}
	return &emptyTables
}

var emptyTables = serviceTables{plans: map[string]*planRef{}, apps: &AppIndex{}, userKeys: &shardMap[string]{}}

// Plan returns the current version of the service's plan with id, or nil.
func (s *Service) Plan(id string) *Plan {
	if r := s.loadTables().plans[id]; r != nil {
		return r.p.Load()
	}
	return nil
}

// Plans yields the service's plans by id, in no particular order.
func (s *Service) Plans() iter.Seq2[string, *Plan] {
	plans := s.loadTables().plans
	return func(yield func(string, *Plan) bool) {
		for id, r := range plans {
			if !yield(id, r.p.Load()) {
				return
			}
		}
	}
}

// App returns the service's application with id, or nil. It does not
// allocate.
func (s *Service) App(id string) *App { return s.loadTables().apps.Get(id) }

// AppBytes is App for an id in a byte slice (a request's argument); it
// does not allocate.
func (s *Service) AppBytes(id []byte) *App { return s.loadTables().apps.GetBytes(id) }

// AppByUserKey returns the application whose user_key is key, or nil (in
// user_key mode only: other modes refuse user keys). It does not allocate.
func (s *Service) AppByUserKey(key []byte) *App {
	t := s.loadTables()
	if id := t.userKeys.GetBytes(key); id != "" {
		return t.apps.Get(id)
	}
	return nil
}

// Apps returns the index of the service's applications by id as it is now.
func (s *Service) Apps() *AppIndex { return s.loadTables().apps }

// NumUserKeys returns how many user_keys open the service's applications
// (in user_key mode, one per application; 0 in other modes).
func (s *Service) NumUserKeys() int { return s.loadTables().userKeys.Len() }

// Assemble publishes plans and apps as the contents of s, a Service put
// together by hand (tests, tools); Build does it for the services it
// makes. apps must point to s and be put on plans among plans (App.SetPlan,
// matched by plan id). It must not be called on a Service that readers
// already use.
func Assemble(s *Service, plans []*Plan, apps []*App) {
	t := &serviceTables{plans: make(map[string]*planRef, len(plans)), apps: &AppIndex{}, userKeys: &shardMap[string]{}}
	for _, p := range plans {
		t.plans[p.ID] = newPlanRef(p)
	}
	for _, a := range apps {
		if p := a.Plan(); p != nil && t.plans[p.ID] != nil {
			a.plan = t.plans[p.ID]
		}
		t.apps.put(a.ID, a)
		if s.AuthMode == AuthUserKey && a.UserKey != "" {
			t.userKeys.put(a.UserKey, a.ID)
		}
	}
	s.tables.Store(t)
}

// indexEdit changes many entries of an AppIndex at once, copying each
// touched shard once: the index it edits is never modified.
type indexEdit[V comparable] struct {
	x      *shardMap[V]
	copied [appShards]bool
}

func (x *shardMap[V]) edit() *indexEdit[V] { return &indexEdit[V]{x: x.clone()} }

// own makes shard i of the edited index a copy of its own.
func (e *indexEdit[V]) own(i int) {
	if e.copied[i] {
		return
	}
	m := maps.Clone(e.x.shards[i]) // copies the table's memory: several times faster than inserting
	if m == nil {
		m = make(map[string]V)
	}
	e.x.shards[i], e.copied[i] = m, true
}

func (e *indexEdit[V]) set(key string, a V) {
	i := shardOf(key)
	e.own(i)
	m := e.x.shards[i]
	n := len(m)
	m[key] = a
	e.x.n += len(m) - n
}

func (e *indexEdit[V]) del(key string) {
	i := shardOf(key)
	if _, ok := e.x.shards[i][key]; !ok {
		return
	}
	e.own(i)
	delete(e.x.shards[i], key)
	e.x.n--
}
