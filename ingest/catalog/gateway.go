package catalog

import (
	"fmt"
	"net/url"
	"strings"
)

// GatewaySpec is a service's gateway configuration: what APIcast needs to
// front the service (where the API is, which hosts it answers, where
// credentials are, which requests count toward which metric). It is the
// `gateway` block of a service in the configuration file and the admin
// API. The file's block is both environments' version 1; the admin API
// edits staging, and a promotion copies staging to production (package
// configlog keeps the versions).
//
// Empty fields take 3scale's defaults for a new service (Effective): no
// api_backend, credentials in the query string, and one mapping rule
// `GET /` counting 1 hit.
type GatewaySpec struct {
	APIBackend          string            `yaml:"api_backend,omitempty" json:"api_backend,omitempty"`
	Hosts               []string          `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	CredentialsLocation string            `yaml:"credentials_location,omitempty" json:"credentials_location,omitempty"`
	AuthUserKey         string            `yaml:"auth_user_key,omitempty" json:"auth_user_key,omitempty"`
	AuthAppID           string            `yaml:"auth_app_id,omitempty" json:"auth_app_id,omitempty"`
	AuthAppKey          string            `yaml:"auth_app_key,omitempty" json:"auth_app_key,omitempty"`
	MappingRules        []MappingRuleSpec `yaml:"mapping_rules,omitempty" json:"mapping_rules,omitempty"`
}

// MappingRuleSpec is one mapping rule: a request with HTTPMethod whose path
// matches Pattern counts Delta units of Metric. Last stops matching after
// this rule. Pattern is APIcast's syntax (see ValidPattern).
type MappingRuleSpec struct {
	HTTPMethod string `yaml:"http_method" json:"http_method"`
	Pattern    string `yaml:"pattern" json:"pattern"`
	Metric     string `yaml:"metric" json:"metric"`
	Delta      int64  `yaml:"delta,omitempty" json:"delta,omitempty"`
	Last       bool   `yaml:"last,omitempty" json:"last,omitempty"`
}

// MarshalYAML writes a mapping rule on one line, as docs/configuration.md
// shows it.
func (r MappingRuleSpec) MarshalYAML() (any, error) {
	type plain MappingRuleSpec
	return flowYAML(plain(r))
}

// Where a gateway looks for an application's credentials.
const (
	CredentialsQuery         = "query"
	CredentialsHeaders       = "headers"
	CredentialsAuthorization = "authorization"
)

// Bounds of a gateway block.
const (
	MaxMappingRules = 2_048 // mapping rules per service
	MaxGatewayHosts = 64    // hosts per service
	MaxPatternLen   = 1_024 // bytes of a mapping rule's pattern
	MaxRuleDelta    = 1_000_000
)

// gatewayMethods are the methods a mapping rule may name: 3scale's list.
var gatewayMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"OPTIONS": true, "TRACE": true, "PATCH": true, "CONNECT": true,
}

// DefaultMetric is the metric of the default mapping rule.
const DefaultMetric = "hits"

// Effective returns g with 3scale's defaults filled in (g may be nil: a
// service without a gateway block): credentials in the query string,
// 3scale's parameter names, and, when g has no mapping rules, one rule
// `GET /` counting 1 unit of hits if the service has a hits metric. A
// rule's zero Delta means 1. The result shares nothing with g.
func (g *GatewaySpec) Effective(s *ServiceSpec) GatewaySpec {
	var e GatewaySpec
	if g != nil {
		e = cloneSpec(*g)
	}
	if e.CredentialsLocation == "" {
		e.CredentialsLocation = CredentialsQuery
	}
	if e.AuthUserKey == "" {
		e.AuthUserKey = "user_key"
	}
	if e.AuthAppID == "" {
		e.AuthAppID = "app_id"
	}
	if e.AuthAppKey == "" {
		e.AuthAppKey = "app_key"
	}
	if len(e.MappingRules) == 0 && (s == nil || s.Metric(DefaultMetric) >= 0) {
		e.MappingRules = []MappingRuleSpec{{HTTPMethod: "GET", Pattern: "/", Metric: DefaultMetric, Delta: 1}}
	}
	for i := range e.MappingRules {
		if e.MappingRules[i].Delta == 0 {
			e.MappingRules[i].Delta = 1
		}
	}
	return e
}

// ValidPattern checks a mapping rule's pattern the way APIcast reads it: a
// path starting with '/', made of URL path characters, with `{name}`
// placeholders (name of letters, digits, '_' and '-') matching one path
// segment, an optional final '$' for an exact match, and an optional query
// part `?name=value&...` whose values may be placeholders. Characters that
// would change the regular expression APIcast builds from the path ('(',
// ')', '*', '+', '[', ']', '\', '|', '^') and a '$' before the end are
// refused, so that every pattern means to APIcast what it says.
func ValidPattern(p string) error {
	if len(p) == 0 || p[0] != '/' {
		return fmt.Errorf("must start with /")
	}
	if len(p) > MaxPatternLen {
		return fmt.Errorf("longer than %d bytes", MaxPatternLen)
	}
	path, query, hasQuery := strings.Cut(p, "?")
	if err := validPatternPart(path, true); err != nil {
		return err
	}
	if hasQuery {
		if query == "" {
			return fmt.Errorf("empty query after ?")
		}
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if k == "" {
				return fmt.Errorf("query parameter without a name")
			}
			if err := validPatternPart(k, false); err != nil {
				return fmt.Errorf("query parameter %q: %w", k, err)
			}
			if err := validPatternPart(v, false); err != nil {
				return fmt.Errorf("query parameter %q: %w", k, err)
			}
		}
	}
	return nil
}

func validPatternPart(s string, path bool) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return fmt.Errorf("unclosed { at byte %d", i)
			}
			name := s[i+1 : i+j]
			if name == "" {
				return fmt.Errorf("empty placeholder {} at byte %d", i)
			}
			for k := 0; k < len(name); k++ {
				if !isWordByte(name[k]) && name[k] != '-' {
					return fmt.Errorf("placeholder {%s}: want letters, digits, _ and -", name)
				}
			}
			i += j
		case c == '}':
			return fmt.Errorf("unopened } at byte %d", i)
		case c == '$':
			if !path || i != len(s)-1 {
				return fmt.Errorf("$ only at the end of the path")
			}
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("bad percent escape at byte %d", i)
			}
		case isWordByte(c) || strings.IndexByte("-._~!&',;=:@/", c) >= 0:
			if !path && (c == '&' || c == '=') {
				return fmt.Errorf("%q inside a query name or value", c)
			}
		default:
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	return nil
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// PatternParameters returns the placeholder names of a valid pattern's path
// part, in order (what 3scale sends APIcast as a rule's `parameters`), and
// its query part as a map (`querystring_parameters`), nil when it has none.
func PatternParameters(p string) (params []string, query map[string]string) {
	path, q, hasQuery := strings.Cut(p, "?")
	params = []string{}
	for rest := path; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			break
		}
		params = append(params, rest[i+1:i+j])
		rest = rest[i+j+1:]
	}
	if hasQuery {
		query = map[string]string{}
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			query[k] = v
		}
	}
	return params, query
}

// gateway checks a service's gateway block; metrics are the service's
// metric names.
func (v *validator) gateway(p string, g *GatewaySpec, metrics map[string]int) {
	if g == nil {
		return
	}
	if g.APIBackend != "" {
		u, err := url.Parse(g.APIBackend)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || len(g.APIBackend) > MaxRedirectURLLen {
			v.add(at(p, g, &g.APIBackend), "want an absolute http or https URL without credentials, at most %d bytes", MaxRedirectURLLen)
		}
	}
	hp := at(p, g, &g.Hosts)
	if len(g.Hosts) > MaxGatewayHosts {
		v.add(hp, "more than %d hosts", MaxGatewayHosts)
	}
	for i, h := range g.Hosts {
		if !validHost(h) {
			v.add(index(hp, i), "invalid host %q: want a host name", h)
		}
	}
	switch g.CredentialsLocation {
	case "", CredentialsQuery, CredentialsHeaders, CredentialsAuthorization:
	default:
		v.add(at(p, g, &g.CredentialsLocation), "unknown %s %q: want %s, %s or %s", FieldName(g, &g.CredentialsLocation),
			g.CredentialsLocation, CredentialsQuery, CredentialsHeaders, CredentialsAuthorization)
	}
	for _, f := range []*string{&g.AuthUserKey, &g.AuthAppID, &g.AuthAppKey} {
		if *f != "" && !validParamName(*f) {
			v.add(at(p, g, f), "invalid parameter name %q: want 1 to %d of A-Z a-z 0-9 - _", *f, MaxIDLen)
		}
	}
	rp := at(p, g, &g.MappingRules)
	if len(g.MappingRules) > MaxMappingRules {
		v.add(rp, "more than %d mapping rules", MaxMappingRules)
	}
	for i := range g.MappingRules {
		r := &g.MappingRules[i]
		ip := index(rp, i)
		if !gatewayMethods[r.HTTPMethod] {
			v.add(at(ip, r, &r.HTTPMethod), "unknown method %q: want GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH or CONNECT", r.HTTPMethod)
		}
		if err := ValidPattern(r.Pattern); err != nil {
			v.add(at(ip, r, &r.Pattern), "invalid pattern %q: %v", truncate(r.Pattern, 64), err)
		}
		if _, ok := metrics[r.Metric]; !ok {
			v.add(at(ip, r, &r.Metric), "unknown metric %q", truncate(r.Metric, MaxNameLen))
		}
		if r.Delta < 0 || r.Delta > MaxRuleDelta {
			v.add(at(ip, r, &r.Delta), "want 1 to %d (0 means 1)", MaxRuleDelta)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// validHost: a DNS name or an IP literal, as a gateway matches the Host
// header.
func validHost(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

func validParamName(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}
