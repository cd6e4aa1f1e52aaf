package configlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Gateway environments: each service has a versioned gateway configuration
// in each.
const (
	EnvStaging    = "staging"
	EnvProduction = "production"
)

// ValidEnv reports whether env names a gateway environment.
func ValidEnv(env string) bool { return env == EnvStaging || env == EnvProduction }

// GatewayVersion is one version of a service's gateway configuration in one
// environment, as its proxyconfig record holds it. Versions of an
// environment count from 1; a record, once written, is never replaced.
type GatewayVersion struct {
	Tenant      string              `json:"-"`
	Service     string              `json:"-"`
	Environment string              `json:"environment"`
	Version     int64               `json:"version"`
	Gateway     catalog.GatewaySpec `json:"gateway"` // with defaults applied (catalog.GatewaySpec.Effective)
	CreatedAt   time.Time           `json:"created_at"`
	// PromotedFrom is the staging version a production version was copied
	// from (0: set by a configuration file, not by a promotion).
	PromotedFrom int64 `json:"promoted_from,omitempty"`
}

// ProxyConfigKey returns the key of one gateway configuration version.
func ProxyConfigKey(tenant, service, env string, version int64) string {
	return KindProxyConfig + "/" + url.PathEscape(tenant) + "/" + url.PathEscape(service) + "/" + env + "/" + strconv.FormatInt(version, 10)
}

// liveServices returns the set of "tenant/service" pairs of doc.
func liveServices(doc *catalog.Document) map[[2]string]bool {
	m := map[[2]string]bool{}
	for _, t := range doc.Tenants {
		for _, s := range t.Services {
			m[[2]string{t.ID, s.ID}] = true
		}
	}
	return m
}

// keepHistory reports whether k is a gateway version of a service in live:
// Diff keeps those, since the Document does not describe them.
func keepHistory(k string, live map[[2]string]bool) bool {
	if !strings.HasPrefix(k, KindProxyConfig+"/") {
		return false
	}
	_, ids, err := ParseKey(k)
	return err == nil && live[[2]string{ids[0], ids[1]}]
}

// gwKey names one environment of one service.
type gwKey struct{ tenant, service, env string }

// gatewayIndex holds every gateway version of the log, by environment.
type gatewayIndex map[gwKey]*gwHistory

type gwHistory struct {
	versions map[int64]*GatewayVersion
	latest   int64
}

// apply indexes one record if it is a gateway version.
func (ix gatewayIndex) apply(r Record) {
	if !strings.HasPrefix(r.Key, KindProxyConfig+"/") {
		return
	}
	_, ids, err := ParseKey(r.Key)
	if err != nil || !ValidEnv(ids[2]) {
		return
	}
	n, err := strconv.ParseInt(ids[3], 10, 64)
	if err != nil || n < 1 {
		return
	}
	k := gwKey{ids[0], ids[1], ids[2]}
	h := ix[k]
	if r.Tombstone() {
		if h != nil {
			delete(h.versions, n)
			if len(h.versions) == 0 {
				delete(ix, k)
			} else if n == h.latest {
				h.latest = 0
				for v := range h.versions {
					h.latest = max(h.latest, v)
				}
			}
		}
		return
	}
	var v GatewayVersion
	if json.Unmarshal(r.Value, &v) != nil {
		return
	}
	v.Tenant, v.Service, v.Environment, v.Version = ids[0], ids[1], ids[2], n
	if h == nil {
		h = &gwHistory{versions: map[int64]*GatewayVersion{}}
		ix[k] = h
	}
	h.versions[n] = &v
	h.latest = max(h.latest, n)
}

func (ix gatewayIndex) latest(tenant, service, env string) *GatewayVersion {
	if h := ix[gwKey{tenant, service, env}]; h != nil {
		return h.versions[h.latest]
	}
	return nil
}

// baseGateways indexes the gateway versions of a state.
func baseGateways(s State) gatewayIndex {
	ix := gatewayIndex{}
	for k, v := range s {
		ix.apply(Record{Key: k, Value: v})
	}
	return ix
}

