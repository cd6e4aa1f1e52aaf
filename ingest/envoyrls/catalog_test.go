package envoyrls

import (
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

func TestAddToCatalog(t *testing.T) {
	c, err := Parse([]File{
		{Name: "a.yaml", Data: []byte("domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1}\n  - {key: path, value: \"/x/*\", rate_limit: {unit: hour, requests_per_unit: 2}}\n")},
		{Name: "b.yaml", Data: []byte("domain: taken\n")},
		{Name: "c.yaml", Data: []byte("domain: has space\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	doc := &catalog.Document{Tenants: []catalog.TenantSpec{
		{ID: "envoy", AdminToken: "adm-envoy-0123456789", Services: []catalog.ServiceSpec{
			{ID: "api", Metrics: []catalog.MetricSpec{{Name: "old"}, {Name: "user"}}},
		}},
		{ID: "other", AdminToken: "adm-other-0123456789", Services: []catalog.ServiceSpec{{ID: "taken"}}},
	}}
	changed, skipped := AddToCatalog(doc, "envoy", c)
	if !changed {
		t.Fatal("not changed")
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], `"has space"`) || !strings.Contains(skipped[1], `tenant "other"`) {
		t.Fatalf("skipped %q", skipped)
	}
	var names []string
	for _, m := range doc.Tenants[0].Services[0].Metrics {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); got != "old,user,path_:2Fx:2F:2A" {
		t.Fatalf("metrics %s", got)
	}
	if err := doc.Validate(); err != nil {
		t.Fatalf("the document is not valid: %v", err)
	}
	if changed, _ := AddToCatalog(doc, "envoy", c); changed {
		t.Fatal("a second sync changed the document")
	}
	if changed, skipped := AddToCatalog(doc, "nobody", c); changed || len(skipped) != 1 {
		t.Fatalf("unknown tenant: changed %v skipped %q", changed, skipped)
	}
}
