package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func loadFull(t *testing.T) *Document {
	t.Helper()
	doc, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load(full.yaml): %v", err)
	}
	return doc
}

func problemsOf(err error) []string {
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return []string{"NOT A ValidationError: " + err.Error()}
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.String()
	}
	return out
}

func TestValidateFullIsValid(t *testing.T) {
	if err := loadFull(t).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	svc := func(d *Document, ti, si int) *ServiceSpec { return &d.Tenants[ti].Services[si] }
	long := strings.Repeat("a", 65)
	tests := []struct {
		name   string
		mutate func(d *Document)
		want   []string
	}{
		{"tenant id syntax", func(d *Document) { d.Tenants[0].ID = "Acme!" },
			[]string{`tenants[0].id: invalid tenant id "Acme!": want 1 to 64 of a-z 0-9 - _`}},
		{"tenant id too long", func(d *Document) { d.Tenants[0].ID = long },
			[]string{`tenants[0].id: invalid tenant id "` + long + `": want 1 to 64 of a-z 0-9 - _`}},
		{"tenant id empty", func(d *Document) { d.Tenants[0].ID = "" },
			[]string{`tenants[0].id: invalid tenant id "": want 1 to 64 of a-z 0-9 - _`}},
		{"tenant id duplicate", func(d *Document) { d.Tenants[1].ID = "acme" },
			[]string{`tenants[1].id: duplicate tenant id "acme" (also tenants[0])`}},
		{"admin token empty", func(d *Document) { d.Tenants[0].AdminToken = "" },
			[]string{`tenants[0].admin_token: must not be empty`}},
		{"admin token with space", func(d *Document) { d.Tenants[0].AdminToken = "a b" },
			[]string{`tenants[0].admin_token: must be printable ASCII without spaces`}},
		{"admin token too long", func(d *Document) { d.Tenants[0].AdminToken = strings.Repeat("x", 257) },
			[]string{`tenants[0].admin_token: longer than 256 bytes`}},
		{"admin token of another tenant", func(d *Document) { d.Tenants[1].AdminToken = "adm-acme" },
			[]string{`tenants[1].admin_token: already in use by another tenant`, `tenants[0].admin_token: already in use by another tenant`}},
		{"query token is own admin token", func(d *Document) { d.Tenants[0].QueryTokens[0] = "adm-acme" },
			[]string{`tenants[0].query_tokens[0]: already in use as tenants[0].admin_token`}},
		{"query token duplicate", func(d *Document) { d.Tenants[0].QueryTokens[1] = "q-acme-1" },
			[]string{`tenants[0].query_tokens[1]: duplicate (also tenants[0].query_tokens[0])`}},
		{"query token empty", func(d *Document) { d.Tenants[0].QueryTokens[1] = "" },
			[]string{`tenants[0].query_tokens[1]: must not be empty`}},
		{"too many query tokens", func(d *Document) {
			d.Tenants[0].QueryTokens = nil
			for i := range MaxTokens + 1 {
				d.Tenants[0].QueryTokens = append(d.Tenants[0].QueryTokens, fmt.Sprint("q", i))
			}
		}, []string{`tenants[0].query_tokens: more than 64 query tokens`}},
		{"service token of another tenant", func(d *Document) { svc(d, 1, 0).Tokens[0] = "st-acme" },
			[]string{`tenants[1].services[0].tokens[0]: already in use by another tenant`, `tenants[0].services[0].tokens[0]: already in use by another tenant`}},
		{"service token repeated in one service", func(d *Document) { svc(d, 0, 0).Tokens = []string{"st-acme", "st-acme"} },
			[]string{`tenants[0].services[0].tokens[1]: duplicate (also tenants[0].services[0].tokens[0])`}},
		{"service token is a query token", func(d *Document) { svc(d, 0, 1).Tokens[0] = "q-acme-2" },
			[]string{`tenants[0].services[1].tokens[0]: already in use as tenants[0].query_tokens[1]`}},
		{"service token empty", func(d *Document) { svc(d, 0, 0).Tokens[0] = "" },
			[]string{`tenants[0].services[0].tokens[0]: must not be empty`}},
		{"provider key of another tenant", func(d *Document) { svc(d, 1, 0).ProviderKey = "pk-acme" },
			[]string{`tenants[1].services[0].provider_key: already in use by another tenant`, `tenants[0].services[0].provider_key: already in use by another tenant`}},
		{"provider key is a service token", func(d *Document) { svc(d, 0, 1).ProviderKey = "st-acme" },
			[]string{`tenants[0].services[1].provider_key: already in use as tenants[0].services[0].tokens[0]`}},
		{"service id empty", func(d *Document) { svc(d, 0, 1).ID = "" },
			[]string{`tenants[0].services[1].id: service id is required`}},
		{"service id too long", func(d *Document) { svc(d, 0, 1).ID = long },
			[]string{`tenants[0].services[1].id: service id longer than 64 bytes`}},
		{"service id not printable", func(d *Document) { svc(d, 0, 1).ID = "a b" },
			[]string{`tenants[0].services[1].id: service id "a b" must be printable ASCII without spaces`}},
		{"service id duplicate in tenant", func(d *Document) { svc(d, 0, 1).ID = "2555417777820" },
			[]string{`tenants[0].services[1].id: duplicate service id "2555417777820" (also tenants[0].services[0])`}},
		{"service id of another tenant", func(d *Document) { svc(d, 1, 0).ID = "acme-oauth" },
			[]string{`tenants[1].services[0].id: service id "acme-oauth" already in use by another tenant`, `tenants[0].services[1].id: service id "acme-oauth" already in use by another tenant`}},
		{"two default services", func(d *Document) { svc(d, 0, 1).Default = true },
			[]string{`tenants[0].services[1].default: tenant already has a default service (tenants[0].services[0])`}},
		{"default services in two tenants is fine", func(d *Document) { svc(d, 1, 0).Default = true }, nil},
		{"auth mode unknown", func(d *Document) { svc(d, 1, 0).AuthMode = "magic" },
			[]string{`tenants[1].services[0].auth_mode: unknown auth_mode "magic": want user_key, app_id or oauth`}},
		{"service state unknown", func(d *Document) { svc(d, 1, 0).State = "paused" },
			[]string{`tenants[1].services[0].state: unknown state "paused": want active or suspended`}},
		{"metric name invalid", func(d *Document) { svc(d, 1, 0).Metrics = append(svc(d, 1, 0).Metrics, MetricSpec{Name: "a b"}) },
			[]string{`tenants[1].services[0].metrics[1].name: invalid metric name "a b": want 1 to 255 of A-Z a-z 0-9 _ - . :`}},
		{"metric name duplicate", func(d *Document) { svc(d, 1, 0).Metrics = append(svc(d, 1, 0).Metrics, MetricSpec{Name: "hits"}) },
			[]string{`tenants[1].services[0].metrics[1].name: duplicate metric "hits" (also tenants[1].services[0].metrics[0])`}},
		{"metric parent unknown", func(d *Document) { svc(d, 1, 0).Metrics[0].Parent = "nope" },
			[]string{`tenants[1].services[0].metrics[0].parent: unknown metric "nope"`}},
		{"metric own parent", func(d *Document) { svc(d, 1, 0).Metrics[0].Parent = "hits" },
			[]string{`tenants[1].services[0].metrics[0].parent: metric "hits" cannot be its own parent`}},
		{"metric cycle", func(d *Document) { svc(d, 0, 0).Metrics[0].Parent = "search" },
			[]string{
				`tenants[0].services[0].metrics[0].parent: cycle in metric hierarchy: hits -> search -> hits`,
				`tenants[0].services[0].metrics[1].parent: cycle in metric hierarchy: search -> hits -> search`,
			}},
		{"metric hierarchy too deep", func(d *Document) {
			s := svc(d, 1, 0)
			for i := 1; i <= MaxMetricDepth; i++ {
				s.Metrics = append(s.Metrics, MetricSpec{Name: fmt.Sprint("m", i), Parent: s.Metrics[len(s.Metrics)-1].Name})
			}
		}, []string{`tenants[1].services[0].metrics[8].parent: metric hierarchy deeper than 8 levels`}},
		{"too many metrics", func(d *Document) {
			s := svc(d, 1, 0)
			for i := range MaxMetrics {
				s.Metrics = append(s.Metrics, MetricSpec{Name: fmt.Sprint("m", i)})
			}
		}, []string{`tenants[1].services[0].metrics: more than 256 metrics`}},
		{"plan id empty", func(d *Document) { svc(d, 0, 0).Plans[1].ID = "" },
			[]string{`tenants[0].services[0].plans[1].id: plan id is required`, `tenants[0].services[0].applications[1].plan: unknown plan "free"`}},
		{"plan id duplicate", func(d *Document) { svc(d, 0, 0).Plans[1].ID = "basic" },
			[]string{`tenants[0].services[0].plans[1].id: duplicate plan id "basic" (also tenants[0].services[0].plans[0])`, `tenants[0].services[0].applications[1].plan: unknown plan "free"`}},
		{"plan name too long", func(d *Document) { svc(d, 0, 0).Plans[1].Name = strings.Repeat("n", 256) },
			[]string{`tenants[0].services[0].plans[1].name: longer than 255 bytes`}},
		{"limit unknown metric", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[1].Metric = "nope" },
			[]string{`tenants[0].services[0].plans[0].limits[1].metric: unknown metric "nope"`}},
		{"strict region-scoped", func(d *Document) {
			l := &svc(d, 0, 0).Plans[0].Limits[1]
			l.Strict, l.Scope = true, ScopeRegion
		}, []string{`tenants[0].services[0].plans[0].limits[1].strict: strict applies to global limits only (scope is region)`}},
		{"strict local", func(d *Document) {
			l := &svc(d, 0, 0).Plans[0].Limits[1]
			l.Strict, l.Consistency = true, ConsistencyLocal
		}, []string{`tenants[0].services[0].plans[0].limits[1].strict: strict needs consistency exact (the owner decides each call)`}},
		{"strict sliding", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[2].Strict = true },
			[]string{`tenants[0].services[0].plans[0].limits[2].strict: strict needs a calendar period: a sliding window has no remainder to share`}},
		{"limit scope unknown", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[0].Scope = "planet" },
			[]string{`tenants[0].services[0].plans[0].limits[0].scope: unknown scope "planet" (want global or region)`}},
		{"limit metric missing", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[1].Metric = "" },
			[]string{`tenants[0].services[0].plans[0].limits[1].metric: metric is required`}},
		{"limit unknown period", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[2].Period = "fortnight" },
			[]string{`tenants[0].services[0].plans[0].limits[2].period: unknown period "fortnight"`}},
		{"limit period missing", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[2].Period = "" },
			[]string{`tenants[0].services[0].plans[0].limits[2].period: period is required`}},
		{"limit sliding window out of range", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[2].Period = "sliding:0s" },
			[]string{`tenants[0].services[0].plans[0].limits[2].period: invalid period "sliding:0s": sliding window must be between 1s and 24h0m0s`}},
		{"limit sliding window malformed", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[2].Period = "sliding:soon" },
			[]string{`tenants[0].services[0].plans[0].limits[2].period: invalid period "sliding:soon": time: invalid duration "soon"`}},
		{"limit max negative", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[0].Max = -1 },
			[]string{`tenants[0].services[0].plans[0].limits[0].max: max must be >= 0, got -1`}},
		{"limit duplicate", func(d *Document) { svc(d, 0, 0).Plans[0].Limits[1].Period = "minute" },
			[]string{`tenants[0].services[0].plans[0].limits[1]: duplicate limit for hits per minute (also tenants[0].services[0].plans[0].limits[0])`}},
		{"limit duplicate sliding spelled differently", func(d *Document) {
			p := &svc(d, 0, 0).Plans[0]
			p.Limits = append(p.Limits, LimitSpec{Metric: "search", Period: "sliding:10000ms", Max: 1})
		}, []string{`tenants[0].services[0].plans[0].limits[3]: duplicate limit for search per sliding:10s (also tenants[0].services[0].plans[0].limits[2])`}},
		{"app id empty", func(d *Document) { svc(d, 1, 0).Applications[0].ID = "" },
			[]string{`tenants[1].services[0].applications[0].id: application id is required`}},
		{"app id duplicate", func(d *Document) { svc(d, 0, 0).Applications[1].ID = "app1" },
			[]string{`tenants[0].services[0].applications[1].id: duplicate application id "app1" (also tenants[0].services[0].applications[0])`}},
		{"app ids may repeat across services", func(d *Document) { svc(d, 0, 1).Applications[0].ID = "app1" }, nil},
		{"app plan missing", func(d *Document) { svc(d, 1, 0).Applications[0].Plan = "" },
			[]string{`tenants[1].services[0].applications[0].plan: plan is required`}},
		{"app plan unknown", func(d *Document) { svc(d, 1, 0).Applications[0].Plan = "silver" },
			[]string{`tenants[1].services[0].applications[0].plan: unknown plan "silver"`}},
		{"app state unknown", func(d *Document) { svc(d, 1, 0).Applications[0].State = "gone" },
			[]string{`tenants[1].services[0].applications[0].state: unknown state "gone": want active or suspended`}},
		{"user_key missing in user_key mode", func(d *Document) { svc(d, 0, 0).Applications[0].UserKey = "" },
			[]string{`tenants[0].services[0].applications[0].user_key: user_key is required in user_key mode`}},
		{"user_key duplicate", func(d *Document) { svc(d, 0, 0).Applications[1].UserKey = "uk-1" },
			[]string{`tenants[0].services[0].applications[1].user_key: duplicate user_key (also tenants[0].services[0].applications[0].user_key)`}},
		{"user_key not printable", func(d *Document) { svc(d, 0, 0).Applications[1].UserKey = "uk\n2" },
			[]string{`tenants[0].services[0].applications[1].user_key: must be printable ASCII without spaces`}},
		{"user_key in app_id mode", func(d *Document) { svc(d, 1, 0).Applications[0].UserKey = "uk" },
			[]string{`tenants[1].services[0].applications[0].user_key: user_key is not allowed in app_id mode: applications are identified by id`}},
		{"user_key in oauth mode", func(d *Document) { svc(d, 0, 1).Applications[0].UserKey = "uk" },
			[]string{`tenants[0].services[1].applications[0].user_key: user_key is not allowed in oauth mode: applications are identified by id`}},
		{"app keys in user_key mode", func(d *Document) { svc(d, 0, 0).Applications[0].Keys = []string{"k"} },
			[]string{`tenants[0].services[0].applications[0].keys: app keys are not allowed in user_key mode`}},
		{"app key duplicate", func(d *Document) { svc(d, 1, 0).Applications[0].Keys[1] = "k1" },
			[]string{`tenants[1].services[0].applications[0].keys[1]: duplicate key (also tenants[1].services[0].applications[0].keys[0])`}},
		{"app key empty", func(d *Document) { svc(d, 1, 0).Applications[0].Keys[1] = "" },
			[]string{`tenants[1].services[0].applications[0].keys[1]: must not be empty`}},
		{"too many app keys", func(d *Document) {
			a := &svc(d, 1, 0).Applications[0]
			a.Keys = nil
			for i := range MaxAppKeys + 1 {
				a.Keys = append(a.Keys, fmt.Sprint("k", i))
			}
		}, []string{`tenants[1].services[0].applications[0].keys: more than 256 keys`}},
		{"referrer filter invalid", func(d *Document) { svc(d, 0, 1).Applications[0].ReferrerFilters[0] = "http://x/" },
			[]string{`tenants[0].services[1].applications[0].referrer_filters[0]: invalid referrer filter "http://x/": want a host pattern of letters, digits, . - _ : and * wildcards`}},
		{"referrer filter empty", func(d *Document) { svc(d, 0, 1).Applications[0].ReferrerFilters[0] = "" },
			[]string{`tenants[0].services[1].applications[0].referrer_filters[0]: referrer filter must not be empty`}},
		{"referrer filter double star", func(d *Document) { svc(d, 0, 1).Applications[0].ReferrerFilters[0] = "**.x" },
			[]string{`tenants[0].services[1].applications[0].referrer_filters[0]: invalid referrer filter "**.x": repeated *`}},
		{"referrer filter duplicate", func(d *Document) { svc(d, 0, 1).Applications[0].ReferrerFilters[1] = "*.example.com" },
			[]string{`tenants[0].services[1].applications[0].referrer_filters[1]: duplicate referrer filter "*.example.com" (also tenants[0].services[1].applications[0].referrer_filters[0])`}},
		{"redirect_url invalid", func(d *Document) { svc(d, 0, 1).Applications[0].RedirectURL = "/cb" },
			[]string{`tenants[0].services[1].applications[0].redirect_url: invalid redirect_url "/cb": want an absolute URL like https://example.com/callback`}},
		{"redirect_url outside oauth", func(d *Document) { svc(d, 1, 0).Applications[0].RedirectURL = "https://x.example/cb" },
			[]string{`tenants[1].services[0].applications[0].redirect_url: redirect_url is only allowed in oauth mode`}},
		{"alert threshold out of range", func(d *Document) { svc(d, 0, 0).AlertThresholds = []int64{0, 50, 10001} },
			[]string{
				`tenants[0].services[0].alert_thresholds[0]: threshold 0 out of range: want a percentage from 1 to 10000`,
				`tenants[0].services[0].alert_thresholds[2]: threshold 10001 out of range: want a percentage from 1 to 10000`,
			}},
		{"alert threshold duplicate", func(d *Document) { svc(d, 0, 0).AlertThresholds = []int64{50, 80, 50} },
			[]string{`tenants[0].services[0].alert_thresholds[2]: duplicate threshold 50`}},
		{"too many alert thresholds", func(d *Document) {
			svc(d, 0, 0).AlertThresholds = nil
			for i := range MaxAlertThresholds + 1 {
				svc(d, 0, 0).AlertThresholds = append(svc(d, 0, 0).AlertThresholds, int64(10+i))
			}
		}, []string{`tenants[0].services[0].alert_thresholds: more than 16 thresholds`}},
		{"webhook URL not http", func(d *Document) { d.Tenants[0].WebhookURL = "ftp://hooks.example/x" },
			[]string{`tenants[0].webhook_url: must be an absolute http or https URL without user info or fragment`}},
		{"webhook URL with user info", func(d *Document) { d.Tenants[0].WebhookURL = "https://u:p@hooks.example/x" },
			[]string{`tenants[0].webhook_url: must be an absolute http or https URL without user info or fragment`}},
		{"webhook URL relative", func(d *Document) { d.Tenants[0].WebhookURL = "/hook" },
			[]string{`tenants[0].webhook_url: must be an absolute http or https URL without user info or fragment`}},
		{"webhook without secret", func(d *Document) { d.Tenants[0].WebhookSecret = "" },
			[]string{`tenants[0].webhook_secret: required with webhook_url: receivers verify the signature with it`}},
		{"webhook secret short", func(d *Document) { d.Tenants[0].WebhookSecret = "short-secret" },
			[]string{`tenants[0].webhook_secret: shorter than 16 bytes`}},
		{"webhook secret with space", func(d *Document) { d.Tenants[0].WebhookSecret = "a secret with spaces" },
			[]string{`tenants[0].webhook_secret: must be printable ASCII without spaces`}},
		{"webhook secret without URL", func(d *Document) { d.Tenants[0].WebhookURL = "" },
			[]string{`tenants[0].webhook_secret: set without webhook_url`}},
		{"several problems at once", func(d *Document) {
			d.Tenants[0].ID = "ACME"
			svc(d, 0, 0).Plans[0].Limits[2].Period = "fortnight"
			svc(d, 1, 0).Applications[0].Plan = "nope"
		}, []string{
			`tenants[0].id: invalid tenant id "ACME": want 1 to 64 of a-z 0-9 - _`,
			`tenants[0].services[0].plans[0].limits[2].period: unknown period "fortnight"`,
			`tenants[1].services[0].applications[0].plan: unknown plan "nope"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := loadFull(t)
			tc.mutate(d)
			got := problemsOf(d.Validate())
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestValidateNeverShowsCredentials(t *testing.T) {
	d := loadFull(t)
	secret := "sekrit-value-xyz"
	d.Tenants[0].AdminToken = secret
	d.Tenants[1].AdminToken = secret
	d.Tenants[0].QueryTokens[0] = secret + " with space"
	d.Tenants[0].Services[0].Applications[1].UserKey = d.Tenants[0].Services[0].Applications[0].UserKey
	d.Tenants[1].WebhookURL, d.Tenants[1].WebhookSecret = "https://hooks.example/", "sekrit short"
	err := d.Validate()
	if err == nil {
		t.Fatal("want problems")
	}
	if strings.Contains(err.Error(), "sekrit") || strings.Contains(err.Error(), "uk-1") {
		t.Errorf("a credential shows in: %v", err)
	}
}

func TestMatchReferrer(t *testing.T) {
	tests := []struct {
		filter, referrer string
		want             bool
	}{
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "www.example.org", false},
		{"example.com", "EXAMPLE.com", true},
		{"example.com", "example.co", false},
		{"*", "anything", true},
		{"*", "", true},
		{"192.168.0.*", "192.168.0.17", true},
		{"192.168.0.*", "192.168.1.17", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"localhost:8080", "localhost:8080", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range tests {
		if got := MatchReferrer(tc.filter, tc.referrer); got != tc.want {
			t.Errorf("MatchReferrer(%q, %q) = %v, want %v", tc.filter, tc.referrer, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { sinkBool = MatchReferrer("*.example.com", "www.example.com") }); n != 0 {
		t.Errorf("MatchReferrer allocates %v times", n)
	}
}

// sinkBool keeps results of calls measured for allocations alive.
var sinkBool bool

// TestAlertThresholdsBuilt: a service's thresholds are its own, sorted, or
// the defaults; the tenant's webhook reaches the snapshot.
func TestAlertThresholdsBuilt(t *testing.T) {
	doc := loadFull(t)
	snap, err := Build(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Services["2555417777820"].AlertThresholds; fmt.Sprint(got) != "[50 100 200]" {
		t.Errorf("thresholds %v, want [50 100 200]", got)
	}
	if got := snap.Services["acme-oauth"].AlertThresholds; fmt.Sprint(got) != fmt.Sprint(DefaultAlertThresholds) {
		t.Errorf("default thresholds %v, want %v", got, DefaultAlertThresholds)
	}
	doc.Tenants[0].Services[0].AlertThresholds = []int64{300, 80, 120}
	if snap, err = Build(doc, nil); err != nil {
		t.Fatal(err)
	}
	if got := snap.Services["2555417777820"].AlertThresholds; fmt.Sprint(got) != "[80 120 300]" {
		t.Errorf("thresholds %v, want sorted [80 120 300]", got)
	}
	if tn := snap.Tenants["acme"]; tn.WebhookURL != "https://hooks.acme.example/sluice" || tn.WebhookSecret != "whsec-acme-0123456789" {
		t.Errorf("webhook %q", tn.WebhookURL)
	}
}
