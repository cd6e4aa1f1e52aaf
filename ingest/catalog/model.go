package catalog

import (
	"sync/atomic"

	"github.com/sluice-dev/sluice/limiter"
)

// AuthMode is how a service's applications identify themselves.
type AuthMode uint8

const (
	AuthUserKey AuthMode = iota // user_key
	AuthAppID                   // app_id (+ app_key)
	AuthOAuth                   // app_id only, with redirect_url
)

// State is the lifecycle state of a service or application.
type State uint8

const (
	Active State = iota
	Suspended
)

// Snapshot is a fully indexed view of every tenant's configuration. The hot
// path reads it without locks through Store.Load. Its tenants, services and
// credentials are immutable: a change to a tenant or a service builds a new
// Snapshot and swaps it in. A service's plans and applications are published
// per service instead (see Service.App, Stage): a change to a plan or an
// application copies only the touched part of that service's tables and
// publishes it with one atomic store, so it costs one change, not one
// configuration. Map lookups with string(b) of a []byte key do not allocate.
type Snapshot struct {
	Tenants      map[string]*Tenant  // by tenant id
	Services     map[string]*Service // by service id; service ids are unique across tenants
	ServiceToken map[string]*TokenGrant
	ProviderKeys map[string]*ProviderAccount
	AdminTokens  map[string]*Tenant // admin_token -> tenant
	QueryTokens  map[string]*Tenant // query token -> tenant
}

// TokenGrant lists the services one service token is valid for.
type TokenGrant struct {
	Services map[string]*Service // by service id
}

// ProviderAccount is what a provider_key opens: the services that declare it,
// and the default one used when the call names no service_id.
type ProviderAccount struct {
	Tenant   *Tenant
	Services map[string]*Service
	Default  *Service // nil when no service with this key is the tenant's default
}

// Tenant is one API provider. Its credentials never open another tenant's data.
type Tenant struct {
	ID          string
	AdminToken  string
	QueryTokens []string
	Services    map[string]*Service
	// WebhookURL and WebhookSecret: where the tenant's utilization alerts are
	// POSTed and the key of their signature; empty URL: no webhook.
	WebhookURL, WebhookSecret string
}

// Service is one API of a tenant with its metrics, plans and applications.
type Service struct {
	Tenant                  *Tenant
	ID                      string
	Tokens                  []string
	ProviderKey             string
	Default                 bool
	AuthMode                AuthMode
	ReferrerFiltersRequired bool
	State                   State

	// Metrics in the order the service declares them. A metric's ID is its
	// identity in the limiter (see KeyRegistry), not its position: ids stay
	// with their metric when others are added, deleted or reordered, so
	// tables indexed by id may have holes.
	Metrics     []Metric
	MetricIndex map[string]limiter.MetricID // metric name -> id
	Parents     []limiter.MetricID          // by id: the metric's parent, limiter.NoParent for a root or a hole
	Children    [][]limiter.MetricID        // Children[i]: ids of Metrics[i]'s direct children, in declared order
	// AlertThresholds are the utilization alert thresholds in percent of a
	// limit, ascending, without duplicates: the service's or
	// DefaultAlertThresholds.
	AlertThresholds []uint16

	// tables holds the plans and the application indexes (see Plan, App,
	// AppByUserKey); readers load it once per lookup, writers publish a new
	// one that shares all but the touched shard with the old.
	tables atomic.Pointer[serviceTables]

	pos []uint16 // by id: the metric's index in Metrics, noPos for a hole
}

// Metric is a countable thing of a service (hits, search, ...).
type Metric struct {
	Name   string
	ID     limiter.MetricID
	Parent limiter.MetricID // limiter.NoParent for a root metric
}

// MetricPos returns the index in s.Metrics of the metric with id, or -1 if
// the service has no such metric. It does not allocate.
func (s *Service) MetricPos(id limiter.MetricID) int {
	if s.pos != nil {
		if int(id) < len(s.pos) && s.pos[id] != noPos {
			return int(s.pos[id])
		}
		return -1
	}
	// A Service assembled by hand, without Build: few metrics, scan them.
	for i := range s.Metrics {
		if s.Metrics[i].ID == id {
			return i
		}
	}
	return -1
}

// MetricName returns the name of the metric with id, or "" if the service
// has no such metric. It does not allocate.
func (s *Service) MetricName(id limiter.MetricID) string {
	if i := s.MetricPos(id); i >= 0 {
		return s.Metrics[i].Name
	}
	return ""
}

// MetricByName returns the named metric, or false if the service has none.
// It does not allocate.
func (s *Service) MetricByName(name string) (Metric, bool) {
	id, ok := s.MetricIndex[name]
	if !ok {
		return Metric{}, false
	}
	i := s.MetricPos(id)
	if i < 0 {
		return Metric{}, false
	}
	return s.Metrics[i], true
}

// Plan is a named set of limits applications subscribe to.
type Plan struct {
	ID     string
	Name   string
	Limits []limiter.Limit // compiled, in the order the plan declares them
	// Exact is true when a limit has consistency exact: in a cluster the
	// application's owner decides its calls.
	Exact bool
	// Global are the limits with scope global, in plan order: the ones the
	// usage of peer regions counts toward (limits with scope region count
	// only the usage admitted in this region).
	Global []limiter.Limit
	// Strict are the positions in Limits of the strict global limits: each
	// region admits at most its share of their max.
	Strict []int
}

// planRef is a plan as the applications on it reach it: one per plan of a
// service, shared by every version of the App of each application on the
// plan, so that a change to the plan is one atomic store of its new
// version, whatever the number of applications on it.
type planRef struct {
	p atomic.Pointer[Plan]
}

func newPlanRef(p *Plan) *planRef {
	r := &planRef{}
	r.p.Store(p)
	return r
}

// App is one application (a consumer of the service) with its credentials.
// Service is the application's service in the Snapshot it was published in
// (a change to the service builds new Apps); Plan returns the current
// version of its plan. An App is never modified after it is published
// (a change to the application publishes a new App).
type App struct {
	Service         *Service
	ID              string
	Key             limiter.AppKey // stable for the life of the process
	plan            *planRef
	UserKey         string
	Keys            []string // app_key values
	ReferrerFilters []string
	RedirectURL     string
	State           State
}

// Plan returns the current version of the application's plan, or nil for
// an App without one. It does not allocate; a caller that reads several
// fields of the plan should call it once and keep the result, which is
// immutable.
func (a *App) Plan() *Plan {
	if a.plan == nil {
		return nil
	}
	return a.plan.p.Load()
}

// SetPlan puts an App assembled by hand (tests, tools) on plan p; Assemble
// then joins it to the service's plans. Never on a published App.
func (a *App) SetPlan(p *Plan) { a.plan = newPlanRef(p) }
