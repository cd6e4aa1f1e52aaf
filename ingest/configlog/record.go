package configlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Record is one configuration event: Key names one entity, Value is the
// entity's JSON in its document form, and an empty Value deletes the entity
// (a tombstone). The latest record of a key is the entity's state, which is
// what lets a compacted Kafka topic hold the configuration.
//
// Keys, with each segment escaped by url.PathEscape:
//
//	tenant/<tenant>                     id, admin_token, query_tokens
//	service/<tenant>/<service>          the service's settings and its metrics
//	plan/<tenant>/<service>/<plan>      a plan with its limits
//	app/<tenant>/<service>/<app>        an application with keys and referrer filters
//	proxyconfig/<tenant>/<service>/<env>/<version>
//	                                    one version of a service's gateway
//	                                    configuration in staging or production
//
// A proxyconfig record is written once and never replaced: each version has
// its own key, so compaction keeps every version and the log is the
// history (see GatewayVersion). They are not part of the Document; Diff
// leaves them alone while their service exists.
//
// Metrics travel inside their service's record because their declared order
// is part of the service (it is the order of every listing, such as the
// hierarchy extension), and a compacted log does not keep the order of
// separate records. Records name metrics by name only: a metric's
// limiter.MetricID is given by each process's catalog.KeyRegistry by name,
// so neither record order nor compaction can move a counter from one metric
// to another. Values hold secrets (tokens, keys): never log them.
type Record struct {
	Key   string
	Value []byte
}

// Tombstone reports whether r deletes its entity.
func (r Record) Tombstone() bool { return len(r.Value) == 0 }

// Entity kinds, the first segment of a key.
const (
	KindTenant  = "tenant"
	KindService = "service"
	KindPlan    = "plan"
	KindApp     = "app"
	// KindProxyConfig records are gateway configuration versions.
	KindProxyConfig = "proxyconfig"
)

// kindRank orders upserts parents first and tombstones children first.
var kindRank = map[string]int{KindTenant: 0, KindService: 1, KindPlan: 2, KindApp: 3, KindProxyConfig: 4}

// TenantKey returns the key of a tenant's record.
func TenantKey(tenant string) string { return KindTenant + "/" + url.PathEscape(tenant) }

// ServiceKey returns the key of a service's record.
func ServiceKey(tenant, service string) string {
	return KindService + "/" + url.PathEscape(tenant) + "/" + url.PathEscape(service)
}

// PlanKey returns the key of a plan's record.
func PlanKey(tenant, service, plan string) string {
	return KindPlan + "/" + url.PathEscape(tenant) + "/" + url.PathEscape(service) + "/" + url.PathEscape(plan)
}

// AppKey returns the key of an application's record.
func AppKey(tenant, service, app string) string {
	return KindApp + "/" + url.PathEscape(tenant) + "/" + url.PathEscape(service) + "/" + url.PathEscape(app)
}

// ParseKey splits a key into its kind and unescaped id segments.
func ParseKey(key string) (kind string, ids []string, err error) {
	parts := strings.Split(key, "/")
	want := map[string]int{KindTenant: 1, KindService: 2, KindPlan: 3, KindApp: 3, KindProxyConfig: 4}[parts[0]]
	if want == 0 || len(parts) != want+1 {
		return "", nil, fmt.Errorf("configlog: unknown key kind or shape")
	}
	ids = make([]string, want)
	for i := range ids {
		if ids[i], err = url.PathUnescape(parts[i+1]); err != nil || ids[i] == "" {
			return "", nil, fmt.Errorf("configlog: bad key segment %d", i+1)
		}
	}
	return parts[0], ids, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("configlog: encode entity: %v", err)) // plain structs of strings: cannot fail
	}
	return b
}

// Records returns the records that describe doc, one per entity, in a
// canonical order (parents before children, keys sorted).
func Records(doc *catalog.Document) []Record {
	m := entities(doc)
	out := make([]Record, 0, len(m))
	for k, v := range m {
		out = append(out, Record{Key: k, Value: v})
	}
	sortRecords(out)
	return out
}

func entities(doc *catalog.Document) map[string][]byte {
	m := map[string][]byte{}
	for i := range doc.Tenants {
		eachEntity(&doc.Tenants[i], func(k string, v []byte) { m[k] = v })
	}
	return m
}

// eachEntity calls fn with the key and value of every entity of t, one at
// a time.
func eachEntity(t *catalog.TenantSpec, fn func(key string, value []byte)) {
	tv := *t
	tv.Services = nil
	fn(TenantKey(t.ID), mustJSON(tv))
	for si := range t.Services {
		s := &t.Services[si]
		sv := *s
		sv.Plans, sv.Applications = nil, nil
		fn(ServiceKey(t.ID, s.ID), mustJSON(sv))
		for pi := range s.Plans {
			fn(PlanKey(t.ID, s.ID, s.Plans[pi].ID), mustJSON(s.Plans[pi]))
		}
		for ai := range s.Applications {
			fn(AppKey(t.ID, s.ID, s.Applications[ai].ID), mustJSON(s.Applications[ai]))
		}
	}
}

func sortRecords(rs []Record) {
	sort.Slice(rs, func(i, j int) bool {
		ti, tj := rs[i].Tombstone(), rs[j].Tombstone()
		if ti != tj {
			return !ti // upserts first
		}
		ki := kindRank[rs[i].Key[:strings.IndexByte(rs[i].Key, '/')]]
		kj := kindRank[rs[j].Key[:strings.IndexByte(rs[j].Key, '/')]]
		if ki != kj {
			if ti {
				return ki > kj // tombstones: children first
			}
			return ki < kj // upserts: parents first
		}
		return rs[i].Key < rs[j].Key
	})
}

