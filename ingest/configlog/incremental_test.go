package configlog

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// dump writes everything a Snapshot holds in a canonical text: equal dumps
// mean equal catalogs. It also checks what a dump cannot show: that every
// application points to its service and to the current version of its plan,
// and that the indexes agree with each other.
func dump(t *testing.T, s *catalog.Snapshot) string {
	t.Helper()
	var b strings.Builder
	for _, tid := range slices.Sorted(mapKeys(s.Tenants)) {
		tn := s.Tenants[tid]
		fmt.Fprintf(&b, "tenant %s admin=%s query=%v services=%d\n", tn.ID, tn.AdminToken, tn.QueryTokens, len(tn.Services))
		if s.AdminTokens[tn.AdminToken] != tn {
			t.Errorf("tenant %s: admin token index", tid)
		}
	}
	for _, sid := range slices.Sorted(mapKeys(s.Services)) {
		svc := s.Services[sid]
		fmt.Fprintf(&b, "service %s tenant=%s tokens=%v pk=%s default=%v mode=%v rfr=%v state=%v metrics=%v parents=%v children=%v\n",
			svc.ID, svc.Tenant.ID, svc.Tokens, svc.ProviderKey, svc.Default, svc.AuthMode, svc.ReferrerFiltersRequired, svc.State,
			svc.Metrics, svc.Parents, svc.Children)
		var plans []string
		for id, p := range svc.Plans() {
			plans = append(plans, fmt.Sprintf("  plan %s name=%s limits=%v exact=%v\n", id, p.Name, p.Limits, p.Exact))
		}
		slices.Sort(plans)
		b.WriteString(strings.Join(plans, ""))
		var apps []string
		n := 0
		for id, a := range svc.Apps().All() {
			n++
			if a.ID != id || a.Service != svc || a.Plan() == nil || svc.Plan(a.Plan().ID) != a.Plan() {
				t.Errorf("service %s app %s: wrong service, plan or index key", sid, id)
			}
			apps = append(apps, fmt.Sprintf("  app %s key=%d plan=%s uk=%s keys=%v rf=%v ru=%s state=%v\n",
				a.ID, a.Key, a.Plan().ID, a.UserKey, a.Keys, a.ReferrerFilters, a.RedirectURL, a.State))
			if svc.AuthMode == catalog.AuthUserKey && svc.AppByUserKey([]byte(a.UserKey)) != a {
				t.Errorf("service %s app %s: user_key index", sid, id)
			}
		}
		if n != svc.Apps().Len() {
			t.Errorf("service %s: %d apps, Len %d", sid, n, svc.Apps().Len())
		}
		if svc.AuthMode == catalog.AuthUserKey && svc.NumUserKeys() != n {
			t.Errorf("service %s: %d user keys for %d apps", sid, svc.NumUserKeys(), n)
		}
		slices.Sort(apps)
		b.WriteString(strings.Join(apps, ""))
	}
	return b.String()
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestIncrementalEqualsRebuild is the property that keeps the incremental
// projection honest: after every 50th batch, and the last, of a random sequence of 10,000
// changes (valid and invalid ones, to applications, plans, services and
// tenants, with orphans and undecodable values), the published catalog is
// the one a full rebuild of the log's state gives, or, when that state is
// invalid, the last valid one.
func TestIncrementalEqualsRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 16))
	keys := catalog.NewKeyRegistry()
	p := NewProjection(NewMemLog(), &catalog.Store{}, keys, quiet)

	tenants := []string{"t1", "t2"}
	services := map[string][]string{"t1": {"s1", "s2"}, "t2": {"s3"}}
	plans := []string{"p1", "p2", "p3"}
	metrics := []string{"hits", "search", "upload"}
	appID := func() string { return fmt.Sprintf("a%d", r.IntN(60)) }
	tenantRec := func(tid string) Record {
		return Record{Key: TenantKey(tid), Value: mustJSON(catalog.TenantSpec{ID: tid, AdminToken: "adm-" + tid})}
	}
	serviceRec := func(tid, sid string) Record {
		spec := catalog.ServiceSpec{ID: sid, Tokens: []string{"st-" + sid}, ProviderKey: "pk-" + tid}
		if sid == "s2" {
			spec.AuthMode = catalog.ModeAppID
		}
		for i, m := range metrics[:1+r.IntN(len(metrics))] {
			ms := catalog.MetricSpec{Name: m}
			if i > 0 {
				ms.Parent = "hits"
			}
			spec.Metrics = append(spec.Metrics, ms)
		}
		return Record{Key: ServiceKey(tid, sid), Value: mustJSON(spec)}
	}
	planRec := func(tid, sid string) Record {
		id := plans[r.IntN(len(plans))]
		if r.IntN(30) == 0 {
			return Record{Key: PlanKey(tid, sid, id)}
		}
		spec := catalog.PlanSpec{ID: id, Name: "plan " + id}
		for range r.IntN(4) {
			spec.Limits = append(spec.Limits, catalog.LimitSpec{
				Metric: metrics[r.IntN(len(metrics))], Period: []string{"minute", "hour", "sliding:1s"}[r.IntN(3)], Max: int64(r.IntN(1000)) - int64(r.IntN(50)/49)})
		}
		return Record{Key: PlanKey(tid, sid, id), Value: mustJSON(spec)}
	}
	appRec := func(tid, sid string) Record {
		id := appID()
		switch r.IntN(20) {
		case 0, 1, 2:
			return Record{Key: AppKey(tid, sid, id)}
		case 3:
			return Record{Key: AppKey(tid, sid, id), Value: []byte("{not json")}
		}
		spec := catalog.AppSpec{ID: id, Plan: plans[r.IntN(len(plans))]}
		if sid == "s2" {
			spec.Keys = []string{fmt.Sprintf("k%d", r.IntN(5))}
			if r.IntN(30) == 0 {
				spec.UserKey = "not allowed"
			}
		} else {
			spec.UserKey = "uk-" + id
			if r.IntN(40) == 0 {
				spec.UserKey = fmt.Sprintf("uk-a%d", r.IntN(60)) // may be another's: invalid
			}
		}
		if r.IntN(4) == 0 {
			spec.State = catalog.StateSuspended
		}
		if r.IntN(15) == 0 {
			spec.ReferrerFilters = []string{"*.example.com"}
		}
		return Record{Key: AppKey(tid, sid, id), Value: mustJSON(spec)}
	}

	// A valid start: tenants, services and plans, applied as one batch.
	var pos Position
	var start []Entry
	for _, tid := range tenants {
		start = append(start, Entry{Record: tenantRec(tid)})
		for _, sid := range services[tid] {
			start = append(start, Entry{Record: serviceRec(tid, sid)})
			for _, pid := range plans {
				start = append(start, Entry{Record: Record{Key: PlanKey(tid, sid, pid), Value: mustJSON(catalog.PlanSpec{ID: pid})}})
			}
		}
	}
	for i := range start {
		pos++
		start[i].Pos = pos
	}
	if err := p.apply(start); err != nil || p.Err() != nil {
		t.Fatalf("start: %v %v", err, p.Err())
	}
	rebuildsAtStart := p.rebuilds

	changes, batches, compared := 0, 0, 0
	// undo holds the values, before the first batch that made the state
	// invalid, of every key written since: appended as the next batch, it
	// brings the last valid configuration back, as a writer taking back its
	// change does.
	var undo map[string][]byte
	for changes < 10_000 {
		n := 1 + r.IntN(4)
		batch := make([]Entry, 0, n)
		if undo != nil {
			for k, v := range undo {
				pos++
				batch = append(batch, Entry{Record: Record{Key: k, Value: v}, Pos: pos})
			}
			undo, n = nil, 0
		}
		for range n {
			tid := tenants[r.IntN(len(tenants))]
			if r.IntN(40) == 0 {
				tid = "t9" // a tenant that does not exist: orphans
			}
			sids := services[tid]
			sid := "s9"
			if len(sids) > 0 {
				sid = sids[r.IntN(len(sids))]
			}
			var rec Record
			switch k := r.IntN(200); {
			case k < 2:
				rec = tenantRec(tid)
			case k < 5:
				rec = serviceRec(tid, sid)
			case k < 40:
				rec = planRec(tid, sid)
			default:
				rec = appRec(tid, sid)
			}
			pos++
			batch = append(batch, Entry{Record: rec, Pos: pos})
			changes++
		}
		batches++
		// Checking costs a rebuild and two dumps: every few batches, and
		// after the last, keeps the test fast under the race detector.
		check := batches%50 == 0 || changes >= 10_000
		var before string
		if check && p.Err() == nil {
			before = dump(t, p.store.Load())
		}
		prev := map[string][]byte{}
		for _, e := range batch {
			if _, ok := prev[e.Key]; !ok {
				prev[e.Key] = p.state[e.Key]
			}
		}
		if err := p.apply(batch); err != nil {
			t.Fatal(err)
		}
		if p.Err() != nil && undo == nil {
			undo = prev
		}
		if !check {
			continue
		}
		doc, _ := p.state.Document()
		want, err := catalog.Build(doc, keys)
		switch {
		case err == nil:
			if p.Err() != nil {
				t.Fatalf("batch %d: valid state, projection says %v", batches, p.Err())
			}
			if got, w := dump(t, p.store.Load()), dump(t, want); got != w {
				t.Fatalf("batch %d: incremental projection differs from a rebuild\n--- incremental\n%s--- rebuild\n%s", batches, got, w)
			}
			compared++
		case p.Err() == nil:
			t.Fatalf("batch %d: invalid state (%v) published", batches, err)
		case before != "":
			if got := dump(t, p.store.Load()); got != before {
				t.Fatalf("batch %d: invalid state changed the published catalog", batches)
			}
		}
	}
	staged := batches - (p.rebuilds - rebuildsAtStart)
	t.Logf("%d changes in %d batches: %d compared with a rebuild, %d applied incrementally", changes, batches, compared, staged)
	// The property means something only if both paths ran often.
	if staged < batches/2 || compared < batches/150 || p.rebuilds-rebuildsAtStart < 20 {
		t.Errorf("%d of %d batches staged, %d compared, %d rebuilds: the generator no longer exercises both paths",
			staged, batches, compared, p.rebuilds-rebuildsAtStart)
	}
}
