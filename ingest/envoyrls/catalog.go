package envoyrls

import (
	"fmt"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// AddToCatalog makes the query API see c's usage: in doc, it gives tenant
// a service per domain (id = the domain) holding the domain's metrics
// (MetricName of every descriptor path with a rate_limit). It only adds:
// services and metrics of domains or descriptors since removed stay, so
// that their past usage stays readable. It changes nothing of the tenant's
// other services and skips, with a reason in skipped, a domain that cannot
// be a service: an id the catalog refuses, one another tenant's service
// has, or more metrics than a service may hold. It reports whether doc
// changed. Without the tenant in doc it changes nothing.
func AddToCatalog(doc *catalog.Document, tenant string, c *Config) (changed bool, skipped []string) {
	ti := -1
	owner := make(map[string]string) // service id -> tenant
	for i := range doc.Tenants {
		t := &doc.Tenants[i]
		if t.ID == tenant {
			ti = i
		}
		for _, s := range t.Services {
			owner[s.ID] = t.ID
		}
	}
	if ti < 0 {
		return false, []string{fmt.Sprintf("tenant %q is not in the configuration: declare it to read the domains' usage in the query API", tenant)}
	}
	t := &doc.Tenants[ti]
	for _, dom := range c.Domains() {
		if !validServiceID(dom) {
			skipped = append(skipped, fmt.Sprintf("domain %q: not a valid service id (1-%d printable ASCII bytes without spaces)", dom, catalog.MaxIDLen))
			continue
		}
		if o, ok := owner[dom]; ok && o != tenant {
			skipped = append(skipped, fmt.Sprintf("domain %q: tenant %q has a service with that id", dom, o))
			continue
		}
		si := -1
		for i := range t.Services {
			if t.Services[i].ID == dom {
				si = i
			}
		}
		if si < 0 {
			t.Services = append(t.Services, catalog.ServiceSpec{ID: dom})
			si = len(t.Services) - 1
			changed = true
		}
		s := &t.Services[si]
		have := make(map[string]bool, len(s.Metrics))
		for _, m := range s.Metrics {
			have[m.Name] = true
		}
		var add []catalog.MetricSpec
		for _, m := range c.Metrics(dom) {
			if !have[m] {
				have[m] = true
				add = append(add, catalog.MetricSpec{Name: m})
			}
		}
		if len(s.Metrics)+len(add) > catalog.MaxMetrics {
			skipped = append(skipped, fmt.Sprintf("domain %q: more than %d metrics", dom, catalog.MaxMetrics))
			continue
		}
		if len(add) > 0 {
			s.Metrics = append(s.Metrics, add...)
			changed = true
		}
	}
	return changed, skipped
}

func validServiceID(s string) bool {
	if s == "" || len(s) > catalog.MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
