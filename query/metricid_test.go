package query

import (
	"reflect"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// TestDescendantsByIdentity: metric and descendants resolve a metric by
// name and walk its hierarchy in declared order, also once metrics were
// deleted and reordered so that their limiter ids are not their positions.
func TestDescendantsByIdentity(t *testing.T) {
	doc := &catalog.Document{Tenants: []catalog.TenantSpec{{ID: "t1", AdminToken: "adm-t1",
		Services: []catalog.ServiceSpec{{ID: "s1", Tokens: []string{"st-1"}, AuthMode: catalog.ModeAppID,
			Metrics: []catalog.MetricSpec{{Name: "x"}, {Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "deep", Parent: "search"}, {Name: "upload", Parent: "hits"}},
		}},
	}}}
	keys := catalog.NewKeyRegistry()
	if _, err := catalog.Build(doc, keys); err != nil {
		t.Fatal(err)
	}
	doc.Tenants[0].Services[0].Metrics = []catalog.MetricSpec{{Name: "upload", Parent: "hits"}, {Name: "deep", Parent: "search"}, {Name: "new"}, {Name: "search", Parent: "hits"}, {Name: "hits"}}
	snap, err := catalog.Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	svc := snap.Services["s1"]
	cases := []struct {
		metric string
		want   []string
	}{
		{"hits", []string{"hits", "upload", "search", "deep"}},
		{"search", []string{"search", "deep"}},
		{"deep", []string{"deep"}},
		{"new", []string{"new"}},
	}
	for _, tc := range cases {
		t.Run(tc.metric, func(t *testing.T) {
			m, apiErr := metric(svc, tc.metric)
			if apiErr != nil || m.Name != tc.metric {
				t.Fatalf("metric(%q) = %+v, %v", tc.metric, m, apiErr)
			}
			if got := descendants(svc, m); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("descendants(%q) = %v, want %v", tc.metric, got, tc.want)
			}
		})
	}
	if _, apiErr := metric(svc, "x"); apiErr == nil || apiErr.status != 404 {
		t.Errorf("deleted metric x: %v, want a 404", apiErr)
	}
}
