package catalog

import (
	"fmt"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/limiter"
)

func TestBuildIndexesEverything(t *testing.T) {
	doc := loadFull(t)
	snap, err := Build(doc, NewKeyRegistry())
	if err != nil {
		t.Fatal(err)
	}
	acme, globex := snap.Tenants["acme"], snap.Tenants["globex"]
	if acme == nil || globex == nil || len(snap.Tenants) != 2 {
		t.Fatalf("tenants: %v", snap.Tenants)
	}
	if snap.AdminTokens["adm-acme"] != acme || snap.AdminTokens["adm-globex"] != globex {
		t.Error("admin tokens")
	}
	if snap.QueryTokens["q-acme-1"] != acme || snap.QueryTokens["q-acme-2"] != acme || len(snap.QueryTokens) != 2 {
		t.Error("query tokens")
	}
	s := snap.Services["2555417777820"]
	o := snap.Services["acme-oauth"]
	g := snap.Services["globex-1"]
	if s == nil || o == nil || g == nil || len(snap.Services) != 3 {
		t.Fatalf("services: %v", snap.Services)
	}
	if s.Tenant != acme || acme.Services["acme-oauth"] != o || g.Tenant != globex {
		t.Error("service ownership")
	}
	// One service token valid for both acme services; globex's only for its own.
	if grant := snap.ServiceToken["st-acme"]; grant == nil || !reflect.DeepEqual(grant.Services, map[string]*Service{s.ID: s, o.ID: o}) {
		t.Errorf("token grant st-acme: %+v", grant)
	}
	if grant := snap.ServiceToken["st-globex"]; grant == nil || len(grant.Services) != 1 || grant.Services["globex-1"] != g {
		t.Error("token grant st-globex")
	}
	pa := snap.ProviderKeys["pk-acme"]
	if pa == nil || pa.Tenant != acme || pa.Default != s || len(pa.Services) != 2 {
		t.Errorf("provider account: %+v", pa)
	}
	if s.AuthMode != AuthUserKey || o.AuthMode != AuthOAuth || g.AuthMode != AuthAppID {
		t.Error("auth modes")
	}
	if g.State != Suspended || s.State != Active || !o.ReferrerFiltersRequired || !s.Default {
		t.Error("flags and states")
	}
	// Metrics: dense ids in declaration order, parents and children.
	wantMetrics := []Metric{{"hits", 0, limiter.NoParent}, {"search", 1, 0}, {"search.deep", 2, 1}}
	if !reflect.DeepEqual(s.Metrics, wantMetrics) {
		t.Errorf("metrics = %+v", s.Metrics)
	}
	if !reflect.DeepEqual(s.Parents, []limiter.MetricID{limiter.NoParent, 0, 1}) {
		t.Errorf("parents = %v", s.Parents)
	}
	if !reflect.DeepEqual(s.Children, [][]limiter.MetricID{{1}, {2}, nil}) {
		t.Errorf("children = %v", s.Children)
	}
	if s.MetricIndex["search.deep"] != 2 || len(s.MetricIndex) != 3 {
		t.Error("metric index")
	}
	// Limits compiled in plan order.
	want := []limiter.Limit{
		{Metric: 0, Period: limiter.Period{Unit: limiter.Minute}, Max: 100},
		{Metric: 0, Period: limiter.Period{Unit: limiter.Month}, Max: 100000},
		{Metric: 1, Period: limiter.Period{Unit: limiter.Sliding, Window: 10 * time.Second}, Max: 5},
	}
	if p := s.Plan("basic"); p == nil || p.Name != "Basic" || !reflect.DeepEqual(p.Limits, want) {
		t.Errorf("plan basic = %+v", s.Plan("basic"))
	}
	if p := s.Plan("free"); p == nil || len(p.Limits) != 0 {
		t.Error("plan free")
	}
	// Applications.
	app1, app2 := s.App("app1"), s.App("app2")
	if app1 == nil || app2 == nil || s.AppByUserKey([]byte("uk-1")) != app1 || s.AppByUserKey([]byte("uk-2")) != app2 || s.NumUserKeys() != 2 {
		t.Fatal("user keys")
	}
	if app1.Plan() != s.Plan("basic") || app1.Service != s || app2.State != Suspended || app1.Key == 0 || app1.Key == app2.Key {
		t.Errorf("app1 = %+v", app1)
	}
	oa := o.App("oapp")
	if oa == nil || oa.RedirectURL != "https://example.com/cb" || !reflect.DeepEqual(oa.Keys, []string{"secret-1"}) ||
		!reflect.DeepEqual(oa.ReferrerFilters, []string{"*.example.com", "localhost:8080"}) || o.NumUserKeys() != 0 {
		t.Errorf("oauth app = %+v", oa)
	}
	// The snapshot shares no memory with the document.
	doc.Tenants[0].Services[0].Tokens[0] = "changed"
	doc.Tenants[1].Services[0].Applications[0].Keys[0] = "changed"
	if s.Tokens[0] != "st-acme" || g.App("g1").Keys[0] != "k1" {
		t.Error("snapshot aliases the document")
	}
}