// State is the configuration as the log holds it: the latest value of every
// key. Applying records in log order gives the same State on every node.
type State map[string][]byte

// Apply applies one record: an upsert stores its value, a tombstone deletes.
func (s State) Apply(r Record) {
	if r.Tombstone() {
		delete(s, r.Key)
		return
	}
	s[r.Key] = r.Value
}

// Document assembles the state into a Document: tenants, services, plans
// and applications sorted by id, metrics in their declared order. Records
// whose parent entity is missing (an application of a deleted service) and
// records that do not decode are left out and returned as skipped keys.
func (s State) Document() (doc *catalog.Document, skipped []string) {
	type svc struct {
		spec  catalog.ServiceSpec
		plans []catalog.PlanSpec
		apps  []catalog.AppSpec
	}
	type ten struct {
		spec catalog.TenantSpec
		svcs map[string]*svc
	}
	tenants := map[string]*ten{}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ki, kj := rankOf(keys[i]), rankOf(keys[j])
		if ki != kj {
			return ki < kj
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		kind, ids, err := ParseKey(k)
		if err != nil {
			skipped = append(skipped, k)
			continue
		}
		v := s[k]
		var t *ten
		var sv *svc
		if kind != KindTenant {
			if t = tenants[ids[0]]; t == nil {
				skipped = append(skipped, k)
				continue
			}
			if kind != KindService {
				if sv = t.svcs[ids[1]]; sv == nil {
					skipped = append(skipped, k)
					continue
				}
			}
		}
		ok := true
		switch kind {
		case KindTenant:
			var spec catalog.TenantSpec
			if ok = decodeValue(v, &spec); ok {
				spec.ID, spec.Services = ids[0], nil
				tenants[ids[0]] = &ten{spec: spec, svcs: map[string]*svc{}}
			}
		case KindService:
			var spec catalog.ServiceSpec
			if ok = decodeValue(v, &spec); ok {
				spec.ID, spec.Plans, spec.Applications = ids[1], nil, nil
				t.svcs[ids[1]] = &svc{spec: spec}
			}
		case KindPlan:
			var spec catalog.PlanSpec
			if ok = decodeValue(v, &spec); ok {
				spec.ID = ids[2]
				sv.plans = append(sv.plans, spec)
			}
		case KindApp:
			var spec catalog.AppSpec
			if ok = decodeValue(v, &spec); ok {
				spec.ID = ids[2]
				sv.apps = append(sv.apps, spec)
			}
		}
		if !ok {
			skipped = append(skipped, k)
		}
	}
	doc = &catalog.Document{}
	tids := sortedKeys(tenants)
	for _, tid := range tids {
		t := tenants[tid]
		for _, sid := range sortedKeys(t.svcs) {
			sv := t.svcs[sid]
			// Keys were visited sorted, so plans and apps are sorted by key,
			// which sorts them by escaped id; sort by id proper.
			sort.Slice(sv.plans, func(i, j int) bool { return sv.plans[i].ID < sv.plans[j].ID })
			sort.Slice(sv.apps, func(i, j int) bool { return sv.apps[i].ID < sv.apps[j].ID })
			sv.spec.Plans, sv.spec.Applications = sv.plans, sv.apps
			t.spec.Services = append(t.spec.Services, sv.spec)
		}
		doc.Tenants = append(doc.Tenants, t.spec)
	}
	return doc, skipped
}

func rankOf(key string) int {
	i := strings.IndexByte(key, '/')
	if i < 0 {
		return 99
	}
	if r, ok := kindRank[key[:i]]; ok {
		return r
	}
	return 99
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeValue decodes a record value leniently: fields this version does
// not know are ignored, so that newer writers do not break older readers.
func decodeValue(v []byte, into any) bool {
	return json.Unmarshal(v, into) == nil
}

// Diff returns the records that turn state into desired: an upsert for
// every entity that is new or different and a tombstone for every key of
// state that desired does not have (including records Document skipped).
func Diff(state State, desired *catalog.Document) []Record {
	want := entities(desired)
	var out []Record
	for k, v := range want {
		if cur, ok := state[k]; !ok || !bytes.Equal(cur, v) {
			out = append(out, Record{Key: k, Value: v})
		}
	}
	live := liveServices(desired)
	for k := range state {
		if _, ok := want[k]; !ok && !keepHistory(k, live) {
			out = append(out, Record{Key: k})
		}
	}
	sortRecords(out)
	return out
}

// Merge returns current with every tenant that desired declares replaced by
// desired's version (tenants desired does not mention are kept as they are).
// Neither argument is modified.
func Merge(current, desired *catalog.Document) *catalog.Document {
	out := current.Clone()
	for _, t := range desired.Tenants {
		if cur := out.Tenant(t.ID); cur != nil {
			*cur = t.Clone()
		} else {
			out.Tenants = append(out.Tenants, t.Clone())
		}
	}
	return out
}

// StateOf returns the State whose Document is doc.
func StateOf(doc *catalog.Document) State { return State(entities(doc)) }

// Reconcile returns the records that make a log whose state is current hold
// desired for every tenant desired declares, leaving other tenants alone:
// what `sluice dev --config FILE` and `serve --config FILE` append, so that
// applying a file is an event like any other change and every node
// converges. The caller validates Merge(current, desired) first.
func Reconcile(current, desired *catalog.Document) []Record {
	return Diff(StateOf(current), Merge(current, desired))
}
