package catalog

import (
	"reflect"
	"strings"
	"testing"
)

// TestValidateGateway: a gateway block is checked field by field, patterns
// as APIcast reads them, metrics against the service's.
func TestValidateGateway(t *testing.T) {
	const p = "tenants[0].services[0].gateway"
	good := func() *GatewaySpec {
		return &GatewaySpec{
			APIBackend:          "https://backend.internal:443",
			Hosts:               []string{"api.example.com", "127.0.0.1"},
			CredentialsLocation: CredentialsAuthorization,
			MappingRules: []MappingRuleSpec{
				{HTTPMethod: "GET", Pattern: "/search", Metric: "search", Delta: 2},
				{HTTPMethod: "POST", Pattern: "/v1/{id}/items.json$", Metric: "hits"},
				{HTTPMethod: "GET", Pattern: "/q?x={x}&y=1", Metric: "hits", Last: true},
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(g *GatewaySpec)
		want   []string
	}{
		{"valid", func(g *GatewaySpec) {}, nil},
		{"empty block", func(g *GatewaySpec) { *g = GatewaySpec{} }, nil},
		{"api_backend relative", func(g *GatewaySpec) { g.APIBackend = "backend.internal" },
			[]string{p + ".api_backend: want an absolute http or https URL without credentials, at most 2048 bytes"}},
		{"api_backend with credentials", func(g *GatewaySpec) { g.APIBackend = "https://u:p@backend" },
			[]string{p + ".api_backend: want an absolute http or https URL without credentials, at most 2048 bytes"}},
		{"api_backend ftp", func(g *GatewaySpec) { g.APIBackend = "ftp://backend" },
			[]string{p + ".api_backend: want an absolute http or https URL without credentials, at most 2048 bytes"}},
		{"host with path", func(g *GatewaySpec) { g.Hosts[1] = "a.example.com/x" },
			[]string{p + `.hosts[1]: invalid host "a.example.com/x": want a host name`}},
		{"too many hosts", func(g *GatewaySpec) { g.Hosts = make([]string, MaxGatewayHosts+1); fillHosts(g.Hosts) },
			[]string{p + ".hosts: more than 64 hosts"}},
		{"credentials location", func(g *GatewaySpec) { g.CredentialsLocation = "body" },
			[]string{p + `.credentials_location: unknown credentials_location "body": want query, headers or authorization`}},
		{"auth parameter name", func(g *GatewaySpec) { g.AuthUserKey = "user key" },
			[]string{p + `.auth_user_key: invalid parameter name "user key": want 1 to 64 of A-Z a-z 0-9 - _`}},
		{"method lower case", func(g *GatewaySpec) { g.MappingRules[0].HTTPMethod = "get" },
			[]string{p + `.mapping_rules[0].http_method: unknown method "get": want GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH or CONNECT`}},
		{"unknown metric", func(g *GatewaySpec) { g.MappingRules[1].Metric = "nope" },
			[]string{p + `.mapping_rules[1].metric: unknown metric "nope"`}},
		{"negative delta", func(g *GatewaySpec) { g.MappingRules[0].Delta = -1 },
			[]string{p + `.mapping_rules[0].delta: want 1 to 1000000 (0 means 1)`}},
		{"huge delta", func(g *GatewaySpec) { g.MappingRules[0].Delta = MaxRuleDelta + 1 },
			[]string{p + `.mapping_rules[0].delta: want 1 to 1000000 (0 means 1)`}},
		{"too many rules", func(g *GatewaySpec) {
			g.MappingRules = make([]MappingRuleSpec, MaxMappingRules+1)
			for i := range g.MappingRules {
				g.MappingRules[i] = MappingRuleSpec{HTTPMethod: "GET", Pattern: "/", Metric: "hits"}
			}
		}, []string{p + ".mapping_rules: more than 2048 mapping rules"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := loadFull(t)
			g := good()
			tt.mutate(g)
			d.Tenants[0].Services[0].Gateway = g
			if got := problemsOf(d.Validate()); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func fillHosts(h []string) {
	for i := range h {
		h[i] = "h.example.com"
	}
}

// TestValidPattern: APIcast's pattern syntax, and what would change the
// regular expression it builds.
func TestValidPattern(t *testing.T) {
	for _, c := range []struct {
		pattern string
		err     string // "" for valid
	}{
		{"/", ""},
		{"/search", ""},
		{"/v1/{id}", ""},
		{"/v1/{user-id}/items/{item_id}.json", ""},
		{"/exact$", ""},
		{"/a%20b", ""},
		{"/q?x={x}&y=1", ""},
		{"/q?flag=", ""},
		{"/@:~!,;='&", ""},
		{"", "must start with /"},
		{"search", "must start with /"},
		{"/{id", "unclosed { at byte 1"},
		{"/id}", "unopened } at byte 3"},
		{"/{}", "empty placeholder {} at byte 1"},
		{"/{a b}", "placeholder {a b}: want letters, digits, _ and -"},
		{"/a$b", "$ only at the end of the path"},
		{"/a(b)", `character '(' not allowed`},
		{"/a*", `character '*' not allowed`},
		{"/a+", `character '+' not allowed`},
		{"/a|b", `character '|' not allowed`},
		{"/a b", `character ' ' not allowed`},
		{"/a\\d", `character '\\' not allowed`},
		{"/%zz", "bad percent escape at byte 1"},
		{"/%2", "bad percent escape at byte 1"},
		{"/q?", "empty query after ?"},
		{"/q?=1", "query parameter without a name"},
		{"/q?a=b=c", `query parameter "a": '=' inside a query name or value`},
		{"/q?a=$", `query parameter "a": $ only at the end of the path`},
		{"/" + strings.Repeat("a", MaxPatternLen), "longer than 1024 bytes"},
	} {
		t.Run(c.pattern, func(t *testing.T) {
			err := ValidPattern(c.pattern)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.err {
				t.Errorf("ValidPattern(%q) = %q, want %q", c.pattern, got, c.err)
			}
		})
	}
}

func TestPatternParameters(t *testing.T) {
	params, query := PatternParameters("/v1/{user}/items/{id}.json?fields={f}&v=2")
	if !reflect.DeepEqual(params, []string{"user", "id"}) || !reflect.DeepEqual(query, map[string]string{"fields": "{f}", "v": "2"}) {
		t.Errorf("params %q, query %q", params, query)
	}
	params, query = PatternParameters("/")
	if len(params) != 0 || params == nil || query != nil {
		t.Errorf("params %q, query %q for /", params, query)
	}
}

// TestGatewayEffective: a service without a block gets 3scale's defaults;
// a block keeps what it says and fills the rest.
func TestGatewayEffective(t *testing.T) {
	svc := &ServiceSpec{Metrics: []MetricSpec{{Name: "hits"}}}
	var none *GatewaySpec
	want := GatewaySpec{CredentialsLocation: "query", AuthUserKey: "user_key", AuthAppID: "app_id", AuthAppKey: "app_key",
		MappingRules: []MappingRuleSpec{{HTTPMethod: "GET", Pattern: "/", Metric: "hits", Delta: 1}}}
	if got := none.Effective(svc); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults %+v", got)
	}
	if got := none.Effective(&ServiceSpec{Metrics: []MetricSpec{{Name: "calls"}}}); len(got.MappingRules) != 0 {
		t.Errorf("default rule without a hits metric: %+v", got.MappingRules)
	}
	g := &GatewaySpec{CredentialsLocation: "headers", MappingRules: []MappingRuleSpec{{HTTPMethod: "GET", Pattern: "/s", Metric: "hits"}}}
	got := g.Effective(svc)
	if got.CredentialsLocation != "headers" || len(got.MappingRules) != 1 || got.MappingRules[0].Delta != 1 {
		t.Errorf("effective %+v", got)
	}
	if g.MappingRules[0].Delta != 0 {
		t.Error("Effective changed its receiver")
	}
}

// TestGatewayFileRoundTrip: the block reads from YAML as the docs show it
// and writes back the same.
func TestGatewayFileRoundTrip(t *testing.T) {
	const src = `tenants:
  - id: acme
    admin_token: adm
    services:
      - id: "1"
        tokens: [st]
        metrics:
          - name: hits
          - name: search
            parent: hits
        gateway:
          api_backend: "https://backend.internal:443"
          hosts: ["api.example.com"]
          credentials_location: query
          mapping_rules:
            - {http_method: GET, pattern: "/search", metric: search, delta: 2}
            - {http_method: GET, pattern: "/", metric: hits, delta: 1, last: false}
`
	doc, err := Parse([]byte(src), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	g := doc.Tenants[0].Services[0].Gateway
	if g == nil || len(g.MappingRules) != 2 || g.MappingRules[0].Delta != 2 || g.Hosts[0] != "api.example.com" {
		t.Fatalf("gateway %+v", g)
	}
	out, err := doc.EncodeYAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, doc) {
		t.Errorf("round trip changed the document:\n%s", out)
	}
	if !strings.Contains(string(out), "- {http_method: GET, pattern: /search, metric: search, delta: 2}") {
		t.Errorf("rules not written one per line:\n%s", out)
	}
	if _, err := Parse([]byte(strings.Replace(src, "credentials_location", "credential_location", 1)), FormatYAML); err == nil ||
		!strings.Contains(err.Error(), "tenants[0].services[0].gateway.credential_location: unknown field") {
		t.Errorf("unknown field in the block: %v", err)
	}
}

// FuzzValidPattern: any input is accepted or refused without a panic, and
// an accepted pattern's placeholders are all well formed.
func FuzzValidPattern(f *testing.F) {
	for _, s := range []string{"/", "/v1/{id}", "/q?x={x}&y=1", "/a$", "/{", "/%2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidPattern(s) != nil {
			return
		}
		params, _ := PatternParameters(s)
		for _, p := range params {
			if p == "" || strings.ContainsAny(p, "{}/ ") {
				t.Errorf("pattern %q: placeholder %q", s, p)
			}
		}
	})
}
