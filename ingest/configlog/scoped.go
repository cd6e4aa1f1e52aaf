package configlog

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Scope names the part of the configuration a change works on: every
// tenant, service, metric and plan, and among the applications only Apps,
// of Service of Tenant. A change in scope costs the size of the scope, not
// of the configuration: what a node with a million applications needs to
// take one change to one of them.
type Scope struct {
	Tenant  string
	Service string
	Apps    []string
}

// scoped reports whether the document holds only what the scope lets it.
func (sc Scope) has(tenant, service, app string) bool {
	return tenant == sc.Tenant && service == sc.Service && slices.Contains(sc.Apps, app)
}

// View returns the scope's part of the last valid configuration: a
// document with every tenant, service, metric and plan, and of the
// applications only those of scope.Apps that exist. It is the caller's to
// modify.
func (p *Projection) View(scope Scope) *catalog.Document {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.validDoc != nil {
		return cut(p.validDoc, scope)
	}
	return p.view(scope)
}

// view assembles the scope's document from the state; p.mu must be held.
func (p *Projection) view(scope Scope) *catalog.Document {
	doc, _ := p.skel.Document()
	return p.withApps(doc, scope)
}

// withApps puts the scope's applications from the state into doc; p.mu
// must be held.
func (p *Projection) withApps(doc *catalog.Document, scope Scope) *catalog.Document {
	var apps []catalog.AppSpec
	for _, id := range scope.Apps {
		v, ok := p.state[AppKey(scope.Tenant, scope.Service, id)]
		var spec catalog.AppSpec
		if ok && decodeValue(v, &spec) {
			spec.ID = id
			apps = append(apps, spec)
		}
	}
	if t := doc.Tenant(scope.Tenant); t != nil {
		if s := t.Service(scope.Service); s != nil {
			slices.SortFunc(apps, func(a, b catalog.AppSpec) int { return cmpString(a.ID, b.ID) })
			s.Applications = apps
		}
	}
	return doc
}

