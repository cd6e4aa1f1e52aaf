package catalog

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestParseShapeProblems(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		want   []string
	}{
		{"unknown top-level field", FormatYAML, "tenant: []\n",
			[]string{"tenant: unknown field"}},
		{"unknown nested fields", FormatYAML, `
tenants:
  - id: a
    admin_token: t
    colour: red
    services:
      - id: s
        metrics: [{name: hits, unit: x}]
        plans: [{id: p, limits: [{metric: hits, period: day, max: 1, burst: 2}]}]
        applications: [{id: a, plan: p, user_key: u, secret: s}]
`, []string{
			"tenants[0].colour: unknown field",
			"tenants[0].services[0].metrics[0].unit: unknown field",
			"tenants[0].services[0].plans[0].limits[0].burst: unknown field",
			"tenants[0].services[0].applications[0].secret: unknown field",
		}},
		{"wrong types", FormatYAML, `
tenants:
  - id: [x]
    admin_token: true
    query_tokens: q
    services:
      - id: s
        default: "yes"
        referrer_filters_required: 1
        plans: [{id: p, limits: [{metric: hits, period: day, max: lots}, {metric: hits, period: day, max: 1.5}]}]
        applications: {}
`, []string{
			"tenants[0].id: expected a string, got a list",
			"tenants[0].admin_token: expected a string, got a boolean",
			"tenants[0].query_tokens: expected a list, got a string",
			"tenants[0].services[0].default: expected true or false, got a string",
			"tenants[0].services[0].referrer_filters_required: expected true or false, got an integer",
			"tenants[0].services[0].plans[0].limits[0].max: expected an integer, got a string",
			"tenants[0].services[0].plans[0].limits[1].max: expected an integer, got a number",
			"tenants[0].services[0].applications: expected a list, got a mapping",
		}},
		{"integer out of range", FormatJSON, `{"tenants":[{"services":[{"plans":[{"limits":[{"max": 99999999999999999999}]}]}]}]}`,
			[]string{"tenants[0].services[0].plans[0].limits[0].max: integer 99999999999999999999 out of range"}},
		{"alert thresholds not integers", FormatYAML, "tenants: [{services: [{alert_thresholds: [50, lots, 1.5]}, {alert_thresholds: 80}]}]\n",
			[]string{
				"tenants[0].services[0].alert_thresholds[1]: expected an integer, got a string",
				"tenants[0].services[0].alert_thresholds[2]: expected an integer, got a number",
				"tenants[0].services[1].alert_thresholds: expected a list, got an integer",
			}},
		{"json unknown field", FormatJSON, `{"tenants":[{"id":"a","nope":1}]}`,
			[]string{"tenants[0].nope: unknown field"}},
		{"top level not a mapping", FormatYAML, "- a\n", []string{"expected a mapping, got a list"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), tc.format)
			got := problemsOf(err)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		want   string
	}{
		{"yaml syntax", FormatYAML, "tenants: [\n", "yaml: line"},
		{"yaml repeated key", FormatYAML, "tenants: []\ntenants: []\n", `key "tenants" is repeated`},
		{"json syntax", FormatJSON, `{"tenants": [}`, "json: "},
		{"json repeated key", FormatJSON, `{"tenants": [], "tenants": []}`, `key "tenants" is repeated`},
		{"json trailing data", FormatJSON, `{"tenants": []} {}`, "data after the document"},
		{"json empty", FormatJSON, ``, "empty document"},
		{"too deep", FormatJSON, strings.Repeat("[", 100) + strings.Repeat("]", 100), "too deeply nested"},
		{"alias bomb", FormatYAML, "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n", "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), tc.format)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseEmptyDocument(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "tenants:\n", "{}"} {
		doc, err := Parse([]byte(in), FormatAuto)
		if err != nil || len(doc.Tenants) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want an empty document", in, doc, err)
		}
	}
}