// TestBuildGlobalLimits: a plan's Global limits are those without scope
// region, in plan order.
func TestBuildGlobalLimits(t *testing.T) {
	doc := loadFull(t)
	pl := &doc.Tenants[0].Services[0].Plans[0]
	pl.Limits[0].Scope = ScopeGlobal
	pl.Limits[1].Scope = ScopeRegion
	snap, err := Build(doc, NewKeyRegistry())
	if err != nil {
		t.Fatal(err)
	}
	p := snap.Services[doc.Tenants[0].Services[0].ID].Plan(pl.ID)
	if want := []limiter.Limit{p.Limits[0], p.Limits[2]}; !reflect.DeepEqual(p.Global, want) {
		t.Errorf("global limits %v, want %v", p.Global, want)
	}
	if len(p.Strict) != 0 {
		t.Errorf("strict limits %v, want none", p.Strict)
	}
	if o := snap.Services["acme-oauth"]; o == nil || len(maps.Collect(o.Plans())) != 1 {
		t.Fatal("acme-oauth's plan")
	} else {
		for _, op := range o.Plans() {
			if !reflect.DeepEqual(op.Strict, []int{0}) {
				t.Errorf("strict limits %v, want [0] (full.yaml's eternity limit)", op.Strict)
			}
		}
	}
	if g := snap.Services["globex-1"].Plan("gold"); len(g.Global) != 0 || len(g.Limits) != 1 {
		t.Errorf("a plan whose one limit has scope region: global %v", g.Global)
	}
}

func TestBuildRefusesInvalid(t *testing.T) {
	doc := loadFull(t)
	doc.Tenants[0].Services[0].Plans[0].Limits[0].Period = "fortnight"
	if _, err := Build(doc, nil); err == nil {
		t.Fatal("Build accepted an invalid document")
	}
}

// TestKeysStableAcrossRebuilds: an application keeps its AppKey through
// rebuilds, whatever else changes, and keys are never shared.
func TestKeysStableAcrossRebuilds(t *testing.T) {
	keys := NewKeyRegistry()
	doc := loadFull(t)
	s1, err := Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	k1 := s1.Services["2555417777820"].App("app1").Key
	kg := s1.Services["globex-1"].App("g1").Key

	// Remove app1, reorder, add others: other keys stay; new ones are new.
	svc := &doc.Tenants[0].Services[0]
	svc.Applications = []AppSpec{{ID: "new", Plan: "free", UserKey: "uk-new"}, svc.Applications[1]}
	doc.Tenants[0], doc.Tenants[1] = doc.Tenants[1], doc.Tenants[0]
	s2, err := Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Services["globex-1"].App("g1").Key != kg {
		t.Error("g1's key changed")
	}
	kn := s2.Services["2555417777820"].App("new").Key
	seen := map[limiter.AppKey]bool{k1: true, kg: true, s1.Services["2555417777820"].App("app2").Key: true, s1.Services["acme-oauth"].App("oapp").Key: true}
	if seen[kn] {
		t.Error("a new application got a key already given")
	}
	// app1 comes back: same key as before.
	svc = &doc.Tenants[1].Services[0]
	svc.Applications = append(svc.Applications, AppSpec{ID: "app1", Plan: "basic", UserKey: "uk-1"})
	s3, err := Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	if s3.Services["2555417777820"].App("app1").Key != k1 {
		t.Error("app1's key changed after delete and re-create")
	}
	if k, ok := keys.Lookup("acme", "2555417777820", "app1"); !ok || k != k1 {
		t.Error("Lookup")
	}
	if _, ok := keys.Lookup("acme", "2555417777820", "never"); ok {
		t.Error("Lookup of an unknown app")
	}
	// Same app id in another service or tenant: another key.
	if keys.Key("acme", "acme-oauth", "app1") == k1 || keys.Key("globex", "2555417777820", "app1") == k1 {
		t.Error("keys shared across services or tenants")
	}
}