// serviceView is view narrowed, for a scope that names a service, to the
// scope's tenant and service: the change it is for may only change that
// service's plans and the scope's applications (anything else runs again
// through Update on the whole document), and what the rest of the
// configuration could contradict in them (user_keys, plans in use, the
// number of applications) is checked against the catalog. So a change to
// one application costs one service, not every tenant, service and plan.
// p.mu must be held.
func (p *Projection) serviceView(scope Scope) *catalog.Document {
	if scope.Service == "" {
		return p.view(scope)
	}
	tk, sk := TenantKey(scope.Tenant), ServiceKey(scope.Tenant, scope.Service)
	plans := PlanKey(scope.Tenant, scope.Service, "")
	skel := State{}
	for k, v := range p.skel {
		if k == tk || k == sk || strings.HasPrefix(k, plans) {
			skel[k] = v
		}
	}
	doc, _ := skel.Document()
	return p.withApps(doc, scope)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cut returns a copy of doc with only the scope's applications.
func cut(doc *catalog.Document, scope Scope) *catalog.Document {
	out := &catalog.Document{Tenants: make([]catalog.TenantSpec, len(doc.Tenants))}
	for ti, t := range doc.Tenants {
		ts := t
		ts.Services = make([]catalog.ServiceSpec, len(t.Services))
		for si, s := range t.Services {
			ss := s
			ss.Applications = nil
			for _, a := range s.Applications {
				if scope.has(t.ID, s.ID, a.ID) {
					ss.Applications = append(ss.Applications, a)
				}
			}
			ts.Services[si] = ss.Clone()
		}
		out.Tenants[ti] = ts.Clone()
	}
	return out
}

// UpdateIn is Update for a change that reads and writes only the scope's
// part of the configuration (see Scope): change gets the scope's document
// (View; for a scope that names a service, only its tenant and that
// service, with its plans and the scope's applications). When the change keeps every tenant and service record as it was
// (it changes plans, limits and the scope's applications), UpdateIn checks
// it in the scope, against the catalog for what the scope does not hold
// (user_keys of other applications, plans they use, how many there are),
// and appends only its records, at the cost of the scope. Any other change,
// or one the checks in the scope refuse, runs again through Update on the
// whole document (change must be safe to run twice), which gives the same
// answer as Update would have, problems and their paths included.
func (p *Projection) UpdateIn(ctx context.Context, scope Scope, change func(doc *catalog.Document) error) error {
	done, err := p.updateIn(ctx, scope, change)
	if done {
		return err
	}
	return p.Update(ctx, change)
}

// updateIn is UpdateIn's path in the scope; done is false when the change
// must go through Update instead.
func (p *Projection) updateIn(ctx context.Context, scope Scope, change func(doc *catalog.Document) error) (done bool, err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return false, nil // an invalid state: Update knows how to repair it
	}
	base := p.serviceView(scope)
	p.mu.Unlock()
	desired := base.Clone()
	if err := change(desired); err != nil {
		return true, err
	}
	before, after := entities(base), entities(desired)
	for k, v := range after {
		kind, ids, err := ParseKey(k)
		if err != nil {
			return false, nil
		}
		switch kind {
		case KindTenant, KindService:
			if !bytes.Equal(before[k], v) {
				return false, nil
			}
		case KindApp:
			if !scope.has(ids[0], ids[1], ids[2]) {
				return false, nil
			}
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok && !strings.HasPrefix(k, KindPlan+"/") && !strings.HasPrefix(k, KindApp+"/") {
			return false, nil
		}
	}
	if desired.Validate() != nil {
		return false, nil
	}
	if err := p.keys.Reserve(desired); err != nil {
		return true, err
	}
	if !p.fitsCatalog(scope, desired) {
		return false, nil
	}
	var recs []Record
	prev := State{}
	p.mu.Lock()
	for k, v := range after {
		if cur, ok := p.state[k]; !ok || !bytes.Equal(cur, v) {
			recs = append(recs, Record{Key: k, Value: v})
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			recs = append(recs, Record{Key: k})
		}
	}
	for _, r := range recs {
		if v, ok := p.state[r.Key]; ok {
			prev[r.Key] = v
		}
	}
	p.mu.Unlock()
	if len(recs) == 0 {
		return true, nil
	}
	sortRecords(recs)
	pos, err := p.log.Append(ctx, recs)
	if err != nil {
		return true, fmt.Errorf("configlog: append %d records: %w", len(recs), err)
	}
	if err := p.WaitFor(ctx, pos); err != nil {
		return true, err
	}
	if err := p.Err(); err != nil {
		return true, p.withdraw(ctx, prev, recs, err)
	}
	return true, nil
}

// fitsCatalog checks against the published catalog what the scope's
// document cannot show: that the scope's applications' user_keys are not
// other applications', that the service keeps at most catalog.MaxApps
// applications, and that no plan the change deletes is used by an
// application outside the scope.
func (p *Projection) fitsCatalog(scope Scope, desired *catalog.Document) bool {
	snap := p.store.Load()
	for ti := range desired.Tenants {
		t := &desired.Tenants[ti]
		for si := range t.Services {
			sd := &t.Services[si]
			svc := snap.Services[sd.ID]
			if svc == nil || svc.Tenant == nil || svc.Tenant.ID != t.ID {
				if len(sd.Applications) > 0 {
					return false
				}
				continue
			}
			deleted := map[string]bool{}
			for id := range svc.Plans() {
				if sd.Plan(id) == nil {
					deleted[id] = true
				}
			}
			if len(deleted) > 0 {
				for id, a := range svc.Apps().All() {
					if p := a.Plan(); p != nil && deleted[p.ID] && !scope.has(t.ID, sd.ID, id) {
						return false
					}
				}
			}
			added := 0
			for ai := range sd.Applications {
				a := &sd.Applications[ai]
				if svc.App(a.ID) == nil {
					added++
				}
				if svc.AuthMode == catalog.AuthUserKey {
					if o := svc.AppByUserKey([]byte(a.UserKey)); o != nil && !scope.has(t.ID, sd.ID, o.ID) {
						return false
					}
				}
			}
			if svc.Apps().Len()+added > catalog.MaxApps {
				return false
			}
		}
	}
	return true
}

// sortedApps caches a service's application ids in order, for the index
// they were read from.
type sortedApps struct {
	index *catalog.AppIndex
	ids   []string
}

// AppPage returns the applications at positions [offset, offset+limit) in
// id order of the tenant's service in the last valid configuration, and
// how many the service has; ok is false when the tenant has no such
// service. The ids are sorted once per change of the service's
// applications; a page costs its own size.
func (p *Projection) AppPage(tenant, service string, offset, limit int) (apps []catalog.AppSpec, total int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.validDoc != nil {
		t := p.validDoc.Tenant(tenant)
		if t == nil {
			return nil, 0, false
		}
		s := t.Service(service)
		if s == nil {
			return nil, 0, false
		}
		from, to := min(offset, len(s.Applications)), min(offset+limit, len(s.Applications))
		return cut(&catalog.Document{Tenants: []catalog.TenantSpec{{Services: []catalog.ServiceSpec{{Applications: s.Applications[from:to]}}}}}, Scope{}).Tenants[0].Services[0].Applications, len(s.Applications), true
	}
	svc := p.store.Load().Services[service]
	if svc == nil || svc.Tenant == nil || svc.Tenant.ID != tenant {
		return nil, 0, false
	}
	ids := p.sortedIDs(svc)
	from, to := min(offset, len(ids)), min(offset+limit, len(ids))
	apps = make([]catalog.AppSpec, 0, to-from)
	for _, id := range ids[from:to] {
		var spec catalog.AppSpec
		if decodeValue(p.state[AppKey(tenant, service, id)], &spec) {
			spec.ID = id
			apps = append(apps, spec)
		}
	}
	return apps, len(ids), true
}

// sortedIDs returns the ids of svc's applications in order, sorting them
// only when they changed since the last call; p.mu must be held. The
// slice is shared: callers must not modify it.
func (p *Projection) sortedIDs(svc *catalog.Service) []string {
	idx := svc.Apps()
	c := p.sorted[svc.ID]
	if c == nil || c.index != idx {
		c = &sortedApps{index: idx, ids: make([]string, 0, idx.Len())}
		for id := range idx.All() {
			c.ids = append(c.ids, id)
		}
		slices.Sort(c.ids)
		if p.sorted == nil {
			p.sorted = map[string]*sortedApps{}
		}
		p.sorted[svc.ID] = c
	}
	return c.ids
}
