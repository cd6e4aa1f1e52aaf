package configlog

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

func fullDoc(t *testing.T) *catalog.Document {
	t.Helper()
	doc, err := catalog.Load("../catalog/testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// sorted returns doc in the canonical order a State assembles: tenants,
// services, plans and applications by id (metrics keep their order).
func sorted(doc *catalog.Document) *catalog.Document {
	d := doc.Clone()
	sort.Slice(d.Tenants, func(i, j int) bool { return d.Tenants[i].ID < d.Tenants[j].ID })
	for ti := range d.Tenants {
		ss := d.Tenants[ti].Services
		sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID })
		for si := range ss {
			sort.Slice(ss[si].Plans, func(i, j int) bool { return ss[si].Plans[i].ID < ss[si].Plans[j].ID })
			sort.Slice(ss[si].Applications, func(i, j int) bool { return ss[si].Applications[i].ID < ss[si].Applications[j].ID })
		}
	}
	return d
}

func keysOf(recs []Record) []string {
	var out []string
	for _, r := range recs {
		k := r.Key
		if r.Tombstone() {
			k = "-" + k
		}
		out = append(out, k)
	}
	return out
}

func TestRecordsRoundTrip(t *testing.T) {
	doc := fullDoc(t)
	recs := Records(doc)
	want := []string{
		"tenant/acme", "tenant/globex",
		"service/acme/2555417777820", "service/acme/acme-oauth", "service/globex/globex-1",
		"plan/acme/2555417777820/basic", "plan/acme/2555417777820/free", "plan/acme/acme-oauth/p", "plan/globex/globex-1/gold",
		"app/acme/2555417777820/app1", "app/acme/2555417777820/app2", "app/acme/acme-oauth/oapp", "app/globex/globex-1/g1",
	}
	if got := keysOf(recs); !reflect.DeepEqual(got, want) {
		t.Errorf("keys:\n got %q\nwant %q", got, want)
	}
	st := State{}
	// Any order of application gives the same document (compaction reorders).
	slices.Reverse(recs)
	for _, r := range recs {
		st.Apply(r)
	}
	back, skipped := st.Document()
	if len(skipped) != 0 {
		t.Errorf("skipped %q", skipped)
	}
	if !reflect.DeepEqual(back, sorted(doc)) {
		t.Errorf("state document differs:\n%+v\n%+v", back, sorted(doc))
	}
	// A tenant record carries no services; a service record its metrics but
	// no plans or applications.
	for _, r := range recs {
		if strings.HasPrefix(r.Key, "tenant/") && strings.Contains(string(r.Value), "services") {
			t.Errorf("%s carries services: %s", r.Key, r.Value)
		}
		if strings.HasPrefix(r.Key, "service/") && (strings.Contains(string(r.Value), "plans") || !strings.Contains(string(r.Value), "metrics")) {
			t.Errorf("%s: %s", r.Key, r.Value)
		}
	}
}

func TestKeysEscapeSegments(t *testing.T) {
	k := AppKey("t", "svc/with%odd id", "app/1")
	if strings.Count(k, "/") != 3 {
		t.Fatalf("unescaped key %q", k)
	}
	kind, ids, err := ParseKey(k)
	if err != nil || kind != KindApp || !reflect.DeepEqual(ids, []string{"t", "svc/with%odd id", "app/1"}) {
		t.Errorf("ParseKey(%q) = %q %q %v", k, kind, ids, err)
	}
	for _, bad := range []string{"", "tenant", "tenant/a/b", "widget/a", "app/a/b", "service/a/%zz", "service/a/"} {
		if _, _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestStateSkipsOrphansAndGarbage(t *testing.T) {
	st := StateOf(fullDoc(t))
	delete(st, ServiceKey("globex", "globex-1"))
	st["widget/x"] = []byte(`{}`)
	st[PlanKey("acme", "2555417777820", "bad")] = []byte(`not json`)
	doc, skipped := st.Document()
	sort.Strings(skipped)
	want := []string{"app/globex/globex-1/g1", PlanKey("acme", "2555417777820", "bad"), "plan/globex/globex-1/gold", "widget/x"}
	if !reflect.DeepEqual(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
	if g := doc.Tenant("globex"); g == nil || len(g.Services) != 0 {
		t.Errorf("globex = %+v", g)
	}
}

func TestDiff(t *testing.T) {
	doc := fullDoc(t)
	st := StateOf(doc)
	if recs := Diff(st, doc); len(recs) != 0 {
		t.Errorf("no change gives %q", keysOf(recs))
	}
	changed := doc.Clone()
	changed.Tenants[0].Services[0].Applications[0].State = "suspended"
	if got := keysOf(Diff(st, changed)); !reflect.DeepEqual(got, []string{"app/acme/2555417777820/app1"}) {
		t.Errorf("one app changed: %q", got)
	}
	// Deleting a service deletes its plans and applications, children first.
	del := doc.Clone()
	del.Tenants[0].Services = del.Tenants[0].Services[1:]
	want := []string{"-app/acme/2555417777820/app1", "-app/acme/2555417777820/app2", "-plan/acme/2555417777820/basic", "-plan/acme/2555417777820/free", "-service/acme/2555417777820"}
	if got := keysOf(Diff(st, del)); !reflect.DeepEqual(got, want) {
		t.Errorf("service deleted:\n got %q\nwant %q", got, want)
	}
	// Orphans left in a state are cleaned up by the next diff.
	st["app/zzz/s/a"] = []byte(`{"id":"a"}`)
	if got := keysOf(Diff(st, doc)); !reflect.DeepEqual(got, []string{"-app/zzz/s/a"}) {
		t.Errorf("orphan: %q", got)
	}
}

func TestReconcileTouchesOnlyDeclaredTenants(t *testing.T) {
	current := fullDoc(t)
	file := &catalog.Document{Tenants: []catalog.TenantSpec{current.Tenants[0].Clone()}}
	file.Tenants[0].Services = file.Tenants[0].Services[:1] // acme-oauth removed
	file.Tenants[0].QueryTokens = nil
	extra, _ := catalog.DemoDocument(catalog.DemoCredentials{})
	file.Tenants = append(file.Tenants, extra.Tenants...)

	recs := Reconcile(current, file)
	st := StateOf(current)
	for _, r := range recs {
		if strings.Contains(r.Key, "globex") {
			t.Errorf("touched an undeclared tenant: %s", r.Key)
		}
		st.Apply(r)
	}
	got, _ := st.Document()
	merged := Merge(current, file)
	if !reflect.DeepEqual(got, sorted(merged)) {
		t.Errorf("state after reconcile differs from the merge")
	}
	if len(merged.Tenants) != 3 || merged.Tenant("globex") == nil || len(merged.Tenant("acme").Services) != 1 {
		t.Errorf("merge = %+v", merged)
	}
	if len(current.Tenant("acme").Services) != 2 {
		t.Error("Merge modified its input")
	}
	if again := Reconcile(merged, file); len(again) != 0 {
		t.Errorf("reconciling twice appends %q", keysOf(again))
	}
}