func TestKeyRegistryConcurrent(t *testing.T) {
	var r KeyRegistry
	var wg sync.WaitGroup
	got := make([][]limiter.AppKey, 8)
	for g := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				got[g] = append(got[g], r.Key("t", "s", string(rune('a'+i%50))))
			}
		}()
	}
	wg.Wait()
	for g := range got {
		if !reflect.DeepEqual(got[g], got[0]) {
			t.Fatal("goroutines saw different keys for the same app")
		}
	}
}

func TestStore(t *testing.T) {
	var st Store
	if s := st.Load(); s == nil || len(s.Tenants) != 0 || s.AdminTokens == nil {
		t.Fatal("zero Store must load an empty snapshot")
	}
	snap, err := Build(loadFull(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if prev := st.Swap(snap); prev != nil {
		t.Error("first Swap returned a previous snapshot")
	}
	if st.Load() != snap {
		t.Error("Load after Swap")
	}
	if NewStore(snap).Load() != snap || NewStore(nil).Load() == nil {
		t.Error("NewStore")
	}
	// Readers race with writers without locks (run with -race).
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if s := st.Load(); s.Services["2555417777820"] == nil {
					t.Error("reader saw a snapshot without the service")
					return
				}
			}
		}()
	}
	for range 50 {
		s, _ := Build(loadFull(t), nil)
		st.Swap(s)
	}
	close(stop)
	wg.Wait()
	if n := testing.AllocsPerRun(100, func() { _ = st.Load().Services["2555417777820"] }); n != 0 {
		t.Errorf("Load allocates %v", n)
	}
}

func BenchmarkStoreLoadLookup(b *testing.B) {
	snap, _ := Build(mustDemo(), nil)
	st := NewStore(snap)
	key := []byte(DemoServiceID)
	b.ReportAllocs()
	for b.Loop() {
		if st.Load().Services[string(key)] == nil {
			b.Fatal("missing")
		}
	}
}

func mustDemo() *Document {
	d, _ := DemoDocument(DemoCredentials{})
	return d
}

// FuzzParse: no input makes the parser or the validator panic; whatever
// parses and validates also builds, and survives an export round trip.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"tenants: []",
		"tenants: [{id: a, admin_token: t, services: [{id: s, metrics: [{name: hits}], plans: [{id: p, limits: [{metric: hits, period: minute, max: 1}]}], applications: [{id: x, plan: p, user_key: u}]}]}]",
		`{"tenants":[{"id":"a","admin_token":"t","services":[{"id":"s","auth_mode":"app_id","metrics":[{"name":"h"},{"name":"c","parent":"h"}],"plans":[{"id":"p","limits":[{"metric":"c","period":"sliding:5s","max":2}]}],"applications":[{"id":"x","plan":"p","keys":["k"],"referrer_filters":["*.a"]}]}]}]}`,
		"a: &a [1]\nb: *a\n",
		"tenants:\n  - id: x\n    services: {}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(data, FormatAuto)
		if err != nil {
			return
		}
		if doc.Validate() != nil {
			return
		}
		if _, err := Build(doc, nil); err != nil {
			t.Fatalf("valid document does not build: %v", err)
		}
		out, err := doc.EncodeYAML()
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		back, err := Parse(out, FormatYAML)
		if err != nil {
			t.Fatalf("reparse of export: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(doc, back) {
			t.Fatalf("round trip differs:\n%s", out)
		}
	})
}

// bigDocument has one tenant with one service of n applications.
func bigDocument(n int) *Document {
	d := mustDemo()
	s := &d.Tenants[0].Services[0]
	for i := range n {
		s.Applications = append(s.Applications, AppSpec{ID: fmt.Sprint("app-", i), Plan: DemoPlanID, UserKey: fmt.Sprint("uk-", i)})
	}
	return d
}

func BenchmarkBuild10kApps(b *testing.B) {
	doc := bigDocument(10_000)
	keys := NewKeyRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(doc, keys); err != nil {
			b.Fatal(err)
		}
	}
}
