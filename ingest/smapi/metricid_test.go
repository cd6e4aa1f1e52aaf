package smapi

import (
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// TestResponsesNameMetricsByIdentity: once metrics are reordered and added
// in front, a metric's limiter id is no longer its position. Usage reports,
// the hierarchy extension (in declared order) and events still name the
// right metrics, and the counters are still the metrics' own.
func TestResponsesNameMetricsByIdentity(t *testing.T) {
	e := newEnv(t)
	keys := catalog.NewKeyRegistry()
	doc := testDocument()
	snap, err := catalog.Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	e.store.Swap(snap)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[search]=1", ""), 200)

	// hits, search, upload had ids 0, 1, 2; now they sit at 3, 2, 1.
	doc.Tenants[0].Services[0].Metrics = []catalog.MetricSpec{{Name: "extra"}, {Name: "upload", Parent: "hits"}, {Name: "search", Parent: "hits"}, {Name: "hits"}}
	if snap, err = catalog.Build(doc, keys); err != nil {
		t.Fatal(err)
	}
	e.store.Swap(snap)
	resp := e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[search]=1", "hierarchy=1")
	mustStatus(t, resp, 200)
	body := string(resp.Body())
	for _, want := range []string{
		`<usage_report metric="hits" period="day"><period_start>2026-05-15 00:00:00 +0000</period_start><period_end>2026-05-16 00:00:00 +0000</period_end><max_value>100</max_value><current_value>2</current_value></usage_report>`,
		`<usage_report metric="hits" period="eternity"><max_value>1000</max_value><current_value>2</current_value></usage_report>`,
		`<usage_report metric="search" period="sliding:1m">`,
		`<max_value>5</max_value><current_value>2</current_value></usage_report></usage_reports>`,
		`<hierarchy><metric name="hits" children="upload search"/></hierarchy>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("response lacks %s\n%s", want, body)
		}
	}
	evs := e.sink.Events()
	if len(evs) != 2 || len(evs[1].Usage) != 1 || evs[1].Usage[0].Metric != "search" || evs[1].Usage[0].Value != 1 {
		t.Errorf("events: %+v", evs)
	}
}
