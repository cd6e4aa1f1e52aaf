package sluice_test

// The provisioned dashboards, alert rules and data source (deploy/grafana)
// against the plugin: every panel, variable, annotation and rule names the
// provisioned data source, a query type the backend answers with the
// parameters it knows, and fields its frames have.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/plugin/pkg/sluice"
)

const deployDir = "../../../deploy/grafana"

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panelJSON struct {
	ID          int             `json:"id"`
	Title       string          `json:"title"`
	Type        string          `json:"type"`
	Datasource  *dsRef          `json:"datasource"`
	Targets     []targetJSON    `json:"targets"`
	Panels      []panelJSON     `json:"panels"` // rows
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Options     json.RawMessage `json:"options"`
	Transforms  []struct {
		ID      string          `json:"id"`
		Options json.RawMessage `json:"options"`
	} `json:"transformations"`
	Repeat string `json:"repeat"`
}

type targetJSON struct {
	RefID      string `json:"refId"`
	Datasource *dsRef `json:"datasource"`
	sluice.Query
}

type dashboardJSON struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []panelJSON `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Datasource *dsRef `json:"datasource"`
			Query      struct {
				Kind      string `json:"kind"`
				ServiceID string `json:"serviceId"`
			} `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string      `json:"name"`
			BuiltIn    int         `json:"builtIn"`
			Datasource *dsRef      `json:"datasource"`
			Target     *targetJSON `json:"target"`
		} `json:"list"`
	} `json:"annotations"`
}

