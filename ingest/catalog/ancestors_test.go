package catalog_test

import (
	"reflect"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// TestStoreAncestorsByIdentity: the rollup's ancestors come from the
// configuration in force, by metric identity, also once metrics were
// deleted and reordered so that their limiter ids are not their positions.
func TestStoreAncestorsByIdentity(t *testing.T) {
	doc := &catalog.Document{Tenants: []catalog.TenantSpec{{ID: "t1", AdminToken: "adm-t1",
		Services: []catalog.ServiceSpec{{ID: "s1", Tokens: []string{"st-1"}, AuthMode: catalog.ModeAppID,
			Metrics: []catalog.MetricSpec{{Name: "x"}, {Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "deep", Parent: "search"}},
		}},
	}}}
	keys := catalog.NewKeyRegistry()
	if _, err := catalog.Build(doc, keys); err != nil {
		t.Fatal(err)
	}
	doc.Tenants[0].Services[0].Metrics = []catalog.MetricSpec{{Name: "deep", Parent: "search"}, {Name: "all"}, {Name: "search", Parent: "hits"}, {Name: "hits", Parent: "all"}}
	snap, err := catalog.Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	h := catalog.NewStore(snap)
	cases := []struct {
		tenant, metric string
		want           []string
	}{
		{"t1", "deep", []string{"search", "hits", "all"}},
		{"t1", "hits", []string{"all"}},
		{"t1", "all", nil},
		{"t1", "x", nil},       // deleted
		{"other", "deep", nil}, // another tenant's service id
	}
	for _, tc := range cases {
		var got []string
		h.Ancestors(tc.tenant, "s1", tc.metric, func(p string) { got = append(got, p) })
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s/%s: ancestors %v, want %v", tc.tenant, tc.metric, got, tc.want)
		}
	}
}