// gatewayRecords returns the versions an update to desired adds over
// base: a new staging version for every service whose gateway
// configuration (with defaults) differs from its latest staging version, a
// production version 1 for a service that has none, and, in the tenants
// setProduction (nil: none) reports (a configuration file's, which sets
// both environments), a new production version wherever production differs
// too.
func gatewayRecords(ix gatewayIndex, desired *catalog.Document, setProduction func(tenant string) bool, now time.Time) ([]Record, error) {
	var out []Record
	for ti := range desired.Tenants {
		t := &desired.Tenants[ti]
		prod := setProduction != nil && setProduction(t.ID)
		for si := range t.Services {
			s := &t.Services[si]
			eff := s.Gateway.Effective(s)
			want, err := json.Marshal(eff)
			if err != nil {
				return nil, fmt.Errorf("configlog: encode gateway of %s/%s: %w", t.ID, s.ID, err)
			}
			for _, env := range []string{EnvStaging, EnvProduction} {
				cur := ix.latest(t.ID, s.ID, env)
				switch {
				case cur == nil:
				case env == EnvProduction && !prod:
					continue
				default:
					got, err := json.Marshal(cur.Gateway)
					if err != nil || bytes.Equal(got, want) {
						continue
					}
				}
				v := GatewayVersion{Environment: env, Version: 1, Gateway: eff, CreatedAt: now}
				if cur != nil {
					v.Version = cur.Version + 1
				}
				out = append(out, Record{Key: ProxyConfigKey(t.ID, s.ID, env, v.Version), Value: mustJSON(v)})
			}
		}
	}
	return out, nil
}

// GatewayVersions returns the versions of a service's gateway
// configuration in env, oldest first (none for an unknown service or
// environment). They are shared: callers must not modify them.
func (p *Projection) GatewayVersions(tenant, service, env string) []*GatewayVersion {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.gateways[gwKey{tenant, service, env}]
	if h == nil {
		return nil
	}
	out := make([]*GatewayVersion, 0, len(h.versions))
	for _, v := range h.versions {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// GatewayVersion returns one version of a service's gateway configuration
// in env; version 0 means the latest. It returns nil when there is none.
func (p *Projection) GatewayVersion(tenant, service, env string, version int64) *GatewayVersion {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.gateways[gwKey{tenant, service, env}]
	if h == nil {
		return nil
	}
	if version == 0 {
		version = h.latest
	}
	return h.versions[version]
}

// ErrNoVersion is returned by Promote when the staging version to promote
// does not exist.
var ErrNoVersion = errors.New("configlog: no such gateway configuration version")

// ErrStaleVersion is returned by Promote when the staging version maps
// requests to a metric the service no longer has: promoted, it would make
// gateways report usage Sluice refuses.
var ErrStaleVersion = errors.New("configlog: the version maps to a metric the service no longer has")

// Promote copies a staging version of a service's gateway configuration
// (0: the latest) to production as a new production version, and returns
// it once this node has applied it. Staging is left as it is. A version
// whose rules name a metric the service no longer has is refused
// (ErrStaleVersion). Two nodes
// promoting the same service at the same instant may pick the same version
// number; the later record then replaces the earlier (each is a copy of a
// staging version, so production still holds a promoted configuration).
func (p *Projection) Promote(ctx context.Context, tenant, service string, from int64) (*GatewayVersion, error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	var spec *catalog.ServiceSpec
	// The skeleton holds every service record (metrics included) without
	// the applications: enough to check the version's rules.
	skel, _ := p.skel.Document()
	if t := skel.Tenant(tenant); t != nil {
		spec = t.Service(service)
	}
	src := (*GatewayVersion)(nil)
	if h := p.gateways[gwKey{tenant, service, EnvStaging}]; h != nil {
		if from == 0 {
			from = h.latest
		}
		src = h.versions[from]
	}
	next := int64(1)
	if cur := p.gateways.latest(tenant, service, EnvProduction); cur != nil {
		next = cur.Version + 1
	}
	stale := ""
	if spec != nil && src != nil {
		for _, r := range src.Gateway.MappingRules {
			if spec.Metric(r.Metric) < 0 {
				stale = r.Metric
				break
			}
		}
	}
	p.mu.Unlock()
	if spec == nil || src == nil {
		return nil, ErrNoVersion
	}
	if stale != "" {
		return nil, fmt.Errorf("%w: %q", ErrStaleVersion, stale)
	}
	v := GatewayVersion{Environment: EnvProduction, Version: next, Gateway: src.Gateway, CreatedAt: time.Now().UTC().Truncate(time.Second), PromotedFrom: src.Version}
	key := ProxyConfigKey(tenant, service, EnvProduction, next)
	pos, err := p.log.Append(ctx, []Record{{Key: key, Value: mustJSON(v)}})
	if err != nil {
		return nil, fmt.Errorf("configlog: append promotion: %w", err)
	}
	if err := p.WaitFor(ctx, pos); err != nil {
		return nil, err
	}
	got := p.GatewayVersion(tenant, service, EnvProduction, next)
	if got == nil {
		return nil, fmt.Errorf("configlog: promotion of %s/%s: version %d not applied", tenant, service, next)
	}
	return got, nil
}
