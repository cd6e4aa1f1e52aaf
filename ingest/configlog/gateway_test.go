package configlog

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

func gatewayDoc(backend string) *catalog.Document {
	return &catalog.Document{Tenants: []catalog.TenantSpec{{
		ID: "acme", AdminToken: "adm-acme",
		Services: []catalog.ServiceSpec{{
			ID: "1", Tokens: []string{"st-1"},
			Metrics: []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}},
			Gateway: &catalog.GatewaySpec{
				APIBackend: backend,
				Hosts:      []string{"api.example.com"},
				MappingRules: []catalog.MappingRuleSpec{
					{HTTPMethod: "GET", Pattern: "/search", Metric: "search", Delta: 2},
				},
			},
		}, {
			ID: "2", Tokens: []string{"st-2"}, Metrics: []catalog.MetricSpec{{Name: "hits"}},
		}},
	}}}
}

// versions lists the version numbers and api_backends of an environment.
func versions(p *Projection, service, env string) []string {
	var out []string
	for _, v := range p.GatewayVersions("acme", service, env) {
		out = append(out, v.Gateway.APIBackend+"#"+string(rune('0'+v.Version)))
	}
	return out
}

func setBackend(backend string) func(doc *catalog.Document) error {
	return func(doc *catalog.Document) error {
		doc.Tenants[0].Service("1").Gateway.APIBackend = backend
		return nil
	}
}