func TestUnquotedNumericIDIsText(t *testing.T) {
	doc, err := Parse([]byte("tenants: [{id: a, admin_token: t, services: [{id: 2555417777820}]}]"), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Tenants[0].Services[0].ID; got != "2555417777820" {
		t.Errorf("service id = %q", got)
	}
}

func TestFormatOfAndSniff(t *testing.T) {
	for path, want := range map[string]Format{"a.json": FormatJSON, "a.YAML": FormatYAML, "a.yml": FormatYAML, "a.conf": FormatAuto} {
		if got := FormatOf(path); got != want {
			t.Errorf("FormatOf(%q) = %v, want %v", path, got, want)
		}
	}
	if sniff([]byte("  \n{\"tenants\":[]}")) != FormatJSON || sniff([]byte("tenants: []")) != FormatYAML {
		t.Error("sniff")
	}
}

// TestYAMLAndJSONSameDocument: the JSON export of a document loads as the
// same document as its YAML source, by extension and by sniffing.
func TestYAMLAndJSONSameDocument(t *testing.T) {
	doc := loadFull(t)
	var js bytes.Buffer
	if err := doc.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, js.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sniffed, err := Parse(js.Bytes(), FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(doc, fromFile) || !reflect.DeepEqual(doc, sniffed) {
		t.Errorf("JSON round trip differs:\n%+v\n%+v\n%+v", doc, fromFile, sniffed)
	}
}

// TestRoundTripYAML: load → export → load gives an equal document.
func TestRoundTripYAML(t *testing.T) {
	demo, _ := DemoDocument(DemoCredentials{})
	for name, doc := range map[string]*Document{"full": loadFull(t), "demo": demo} {
		out, err := doc.EncodeYAML()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out, FormatYAML)
		if err != nil {
			t.Fatalf("%s: reparse: %v\n%s", name, err, out)
		}
		if err := back.Validate(); err != nil {
			t.Errorf("%s: exported document invalid: %v", name, err)
		}
		if !reflect.DeepEqual(doc, back) {
			t.Errorf("%s: round trip differs:\n%s", name, out)
		}
	}
}

// TestExportGolden pins the YAML export format (go test -update rewrites).
func TestExportGolden(t *testing.T) {
	doc, _ := DemoDocument(DemoCredentials{AdminToken: "adm-demo", QueryToken: "q-demo", ServiceToken: "st-demo", ProviderKey: "pk-demo", UserKey: "uk-demo"})
	full := loadFull(t)
	doc.Tenants = append(doc.Tenants, full.Tenants...)
	got, err := doc.EncodeYAML()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "export.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("export differs from %s (go test -update to accept):\n%s", golden, got)
	}
}

