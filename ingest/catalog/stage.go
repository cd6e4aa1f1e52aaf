package catalog

import (
	"errors"
	"fmt"
	"maps"
)

// Stage applies plan and application changes to the services of a published
// Snapshot, one entity at a time, at the cost of that entity: an
// application change copies one shard of its service's indexes, a change to
// a plan compiles the plan (the applications on it share one reference to
// it, whose contents change). Nothing is visible to readers until Publish,
// which stores each touched service's new tables with one atomic store and
// then each changed plan's new version with one of its own (services and
// plans are published one after the other: a reader may see one change
// before another).
//
// Every change is checked as Validate would check it in the whole
// configuration; a change that would make it invalid, or that Stage cannot
// apply on its own (an entity of a service the Snapshot does not have),
// returns an error, and the caller then rebuilds from the whole
// configuration with Build, which reports the problems with their paths.
// Changes to tenants and services are not staged: they rebuild.
//
// A Stage is for one goroutine and one use: stage changes, then Publish or
// drop it.
type Stage struct {
	snap   *Snapshot
	keys   *KeyRegistry
	tables map[*Service]*staged
	one    []AppSpec // PutApp's list of one, reused
}

// staged is a service's tables being changed: the plans map is copied when
// a plan is added or deleted, each index shard on the first change to it; a
// changed plan's new version waits in versions until Publish.
type staged struct {
	plans    map[string]*planRef
	ownPlans bool
	versions map[*planRef]*Plan // new versions of published plans, stored by Publish
	info     planInfo           // the plans' ids, for validating applications; nil when plans change
	apps     *indexEdit[*App]
	userKeys *indexEdit[string]
}

// ErrNotStaged is wrapped by the errors of Stage's methods: the change must
// be applied by a rebuild (Build) instead.
var ErrNotStaged = errors.New("catalog: change needs a rebuild")

// NewStage returns a Stage over snap, with application keys from keys (the
// registry snap was built with).
func NewStage(snap *Snapshot, keys *KeyRegistry) *Stage {
	return &Stage{snap: snap, keys: keys, tables: map[*Service]*staged{}}
}

func notStaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotStaged, fmt.Sprintf(format, args...))
}

// service returns the tenant's service and its staged tables.
func (st *Stage) service(tenant, service string) (*Service, *staged, error) {
	s := st.snap.Services[service]
	if s == nil || s.Tenant == nil || s.Tenant.ID != tenant {
		return nil, nil, notStaged("no service %q in tenant %q", service, tenant)
	}
	t := st.tables[s]
	if t == nil {
		cur := s.loadTables()
		t = &staged{plans: cur.plans, apps: cur.apps.edit(), userKeys: cur.userKeys.edit()}
		st.tables[s] = t
	}
	return s, t, nil
}

// problems turns a validator's findings into an error.
func problems(probs []Problem) error {
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNotStaged, &ValidationError{Problems: probs})
}

// PutApp creates or replaces an application of the tenant's service.
func (st *Stage) PutApp(tenant, service string, ad *AppSpec) error {
	s, t, err := st.service(tenant, service)
	if err != nil {
		return err
	}
	if t.info == nil {
		t.info = make(planInfo, len(t.plans))
		for id := range t.plans {
			t.info[id] = true
		}
	}
	// The application's own rules, as Validate checks them; the rules
	// between applications follow against the index.
	v := validator{}
	st.one = append(st.one[:0], *ad)
	v.apps("", st.one, t.info, s.AuthMode.String())
	if err := problems(v.probs); err != nil {
		return err
	}
	old := t.apps.x.Get(ad.ID)
	if old == nil && t.apps.x.Len() >= MaxApps {
		return notStaged("more than %d applications", MaxApps)
	}
	if s.AuthMode == AuthUserKey {
		if o := t.userKeys.x.Get(ad.UserKey); o != "" && o != ad.ID {
			return notStaged("duplicate user_key")
		}
	}
	a := newApp(s, t.plans[ad.Plan], ad, st.keys)
	t.apps.set(a.ID, a)
	if s.AuthMode == AuthUserKey {
		if old != nil && old.UserKey != a.UserKey {
			t.userKeys.del(old.UserKey)
		}
		t.userKeys.set(a.UserKey, a.ID)
	}
	return nil
}

// DeleteApp deletes an application of the tenant's service; deleting one
// that does not exist is no change.
func (st *Stage) DeleteApp(tenant, service, id string) error {
	s, t, err := st.service(tenant, service)
	if err != nil {
		return err
	}
	old := t.apps.x.Get(id)
	if old == nil {
		return nil
	}
	t.apps.del(id)
	if s.AuthMode == AuthUserKey {
		t.userKeys.del(old.UserKey)
	}
	return nil
}

// PutPlan creates or replaces a plan of the tenant's service; the
// applications on it see the new version from Publish on.
func (st *Stage) PutPlan(tenant, service string, pd *PlanSpec) error {
	s, t, err := st.service(tenant, service)
	if err != nil {
		return err
	}
	metrics := make(map[string]int, len(s.MetricIndex))
	for name, id := range s.MetricIndex {
		metrics[name] = int(id)
	}
	v := &validator{creds: map[string]credOwner{}, svcs: map[string]svcOwner{}}
	v.plans("", []PlanSpec{*pd}, metrics)
	if err := problems(v.probs); err != nil {
		return err
	}
	if _, ok := t.plans[pd.ID]; !ok && len(t.plans) >= MaxPlans {
		return notStaged("more than %d plans", MaxPlans)
	}
	p, err := compilePlan(s, pd)
	if err != nil {
		return notStaged("plan %q: %v", pd.ID, err)
	}
	if r := t.plans[p.ID]; r != nil {
		if t.versions == nil {
			t.versions = map[*planRef]*Plan{}
		}
		t.versions[r] = p
		return nil
	}
	t.ownPlans, t.plans, t.info = true, ownedPlans(t), nil
	t.plans[p.ID] = newPlanRef(p) // new: reachable once the tables are published
	return nil
}

// ownedPlans returns t's plans map, copied if t does not own it yet.
func ownedPlans(t *staged) map[string]*planRef {
	if t.ownPlans {
		return t.plans
	}
	return maps.Clone(t.plans)
}

// DeletePlan deletes a plan of the tenant's service. A plan that an
// application names cannot go (the configuration would be invalid).
func (st *Stage) DeletePlan(tenant, service, id string) error {
	_, t, err := st.service(tenant, service)
	if err != nil {
		return err
	}
	r, ok := t.plans[id]
	if !ok {
		return nil
	}
	for _, a := range t.apps.x.All() {
		if a.plan == r {
			return notStaged("plan %q has applications", id)
		}
	}
	t.ownPlans, t.plans, t.info = true, ownedPlans(t), nil
	delete(t.plans, id)
	delete(t.versions, r)
	return nil
}

// Publish makes every staged change visible to readers of the Snapshot.
func (st *Stage) Publish() {
	for s, t := range st.tables {
		s.tables.Store(&serviceTables{plans: t.plans, apps: t.apps.x, userKeys: t.userKeys.x})
		for r, p := range t.versions {
			r.p.Store(p)
		}
	}
	st.tables = map[*Service]*staged{}
}
