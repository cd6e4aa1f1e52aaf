package envoyrls

import (
	"os"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty domain", "descriptors: []\n", "empty domain"},
		{"unknown key", "domain: d\ndescriptors:\n  - key: a\n    shadow_mod: true\n", "field shadow_mod not found"},
		{"empty key", "domain: d\ndescriptors:\n  - value: a\n", "empty key"},
		{"duplicate", "domain: d\ndescriptors:\n  - key: a\n  - key: a\n", `duplicate descriptor composite key "a"`},
		{"duplicate nested", "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - {key: b, value: c}\n      - {key: b, value: c}\n", `duplicate descriptor composite key "a.b_c"`},
		{"bad unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n", `invalid rate limit unit "fortnight"`},
		{"no unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {requests_per_unit: 1}\n", `invalid rate limit unit ""`},
		{"bad sliding", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: \"sliding:0s\", requests_per_unit: 1}\n", "sliding window must be between"},
		{"unit with unlimited", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, unlimited: true}\n", "should not specify rate limit unit when unlimited"},
		{"share without wildcard", "domain: d\ndescriptors:\n  - {key: a, value: b, share_threshold: true}\n", "share_threshold can only be used with wildcard"},
		{"empty replaces", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: \"\"}]}\n", "empty replaces entry"},
		{"replaces itself", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, name: n, replaces: [{name: n}]}\n", "replaces should not contain name of same descriptor"},
		{"negative requests", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n", "cannot unmarshal"},
		{"requests past uint32", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 4294967296}\n", "cannot unmarshal"},
		{"not yaml", "domain: [\n", "did not find expected"},
		{"too deep", "domain: d\ndescriptors:\n" + deep(MaxDepth+1), "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]File{{Name: "f.yaml", Data: []byte(tc.yaml)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "f.yaml") {
				t.Fatalf("error %v, want one naming f.yaml and containing %q", err, tc.want)
			}
		})
	}
	// The same domain in two files is refused.
	_, err := Parse([]File{{Name: "a.yaml", Data: []byte("domain: d\n")}, {Name: "b.yaml", Data: []byte("domain: d\n")}})
	if err == nil || !strings.Contains(err.Error(), `b.yaml: duplicate domain "d"`) {
		t.Fatalf("error %v, want a duplicate domain in b.yaml", err)
	}
}

// deep returns n descriptors, each nested in the previous one.
func deep(n int) string {
	var b strings.Builder
	for i := range n {
		ind := strings.Repeat("    ", i)
		b.WriteString(ind + "  - key: k\n")
		if i < n-1 {
			b.WriteString(ind + "    descriptors:\n")
		}
	}
	return b.String()
}

func TestParseAccepts(t *testing.T) {
	c, err := Parse([]File{{Name: "ok.yaml", Data: []byte(`domain: d
descriptors:
  - key: a
    value: "x*y"
    metadata: {team: {name: core}, ids: [1, 2]}
    value_to_metric: true
    detailed_metric: true
    rate_limit: {unit: SECOND, requests_per_unit: 0, name: n1}
    descriptors:
      - key: b
        rate_limit: {unit: "sliding:1m30s", requests_per_unit: 7}
  - key: c
    rate_limit: {unlimited: true, name: n2, replaces: [{name: n1}]}
`)}, {Name: "empty.yaml", Data: []byte("domain: e\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Domains(), ","); got != "d,e" {
		t.Fatalf("domains %q", got)
	}
	if got := strings.Join(c.Metrics("d"), ","); got != "a_x:2Ay,a_x:2Ay.b,c" {
		t.Fatalf("metrics %q", got)
	}
	r := c.domains["d"].rules[1]
	if r.unit.wire != unitHour || r.rpu != 7 || r.unit.period.String() != "sliding:1m30s" {
		t.Fatalf("rule %v: wire unit %d", r, r.unit.wire)
	}
}

func TestWildMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"k_a*", "k_abc", true},
		{"k_a*", "k_a", true},
		{"k_a*", "k_b", false},
		{"k_*z", "k_xyz", true},
		{"k_a*b*c", "k_aXbYc", true},
		{"k_a*b*c", "k_abc", true},
		{"k_a*b*c", "k_acb", false},
		{"k_ab*ba", "k_aba", false}, // prefix and suffix may not overlap
		{"k_x", "k_x", true},
	}
	for _, tc := range tests {
		if got := wildMatch(strings.Split(tc.pattern, "*"), tc.s); got != tc.want {
			t.Errorf("wildMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n", "domain: [", "{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse([]File{{Name: "f.yaml", Data: b}})
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

func TestMetricName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"key1", "key1"},
		{"key1_value1.key2", "key1_value1.key2"},
		{"path_/api/*", "path_:2Fapi:2F:2A"},
		{"a:b", "a:3Ab"},
		{"a b\xff", "a:20b:FF"},
	}
	for _, tc := range tests {
		if got := MetricName(tc.path); got != tc.want {
			t.Errorf("MetricName(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	a, b := MetricName(strings.Repeat("/", 200)+"a"), MetricName(strings.Repeat("/", 200)+"b")
	if len(a) != MaxMetricBytes || len(b) != MaxMetricBytes || a == b {
		t.Fatalf("long names %q, %q: want %d bytes each and different", a, b, MaxMetricBytes)
	}
}

// TestDocExample: the configuration example of docs/envoy-ratelimit.md
// loads, with the metrics the document's examples name.
func TestDocExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/envoy-ratelimit.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "```yaml\n")
	j := strings.Index(doc[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatal("no yaml block in docs/envoy-ratelimit.md")
	}
	c, err := Parse([]File{{Name: "doc.yaml", Data: []byte(doc[i+8 : i+8+j])}})
	if err != nil {
		t.Fatalf("the document's example does not load: %v", err)
	}
	got := strings.Join(c.Metrics("api"), ",")
	if got != "remote_address,path_:2Fsearch:2A,plan_free.user_id,user_id_admin" {
		t.Fatalf("metrics %s", got)
	}
	for _, m := range []string{"plan_free.user_id", "path_:2Fsearch:2A"} {
		if !strings.Contains(doc, "`"+m+"`") {
			t.Errorf("the document does not name metric %s as the example gives it", m)
		}
	}
}