func TestLoadReportsShapeAndSemanticProblemsTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(`
tenants:
  - id: acme
    admin_token: a
    extra: 1
    services:
      - id: s
        metrics: [{name: hits}]
        plans: [{id: p, limits: [{metric: hits, period: fortnight, max: 1}]}]
`), 0o600)
	_, err := Load(path)
	want := []string{
		"tenants[0].extra: unknown field",
		`tenants[0].services[0].plans[0].limits[0].period: unknown period "fortnight"`,
	}
	if got := problemsOf(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestDecodeEntities(t *testing.T) {
	var a AppSpec
	if err := Decode([]byte(`{"id":"x","plan":"p","keys":["k"],"bogus":1}`), FormatJSON, &a); err == nil {
		t.Error("unknown field accepted")
	} else if got := problemsOf(err); len(got) != 1 || got[0] != "bogus: unknown field" {
		t.Errorf("problems = %q", got)
	}
	var list []string
	// JSON types are the writer's: a number is not a string.
	if err := Decode([]byte(`["a", 1]`), FormatJSON, &list); err == nil {
		t.Errorf("JSON number accepted as a string: %q", list)
	} else if got := problemsOf(err); len(got) != 1 || got[0] != "[1]: expected a string, got an integer" {
		t.Errorf("problems = %q", got)
	}
	// In YAML an unquoted number is text where text is expected.
	if err := Decode([]byte(`[a, 1]`), FormatYAML, &list); err != nil || !reflect.DeepEqual(list, []string{"a", "1"}) {
		t.Errorf("YAML list = %q, %v", list, err)
	}
	if err := Decode([]byte(`[true]`), FormatJSON, &list); err == nil {
		t.Error("boolean accepted as string")
	}
}

// TestJSONNumbersAreNotStrings: in a JSON document every string field
// refuses a number, with the field's path; the same document in YAML reads
// unquoted numbers as text.
func TestJSONNumbersAreNotStrings(t *testing.T) {
	const doc = `{"tenants":[{"id":"t","admin_token":12,"query_tokens":[3],"services":[{"id":2555417777820,
		"tokens":[4.5],"provider_key":6,"auth_mode":7,"state":8,"metrics":[{"name":9,"parent":10}],
		"plans":[{"id":11,"name":12,"limits":[{"metric":13,"period":14,"max":1}]}],
		"applications":[{"id":15,"plan":16,"user_key":17,"keys":[18],"referrer_filters":[19],"redirect_url":20,"state":21}]}]}]}`
	_, err := Parse([]byte(doc), FormatJSON)
	want := []string{
		"tenants[0].admin_token: expected a string, got an integer",
		"tenants[0].query_tokens[0]: expected a string, got an integer",
		"tenants[0].services[0].id: expected a string, got an integer",
		"tenants[0].services[0].tokens[0]: expected a string, got a number",
		"tenants[0].services[0].provider_key: expected a string, got an integer",
		"tenants[0].services[0].auth_mode: expected a string, got an integer",
		"tenants[0].services[0].state: expected a string, got an integer",
		"tenants[0].services[0].metrics[0].name: expected a string, got an integer",
		"tenants[0].services[0].metrics[0].parent: expected a string, got an integer",
		"tenants[0].services[0].plans[0].id: expected a string, got an integer",
		"tenants[0].services[0].plans[0].name: expected a string, got an integer",
		"tenants[0].services[0].plans[0].limits[0].metric: expected a string, got an integer",
		"tenants[0].services[0].plans[0].limits[0].period: expected a string, got an integer",
		"tenants[0].services[0].applications[0].id: expected a string, got an integer",
		"tenants[0].services[0].applications[0].plan: expected a string, got an integer",
		"tenants[0].services[0].applications[0].user_key: expected a string, got an integer",
		"tenants[0].services[0].applications[0].keys[0]: expected a string, got an integer",
		"tenants[0].services[0].applications[0].referrer_filters[0]: expected a string, got an integer",
		"tenants[0].services[0].applications[0].redirect_url: expected a string, got an integer",
		"tenants[0].services[0].applications[0].state: expected a string, got an integer",
	}
	if got := problemsOf(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	y, err := Parse([]byte("tenants: [{id: t, admin_token: 12, services: [{id: 2555417777820, provider_key: 6}]}]"), FormatYAML)
	if err != nil {
		t.Fatalf("YAML with unquoted numbers: %v", err)
	}
	if s := y.Tenants[0].Services[0]; y.Tenants[0].AdminToken != "12" || s.ID != "2555417777820" || s.ProviderKey != "6" {
		t.Errorf("YAML numbers as text: %+v", y.Tenants[0])
	}
}

func TestCloneIsDeep(t *testing.T) {
	doc := loadFull(t)
	c := doc.Clone()
	c.Tenants[0].Services[0].Plans[0].Limits[0].Max = 7
	c.Tenants[0].Services[0].Applications[0].ReferrerFilters = append(c.Tenants[0].Services[0].Applications[0].ReferrerFilters, "x")
	c.Tenants[1].Services[0].Applications[0].Keys[0] = "changed"
	c.Tenants[0].QueryTokens[0] = "changed"
	if !reflect.DeepEqual(doc, loadFull(t)) {
		t.Error("changing a clone changed the original")
	}
}

func TestDemoDocument(t *testing.T) {
	a, ca := DemoDocument(DemoCredentials{})
	b, cb := DemoDocument(DemoCredentials{UserKey: "given"})
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if ca.AdminToken == cb.AdminToken || ca.UserKey == "" || cb.UserKey != "given" {
		t.Errorf("credentials not random or not kept: %+v %+v", ca, cb)
	}
	if b.Tenants[0].Services[0].Applications[0].UserKey != "given" || a.Tenants[0].AdminToken != ca.AdminToken {
		t.Error("returned credentials differ from the document's")
	}
	snap, err := Build(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := snap.Services[DemoServiceID]
	if s == nil || s.AppByUserKey([]byte(ca.UserKey)) == nil || snap.ProviderKeys[ca.ProviderKey].Default != s || len(s.Plan(DemoPlanID).Limits) != 3 {
		t.Errorf("demo snapshot incomplete: %+v", s)
	}
}

func TestDemoCredentialsOf(t *testing.T) {
	if _, ok := DemoCredentialsOf(loadFull(t)); ok {
		t.Error("found a demo tenant in a document without one")
	}
	doc, creds := DemoDocument(DemoCredentials{})
	got, ok := DemoCredentialsOf(doc)
	if !ok || got != creds {
		t.Errorf("DemoCredentialsOf = %+v, want %+v", got, creds)
	}
	again, _ := DemoDocument(got)
	if !reflect.DeepEqual(again, doc) {
		t.Error("demo document from the same credentials differs")
	}
}
