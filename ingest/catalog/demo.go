package catalog

import (
	"crypto/rand"
	"encoding/hex"
)

// Ids of the demo tenant that `sluice dev` loads without --config.
const (
	DemoTenantID  = "demo"
	DemoServiceID = "demo-service"
	DemoAppID     = "demo-app"
	DemoPlanID    = "basic"
)

// DemoCredentials are the secrets of the demo tenant. Empty fields are
// generated.
type DemoCredentials struct {
	AdminToken   string
	QueryToken   string
	ServiceToken string
	ProviderKey  string
	UserKey      string
}

// DemoDocument returns a document with one demo tenant: service
// "demo-service" (user_key mode, default) with metrics hits and search
// (child of hits), plan "basic" limiting hits to 100 a minute and 100,000 a
// month and search to 5 per sliding 10 seconds, and the application
// "demo-app" on it. Credentials not given in c are random (crypto/rand); the
// ones used are returned so the caller can print them.
func DemoDocument(c DemoCredentials) (*Document, DemoCredentials) {
	fill := func(s *string, prefix string) {
		if *s == "" {
			*s = prefix + randomHex(16)
		}
	}
	fill(&c.AdminToken, "adm-")
	fill(&c.QueryToken, "q-")
	fill(&c.ServiceToken, "st-")
	fill(&c.ProviderKey, "pk-")
	fill(&c.UserKey, "uk-")
	doc := &Document{Tenants: []TenantSpec{{
		ID:          DemoTenantID,
		AdminToken:  c.AdminToken,
		QueryTokens: []string{c.QueryToken},
		Services: []ServiceSpec{{
			ID:          DemoServiceID,
			Tokens:      []string{c.ServiceToken},
			ProviderKey: c.ProviderKey,
			Default:     true,
			AuthMode:    ModeUserKey,
			State:       StateActive,
			Metrics: []MetricSpec{
				{Name: "hits"},
				{Name: "search", Parent: "hits"},
			},
			Plans: []PlanSpec{{
				ID:   DemoPlanID,
				Name: "Basic",
				Limits: []LimitSpec{
					{Metric: "hits", Period: "minute", Max: 100},
					{Metric: "hits", Period: "month", Max: 100000},
					{Metric: "search", Period: "sliding:10s", Max: 5},
				},
			}},
			Applications: []AppSpec{{
				ID:      DemoAppID,
				Plan:    DemoPlanID,
				UserKey: c.UserKey,
				State:   StateActive,
			}},
		}},
	}}}
	return doc, c
}

// DemoCredentialsOf returns the credentials of the demo tenant in doc, if
// doc has one, so that `sluice dev` restarted over the same data directory
// keeps printing (and accepting) the same credentials:
//
//	creds, _ := catalog.DemoCredentialsOf(proj.Document()) // zero if none
//	doc, creds := catalog.DemoDocument(creds)
func DemoCredentialsOf(doc *Document) (DemoCredentials, bool) {
	t := doc.Tenant(DemoTenantID)
	if t == nil {
		return DemoCredentials{}, false
	}
	c := DemoCredentials{AdminToken: t.AdminToken}
	if len(t.QueryTokens) > 0 {
		c.QueryToken = t.QueryTokens[0]
	}
	if s := t.Service(DemoServiceID); s != nil {
		if len(s.Tokens) > 0 {
			c.ServiceToken = s.Tokens[0]
		}
		c.ProviderKey = s.ProviderKey
		if a := s.App(DemoAppID); a != nil {
			c.UserKey = a.UserKey
		}
	}
	return c, true
}

// NewSecret returns a random credential: prefix followed by 32 hex digits
// (128 bits from crypto/rand).
func NewSecret(prefix string) string { return prefix + randomHex(16) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics instead since Go 1.24)
	return hex.EncodeToString(b)
}
