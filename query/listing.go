package query

import (
	"container/heap"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Paths of the configuration listings (pick lists for dashboards and the
// Grafana data source).
const (
	PathServices     = "/api/v1/services"
	PathApplications = "/api/v1/applications"
)

// MaxServicesListed bounds /api/v1/services: a tenant with more services is
// listed in id order up to it, with truncated set.
const MaxServicesListed = 1000

// servicesAnswer is the answer of /api/v1/services.
type servicesAnswer struct {
	Services  []serviceJSON `json:"services"`
	Truncated bool          `json:"truncated"`
}

type serviceJSON struct {
	ID      string       `json:"id"`
	State   string       `json:"state"`
	Metrics []metricJSON `json:"metrics"`
	Plans   []string     `json:"plans"`
}

type metricJSON struct {
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"`
}

// services answers GET /api/v1/services: the tenant's services, each with
// its metrics (declared order, with parents) and plan ids. It reads the
// configuration only, never ClickHouse; a token check that costs nothing.
func (s *Server) services(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	ans := servicesAnswer{Services: []serviceJSON{}}
	t := snap.Tenants[sc.tenant]
	if t != nil {
		ids := make([]string, 0, len(t.Services))
		for id := range t.Services {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if len(ids) > MaxServicesListed {
			ids, ans.Truncated = ids[:MaxServicesListed], true
		}
		for _, id := range ids {
			svc := t.Services[id]
			sj := serviceJSON{ID: id, State: stateName(svc.State), Metrics: make([]metricJSON, 0, len(svc.Metrics)), Plans: []string{}}
			for _, m := range svc.Metrics {
				sj.Metrics = append(sj.Metrics, metricJSON{Name: m.Name, Parent: svc.MetricName(m.Parent)})
			}
			for pid := range svc.Plans() {
				sj.Plans = append(sj.Plans, pid)
			}
			sort.Strings(sj.Plans)
			ans.Services = append(ans.Services, sj)
		}
	}
	return writeJSON(ctx, ans)
}

// applicationsAnswer is the answer of /api/v1/applications.
type applicationsAnswer struct {
	ServiceID    string    `json:"service_id"`
	Applications []appJSON `json:"applications"`
	Truncated    bool      `json:"truncated"`
}

type appJSON struct {
	ID     string `json:"id"`
	PlanID string `json:"plan_id"`
	State  string `json:"state"`
}

// applications answers GET /api/v1/applications?service_id=S[&prefix=P]
// [&limit=N]: the service's applications whose id starts with prefix, in id
// order, at most limit (1-1000, default 100). The work is one pass over the
// service's applications (at most catalog.MaxApps) keeping the limit
// smallest ids.
func (s *Server) applications(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	id, ok := arg(ctx, "service_id")
	svc, e := service(snap, sc, id, ok)
	if e != nil {
		return e
	}
	limit := 100
	if _, ok := arg(ctx, "limit"); ok || ctx.QueryArgs().Has("limit") {
		if limit, e = parseLimit(ctx); e != nil {
			return e
		}
	}
	prefix, _ := arg(ctx, "prefix")
	if len(prefix) > catalog.MaxAppIDLen {
		return badRequest("invalid_app_id", "prefix must be at most 255 bytes")
	}
	// The limit+1 smallest matching ids (one more tells whether the list is
	// truncated), in a max-heap: O(apps × log limit).
	h := &maxHeap{}
	for aid := range svc.Apps().All() {
		if !strings.HasPrefix(aid, prefix) {
			continue
		}
		if h.Len() > limit {
			if aid >= (*h)[0] {
				continue
			}
			(*h)[0] = aid
			heap.Fix(h, 0)
			continue
		}
		heap.Push(h, aid)
	}
	ids := []string(*h)
	sort.Strings(ids)
	ans := applicationsAnswer{ServiceID: svc.ID, Applications: make([]appJSON, 0, min(len(ids), limit))}
	if len(ids) > limit {
		ids, ans.Truncated = ids[:limit], true
	}
	for _, aid := range ids {
		a := svc.App(aid)
		pj := ""
		if plan := a.Plan(); plan != nil {
			pj = plan.ID
		}
		ans.Applications = append(ans.Applications, appJSON{ID: aid, PlanID: pj, State: stateName(a.State)})
	}
	return writeJSON(ctx, ans)
}

// stateName is the configuration's name of a state.
func stateName(st catalog.State) string {
	if st == catalog.Suspended {
		return "suspended"
	}
	return "active"
}

// maxHeap is a heap of strings, largest first.
type maxHeap []string

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
