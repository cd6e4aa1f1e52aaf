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

// AppIndex maps a string (an application id, or a user_key) to an App. It
// is immutable once published: a Stage changes a copy that shares every
// shard but the touched ones with the published index. Lookups never lock
// and never allocate. The zero value is an empty index.
type AppIndex struct {
	shards [appShards]map[string]*App
	n      int
}

func shardOf(s string) int { return int(xxhash.Sum64String(s) & (appShards - 1)) }

func shardOfBytes(b []byte) int { return int(xxhash.Sum64(b) & (appShards - 1)) }

// Get returns the application under key, or nil.
func (x *AppIndex) Get(key string) *App {
	if x == nil {
		return nil
	}
	return x.shards[shardOf(key)][key]
}

// GetBytes is Get for a key in a byte slice; it does not allocate.
func (x *AppIndex) GetBytes(key []byte) *App {
	if x == nil {
		return nil
	}
	return x.shards[shardOfBytes(key)][string(key)]
}

// Len returns the number of entries.
func (x *AppIndex) Len() int {
	if x == nil {
		return 0
	}
	return x.n
}

// All yields every entry, in no particular order.
func (x *AppIndex) All() iter.Seq2[string, *App] {
	return func(yield func(string, *App) bool) {
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

func (x *AppIndex) clone() *AppIndex {
	if x == nil {
		return &AppIndex{}
	}
	c := *x
	return &c
}

// put sets key in x in place: only for an index being built, never for a
// published one.
func (x *AppIndex) put(key string, a *App) {
	i := shardOf(key)
	if x.shards[i] == nil {
		x.shards[i] = make(map[string]*App)
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
	plans    map[string]*Plan
	apps     *AppIndex // by application id
	userKeys *AppIndex // by user_key, user_key mode only
}

func (s *Service) loadTables() *serviceTables {
	if t := s.tables.Load(); t != nil {
		return t
	}
	return &emptyTables
}

var emptyTables = serviceTables{plans: map[string]*Plan{}, apps: &AppIndex{}, userKeys: &AppIndex{}}

// Plan returns the service's plan with id, or nil.
func (s *Service) Plan(id string) *Plan { return s.loadTables().plans[id] }

// Plans yields the service's plans by id, in no particular order.
func (s *Service) Plans() iter.Seq2[string, *Plan] { return maps.All(s.loadTables().plans) }

// App returns the service's application with id, or nil. It does not
// allocate.
func (s *Service) App(id string) *App { return s.loadTables().apps.Get(id) }

// AppBytes is App for an id in a byte slice (a request's argument); it
// does not allocate.
func (s *Service) AppBytes(id []byte) *App { return s.loadTables().apps.GetBytes(id) }

// AppByUserKey returns the application whose user_key is key, or nil (in
// user_key mode only: other modes refuse user keys). It does not allocate.
func (s *Service) AppByUserKey(key []byte) *App { return s.loadTables().userKeys.GetBytes(key) }

// Apps returns the index of the service's applications by id as it is now.
func (s *Service) Apps() *AppIndex { return s.loadTables().apps }

// UserKeys returns the index of the service's applications by user_key as
// it is now.
func (s *Service) UserKeys() *AppIndex { return s.loadTables().userKeys }

// Assemble publishes plans and apps as the contents of s, a Service put
// together by hand (tests, tools); Build does it for the services it
// makes. apps must point to s and to plans among plans. It must not be
// called on a Service that readers already use.
func Assemble(s *Service, plans []*Plan, apps []*App) {
	t := &serviceTables{plans: make(map[string]*Plan, len(plans)), apps: &AppIndex{}, userKeys: &AppIndex{}}
	for _, p := range plans {
		t.plans[p.ID] = p
	}
	for _, a := range apps {
		t.apps.put(a.ID, a)
		if s.AuthMode == AuthUserKey && a.UserKey != "" {
			t.userKeys.put(a.UserKey, a)
		}
	}
	s.tables.Store(t)
}

// indexEdit changes many entries of an AppIndex at once, copying each
// touched shard once: the index it edits is never modified.
type indexEdit struct {
	x      *AppIndex
	copied [appShards]bool
}

func (x *AppIndex) edit() *indexEdit { return &indexEdit{x: x.clone()} }

// own makes shard i of the edited index a copy of its own.
func (e *indexEdit) own(i int) {
	if e.copied[i] {
		return
	}
	m := maps.Clone(e.x.shards[i]) // copies the table's memory: several times faster than inserting
	if m == nil {
		m = make(map[string]*App)
	}
	e.x.shards[i], e.copied[i] = m, true
}

func (e *indexEdit) set(key string, a *App) {
	i := shardOf(key)
	e.own(i)
	if _, ok := e.x.shards[i][key]; !ok {
		e.x.n++
	}
	e.x.shards[i][key] = a
}

func (e *indexEdit) del(key string) {
	i := shardOf(key)
	if _, ok := e.x.shards[i][key]; !ok {
		return
	}
	e.own(i)
	delete(e.x.shards[i], key)
	e.x.n--
}
