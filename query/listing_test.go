package query

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

func TestListings(t *testing.T) {
	doc := testDocument()
	svc := &doc.Tenants[0].Services[0]
	for i := 0; i < 150; i++ {
		svc.Applications = append(svc.Applications, catalog.AppSpec{ID: fmt.Sprintf("z%03d", 149-i), Plan: "gold"})
	}
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Catalog: catalog.NewStore(snap), Conn: downConn{}, Database: testDB, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, srv)

	code, body, _ := get(t, base, t1Query, "/api/v1/services")
	var sv struct {
		Services []struct {
			ID      string
			Metrics []struct{ Name, Parent string }
			Plans   []string
		}
		Truncated bool
	}
	if err := json.Unmarshal(body, &sv); err != nil || code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if got := fmt.Sprintln(sv.Services[0].ID, sv.Services[0].Metrics, sv.Services[0].Plans, len(sv.Services), sv.Services[1].ID); got !=
		"s1 [{hits } {search hits} {upload hits} {bytes }] [basic blocked gold] 2 s1b\n" {
		t.Errorf("services: %s", got)
	}
	code, body, _ = get(t, base, t2Query, "/api/v1/services")
	if code != 200 || string(body) != `{"services":[{"id":"s2","state":"active","metrics":[{"name":"hits"}],"plans":["basic"]}],"truncated":false}`+"\n" {
		t.Errorf("t2 services: %d %s", code, body)
	}

	type apps struct {
		Applications []struct{ ID, PlanID, State string }
		Truncated    bool
	}
	cases := []struct {
		name, q   string
		first     string
		n         int
		truncated bool
	}{
		{"default limit", "", "app0", 100, true},
		{"prefix", "&prefix=z14", "z140", 10, false},
		{"prefix and limit", "&prefix=z&limit=3", "z000", 3, true},
		{"everything", "&limit=1000", "app0", 158, false},
		{"no match", "&prefix=nope", "", 0, false},
	}
	for _, c := range cases {
		code, body, _ := get(t, base, t1Query, "/api/v1/applications?service_id=s1"+c.q)
		var a apps
		if err := json.Unmarshal(body, &a); err != nil || code != 200 {
			t.Fatalf("%s: %d %s", c.name, code, body)
		}
		if len(a.Applications) != c.n || a.Truncated != c.truncated || (c.n > 0 && a.Applications[0].ID != c.first) {
			t.Errorf("%s: %d apps, truncated %v, first %v", c.name, len(a.Applications), a.Truncated, a.Applications[:min(1, len(a.Applications))])
		}
		for i := 1; i < len(a.Applications); i++ {
			if a.Applications[i].ID <= a.Applications[i-1].ID {
				t.Fatalf("%s: not sorted at %d", c.name, i)
			}
		}
	}
	code, body, _ = get(t, base, t1Query, "/api/v1/applications?service_id=s1&prefix=app7")
	if code != 200 || string(body) != `{"service_id":"s1","applications":[{"id":"app7","plan_id":"basic","state":"suspended"}],"truncated":false}`+"\n" {
		t.Errorf("app7: %s", body)
	}
	for _, c := range []struct{ token, q, code string }{
		{t2Query, "service_id=s1", "forbidden_service"},
		{t1Query, "", "missing_service_id"},
		{t1Query, "service_id=s1&limit=5000", "invalid_limit"},
		{"nope", "service_id=s1", "invalid_token"},
	} {
		_, body, _ := get(t, base, c.token, "/api/v1/applications?"+c.q)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(body, &e)
		if e.Error.Code != c.code {
			t.Errorf("%s: %s, want %s", c.q, body, c.code)
		}
	}
}