// TestGatewayEnvironments: a file sets both environments (version 1), an
// admin change makes a staging version only, promotion a production
// version only, and every version stays readable, also to a node that
// replays the log from its start.
func TestGatewayEnvironments(t *testing.T) {
	l := NewMemLog()
	p := startProjection(t, l, nil)
	ctx := ctx5(t)
	if err := p.Apply(ctx, gatewayDoc("https://a.internal")); err != nil {
		t.Fatal(err)
	}
	check := func(step string, service, env string, want ...string) {
		t.Helper()
		if got := versions(p, service, env); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s %s versions %q, want %q", step, service, env, got, want)
		}
	}
	check("file", "1", EnvStaging, "https://a.internal#1")
	check("file", "1", EnvProduction, "https://a.internal#1")
	// A service without a gateway block has 3scale's defaults, version 1.
	if v := p.GatewayVersion("acme", "2", EnvProduction, 0); v == nil || v.Version != 1 ||
		!reflect.DeepEqual(v.Gateway.MappingRules, []catalog.MappingRuleSpec{{HTTPMethod: "GET", Pattern: "/", Metric: "hits", Delta: 1}}) ||
		v.Gateway.CredentialsLocation != catalog.CredentialsQuery {
		t.Errorf("defaults: %+v", v)
	}

	if err := p.Update(ctx, setBackend("https://b.internal")); err != nil {
		t.Fatal(err)
	}
	check("admin change", "1", EnvStaging, "https://a.internal#1", "https://b.internal#2")
	check("admin change", "1", EnvProduction, "https://a.internal#1")
	// A change elsewhere makes no version.
	if err := p.Update(ctx, func(doc *catalog.Document) error {
		doc.Tenants[0].QueryTokens = []string{"q-1"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("unrelated change", "1", EnvStaging, "https://a.internal#1", "https://b.internal#2")

	v, err := p.Promote(ctx, "acme", "1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 2 || v.PromotedFrom != 2 || v.Environment != EnvProduction {
		t.Errorf("promotion: %+v", v)
	}
	check("promotion", "1", EnvProduction, "https://a.internal#1", "https://b.internal#2")
	check("promotion", "1", EnvStaging, "https://a.internal#1", "https://b.internal#2")
	// An older staging version can be promoted too.
	if v, err = p.Promote(ctx, "acme", "1", 1); err != nil || v.Version != 3 || v.Gateway.APIBackend != "https://a.internal" {
		t.Fatalf("promote version 1: %+v, %v", v, err)
	}
	for _, c := range []struct {
		name    string
		service string
		from    int64
	}{{"unknown version", "1", 9}, {"unknown service", "9", 0}} {
		if _, err := p.Promote(ctx, "acme", c.service, c.from); !errors.Is(err, ErrNoVersion) {
			t.Errorf("%s: %v, want ErrNoVersion", c.name, err)
		}
	}
	if _, err := p.Promote(ctx, "other", "1", 0); !errors.Is(err, ErrNoVersion) {
		t.Errorf("another tenant's service: %v, want ErrNoVersion", err)
	}
	// A staging version naming a metric since deleted is not promoted.
	if err := p.Update(ctx, func(doc *catalog.Document) error {
		s := doc.Tenants[0].Service("1")
		s.Gateway.MappingRules[0].Metric = "hits"
		s.Metrics = s.Metrics[:1]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Promote(ctx, "acme", "1", 2); !errors.Is(err, ErrStaleVersion) || !strings.Contains(err.Error(), `"search"`) {
		t.Errorf("promote a version naming a deleted metric: %v, want ErrStaleVersion", err)
	}
	check("stale promotion refused", "1", EnvProduction, "https://a.internal#1", "https://b.internal#2", "https://a.internal#3")

	// The file again, changed: both environments get a new version.
	if err := p.Apply(ctx, gatewayDoc("https://c.internal")); err != nil {
		t.Fatal(err)
	}
	check("file again", "1", EnvStaging, "https://a.internal#1", "https://b.internal#2", "https://b.internal#3", "https://c.internal#4")
	check("file again", "1", EnvProduction, "https://a.internal#1", "https://b.internal#2", "https://a.internal#3", "https://c.internal#4")

	// Another node replaying the log sees the same history.
	q := startProjection(t, l, nil)
	for _, env := range []string{EnvStaging, EnvProduction} {
		if got, want := versions(q, "1", env), versions(p, "1", env); !reflect.DeepEqual(got, want) {
			t.Errorf("replay %s: %q, want %q", env, got, want)
		}
	}

	// Deleting the service deletes its history; the document never shows it.
	if err := p.Update(ctx, func(doc *catalog.Document) error {
		doc.Tenants[0].Services = doc.Tenants[0].Services[1:]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("deleted", "1", EnvStaging)
	check("deleted", "1", EnvProduction)
	for k := range p.state {
		if strings.HasPrefix(k, ProxyConfigKey("acme", "1", EnvStaging, 1)[:len("proxyconfig/acme/1/")]) {
			t.Errorf("record %s left after its service was deleted", k)
		}
	}
	doc, err := ReadLog(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Tenants) != 1 || len(doc.Tenants[0].Services) != 1 {
		t.Errorf("document read back: %+v", doc)
	}
}

// TestGatewayInvalidRefused: an invalid gateway block is refused as a whole
// change, and makes no version.
func TestGatewayInvalidRefused(t *testing.T) {
	p := startProjection(t, NewMemLog(), nil)
	ctx := ctx5(t)
	if err := p.Apply(ctx, gatewayDoc("https://a.internal")); err != nil {
		t.Fatal(err)
	}
	err := p.Update(ctx, func(doc *catalog.Document) error {
		doc.Tenants[0].Service("1").Gateway.MappingRules[0].Metric = "nope"
		return nil
	})
	var ve *catalog.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "tenants[0].services[0].gateway.mapping_rules[0].metric: unknown metric \"nope\"") {
		t.Fatalf("err %v", err)
	}
	if got := versions(p, "1", EnvStaging); len(got) != 1 {
		t.Errorf("staging versions %q after a refused change", got)
	}
}

// TestGatewayFileLeavesOtherTenants: applying a file sets production only
// for the tenants it declares; another tenant's unpromoted staging change
// stays unpromoted.
func TestGatewayFileLeavesOtherTenants(t *testing.T) {
	p := startProjection(t, NewMemLog(), nil)
	ctx := ctx5(t)
	other := catalog.TenantSpec{ID: "other", AdminToken: "adm-other", Services: []catalog.ServiceSpec{{
		ID: "9", Tokens: []string{"st-9"}, Metrics: []catalog.MetricSpec{{Name: "hits"}},
		Gateway: &catalog.GatewaySpec{APIBackend: "https://o1.internal"},
	}}}
	if err := p.Apply(ctx, &catalog.Document{Tenants: []catalog.TenantSpec{other}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Update(ctx, func(doc *catalog.Document) error {
		doc.Tenant("other").Service("9").Gateway.APIBackend = "https://o2.internal"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, gatewayDoc("https://a.internal")); err != nil {
		t.Fatal(err)
	}
	if v := p.GatewayVersion("other", "9", EnvProduction, 0); v == nil || v.Version != 1 || v.Gateway.APIBackend != "https://o1.internal" {
		t.Errorf("other tenant's production after a file for acme: %+v", v)
	}
	if v := p.GatewayVersion("other", "9", EnvStaging, 0); v == nil || v.Version != 2 {
		t.Errorf("other tenant's staging: %+v", v)
	}
}