// provisioned returns the data source the provisioning file declares.
func provisioned(t *testing.T) (uid, typ string) {
	b, err := os.ReadFile(filepath.Join(deployDir, "provisioning/datasources/sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Datasources []struct {
			UID            string            `yaml:"uid"`
			Type           string            `yaml:"type"`
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Datasources) != 1 {
		t.Fatalf("%d data sources provisioned", len(f.Datasources))
	}
	d := f.Datasources[0]
	if d.JSONData["url"] == nil || d.SecureJSONData["token"] == "" {
		t.Errorf("the data source sets no url or no secure token: %+v", d)
	}
	if _, err := sluice.ParseSettings(mustJSON(t, d.JSONData), "", d.SecureJSONData); err != nil {
		t.Errorf("the backend cannot read the provisioned settings: %v", err)
	}
	return d.UID, d.Type
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPluginJSON(t *testing.T) {
	b, err := os.ReadFile("../../src/plugin.json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ID, Type, Executable                    string
		Backend, Alerting, Annotations, Metrics bool
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.ID != sluice.PluginID || p.Type != "datasource" || p.Executable != "gpx_sluice" || !p.Backend || !p.Alerting || !p.Annotations || !p.Metrics {
		t.Errorf("plugin.json: %+v", p)
	}
	if !regexp.MustCompile(`^[0-9a-z]+-([0-9a-z]+-)?datasource$`).MatchString(p.ID) {
		t.Errorf("id %q is not a valid data source plugin id", p.ID)
	}
}

// fieldsOf lists the field (and label) names the frames of q have.
func fieldsOf(q sluice.Query) []string {
	out := slices.Clone(sluice.Fields[q.QueryType])
	switch q.QueryType {
	case sluice.QueryUsage:
		if q.GroupBy != "" {
			out = append(out, q.GroupBy)
		}
		if len(q.AppIDs) > 0 {
			out = append(out, "app_id")
		}
	case sluice.QueryDenials:
		out = append(out, "reason")
	}
	return out
}

// checkQuery checks one query's parameters against what the backend and
// the query API accept.
func checkQuery(t *testing.T, where string, q sluice.Query, dashboard bool) {
	t.Helper()
	if !slices.Contains(sluice.QueryTypes, q.QueryType) {
		t.Errorf("%s: query type %q is not one of %v", where, q.QueryType, sluice.QueryTypes)
		return
	}
	if q.ServiceID == "" || (dashboard && q.ServiceID != "$service") {
		t.Errorf("%s: service %q (dashboards use $service)", where, q.ServiceID)
	}
	if (q.QueryType == sluice.QueryTop) && q.Metric == "" {
		t.Errorf("%s: top needs a metric", where)
	}
	if q.QueryType == sluice.QueryUsage && q.Metric == "" && q.GroupBy != "metric" {
		t.Errorf("%s: usage needs a metric or group by metric", where)
	}
	if !slices.Contains([]string{"", "app_id", "metric", "region", "code"}, q.GroupBy) || (q.GroupBy != "" && q.QueryType != sluice.QueryUsage) {
		t.Errorf("%s: group by %q", where, q.GroupBy)
	}
	if !slices.Contains([]string{"", "auto", "minute", "hour", "day", "week", "month", "total"}, q.Granularity) {
		t.Errorf("%s: granularity %q", where, q.Granularity)
	}
	if !slices.Contains([]string{"", "minute", "hour", "day", "week", "month", "year", "eternity"}, q.Period) {
		t.Errorf("%s: period %q", where, q.Period)
	}
	if !slices.Contains([]string{"", sluice.FormatTable, sluice.FormatNumeric}, q.Format) {
		t.Errorf("%s: format %q", where, q.Format)
	}
	if q.Limit < 0 || q.Limit > 1000 || len(q.AppIDs) > sluice.MaxApps {
		t.Errorf("%s: limit %d, %d apps", where, q.Limit, len(q.AppIDs))
	}
}

// fieldRefs collects the field names a panel refers to: byName override
// matchers and the keys of organize transformations.
func fieldRefs(t *testing.T, p panelJSON) []string {
	var refs []string
	var fc struct {
		Overrides []struct {
			Matcher struct{ ID, Options string } `json:"matcher"`
		} `json:"overrides"`
	}
	if len(p.FieldConfig) > 0 {
		if err := json.Unmarshal(p.FieldConfig, &fc); err != nil {
			t.Fatalf("panel %q fieldConfig: %v", p.Title, err)
		}
	}
	for _, o := range fc.Overrides {
		if o.Matcher.ID == "byName" {
			refs = append(refs, o.Matcher.Options)
		}
	}
	for _, tr := range p.Transforms {
		if tr.ID != "organize" {
			continue
		}
		var o struct {
			Exclude map[string]bool   `json:"excludeByName"`
			Rename  map[string]string `json:"renameByName"`
		}
		json.Unmarshal(tr.Options, &o)
		for k := range o.Exclude {
			refs = append(refs, k)
		}
		for k := range o.Rename {
			refs = append(refs, k)
		}
	}
	return refs
}

func TestDashboards(t *testing.T) {
	uid, typ := provisioned(t)
	if typ != sluice.PluginID {
		t.Fatalf("provisioned type %q, plugin %q", typ, sluice.PluginID)
	}
	files, _ := filepath.Glob(filepath.Join(deployDir, "dashboards/*.json"))
	titles := map[string]bool{}
	panelsOf := map[string]map[int]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		titles[d.Title] = true
		panelsOf[d.UID] = map[int]bool{}
		ds := func(where string, r *dsRef) {
			if r == nil || r.UID != uid || r.Type != typ {
				t.Errorf("%s %s: data source %+v, want uid %q type %q", d.Title, where, r, uid, typ)
			}
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
			if v.Type != "query" {
				continue
			}
			ds("variable "+v.Name, v.Datasource)
			if !slices.Contains([]string{"services", "metrics", "applications"}, v.Query.Kind) || (v.Query.Kind != "services" && v.Query.ServiceID == "") {
				t.Errorf("%s variable %s: query %+v", d.Title, v.Name, v.Query)
			}
		}
		for _, a := range d.Annotations.List {
			if a.BuiltIn == 1 {
				continue
			}
			ds("annotation "+a.Name, a.Datasource)
			if a.Target == nil || a.Target.QueryType != sluice.QueryChanges {
				t.Errorf("%s annotation %s: not a changes query", d.Title, a.Name)
				continue
			}
			checkQuery(t, d.Title+" annotation "+a.Name, a.Target.Query, true)
		}
		var walk func(ps []panelJSON)
		n := 0
		walk = func(ps []panelJSON) {
			for _, p := range ps {
				if p.Type == "row" {
					walk(p.Panels)
					continue
				}
				n++
				panelsOf[d.UID][p.ID] = true
				where := "panel " + p.Title
				ds(where, p.Datasource)
				if len(p.Targets) == 0 {
					t.Errorf("%s %s: no query", d.Title, where)
				}
				if p.Repeat != "" && !vars[p.Repeat] {
					t.Errorf("%s %s: repeats over unknown variable %s", d.Title, where, p.Repeat)
				}
				var known []string
				for _, tg := range p.Targets {
					ds(where+" query "+tg.RefID, tg.Datasource)
					checkQuery(t, d.Title+" "+where, tg.Query, true)
					known = append(known, fieldsOf(tg.Query)...)
					for _, s := range append([]string{tg.ServiceID, tg.Metric}, tg.AppIDs...) {
						for _, m := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(s, -1) {
							if !vars[m[1]] {
								t.Errorf("%s %s: unknown variable $%s", d.Title, where, m[1])
							}
						}
					}
				}
				for _, r := range fieldRefs(t, p) {
					if !slices.Contains(known, r) && !(r == "Field" && hasReduce(p)) {
						t.Errorf("%s %s: field %q is not in the frames of its queries (%v)", d.Title, where, r, known)
					}
				}
			}
		}
		walk(d.Panels)
		if n == 0 {
			t.Errorf("%s: no panels", d.Title)
		}
	}
	for _, want := range []string{"Sluice: Service overview", "Sluice: Application usage vs. limits", "Sluice: Billing month"} {
		if !titles[want] {
			t.Errorf("no dashboard %q (have %v)", want, titles)
		}
	}
	checkAlerts(t, uid, panelsOf)
}

func hasReduce(p panelJSON) bool {
	for _, tr := range p.Transforms {
		if tr.ID == "reduce" {
			return true
		}
	}
	return false
}

// checkAlerts checks the provisioned alert rules: their Sluice queries, and
// the dashboard panels they point to.
func checkAlerts(t *testing.T, uid string, panelsOf map[string]map[int]bool) {
	b, err := os.ReadFile(filepath.Join(deployDir, "provisioning/alerting/sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				UID       string            `yaml:"uid"`
				Title     string            `yaml:"title"`
				Condition string            `yaml:"condition"`
				Anno      map[string]string `yaml:"annotations"`
				Data      []struct {
					RefID         string         `yaml:"refId"`
					DatasourceUID string         `yaml:"datasourceUid"`
					Model         map[string]any `yaml:"model"`
				} `yaml:"data"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	monthly90 := false
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			refs := map[string]bool{}
			for _, d := range r.Data {
				refs[d.RefID] = true
				switch d.DatasourceUID {
				case "__expr__":
					if d.Model["type"] == "threshold" {
						conds, _ := d.Model["conditions"].([]any)
						for _, c := range conds {
							ev, _ := c.(map[string]any)["evaluator"].(map[string]any)
							params, _ := ev["params"].([]any)
							if len(params) == 1 && params[0] == 0.9 {
								monthly90 = true
							}
						}
					}
				case uid:
					var q sluice.Query
					if err := json.Unmarshal(mustJSON(t, d.Model), &q); err != nil {
						t.Fatal(err)
					}
					checkQuery(t, "rule "+r.Title, q, false)
					if q.QueryType != sluice.QueryUtilization || q.Format != sluice.FormatNumeric || q.Period != "month" {
						t.Errorf("rule %s: want monthly utilization in numeric format (one value per limit), got %+v", r.Title, q)
					}
					if strings.Contains(q.ServiceID, "$") {
						t.Errorf("rule %s: alert rules take no template variables (%s)", r.Title, q.ServiceID)
					}
				default:
					t.Errorf("rule %s: data source %q", r.Title, d.DatasourceUID)
				}
			}
			if !refs[r.Condition] {
				t.Errorf("rule %s: condition %s is none of its queries", r.Title, r.Condition)
			}
			if dash := r.Anno["__dashboardUid__"]; dash != "" {
				var id int
				json.Unmarshal([]byte(r.Anno["__panelId__"]), &id)
				if !panelsOf[dash][id] {
					t.Errorf("rule %s: no panel %s in dashboard %s", r.Title, r.Anno["__panelId__"], dash)
				}
			}
		}
	}
	if !monthly90 {
		t.Error("no rule with a threshold at 0.9")
	}
}
