package gateway

import (
	"encoding/json"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
)

// The answers' shapes. Field names are those APIcast's configuration
// loader and parser read (gateway/src/apicast/configuration.lua and
// configuration_loader/remote_v2.lua in 3scale/APIcast) and 3scale's admin
// API writes; the package tests check them against a fixture of APIcast's
// example configuration.

type backendJSON struct {
	Endpoint string `json:"endpoint"`
	Host     string `json:"host"`
}

type policyJSON struct {
	Name          string         `json:"name"`
	Version       string         `json:"version"`
	Configuration map[string]any `json:"configuration"`
}

type ruleJSON struct {
	HTTPMethod            string            `json:"http_method"`
	Pattern               string            `json:"pattern"`
	MetricSystemName      string            `json:"metric_system_name"`
	Delta                 int64             `json:"delta"`
	Parameters            []string          `json:"parameters"`
	QuerystringParameters map[string]string `json:"querystring_parameters"`
	Last                  bool              `json:"last"`
	Position              int               `json:"position"`
}

type proxyJSON struct {
	ServiceID                  json.RawMessage `json:"service_id"`
	APIBackend                 *string         `json:"api_backend"`
	Hosts                      []string        `json:"hosts,omitempty"`
	Backend                    backendJSON     `json:"backend"`
	CredentialsLocation        string          `json:"credentials_location"`
	AuthUserKey                string          `json:"auth_user_key"`
	AuthAppID                  string          `json:"auth_app_id"`
	AuthAppKey                 string          `json:"auth_app_key"`
	AuthenticationMethod       string          `json:"authentication_method"`
	ErrorAuthFailed            string          `json:"error_auth_failed"`
	ErrorStatusAuthFailed      int             `json:"error_status_auth_failed"`
	ErrorHeadersAuthFailed     string          `json:"error_headers_auth_failed"`
	ErrorAuthMissing           string          `json:"error_auth_missing"`
	ErrorStatusAuthMissing     int             `json:"error_status_auth_missing"`
	ErrorHeadersAuthMissing    string          `json:"error_headers_auth_missing"`
	ErrorLimitsExceeded        string          `json:"error_limits_exceeded"`
	ErrorStatusLimitsExceeded  int             `json:"error_status_limits_exceeded"`
	ErrorHeadersLimitsExceeded string          `json:"error_headers_limits_exceeded"`
	ErrorNoMatch               string          `json:"error_no_match"`
	ErrorStatusNoMatch         int             `json:"error_status_no_match"`
	ErrorHeadersNoMatch        string          `json:"error_headers_no_match"`
	PolicyChain                []policyJSON    `json:"policy_chain"`
	ProxyRules                 []ruleJSON      `json:"proxy_rules"`
}

type serviceJSON struct {
	ID               json.RawMessage `json:"id"`
	Name             string          `json:"name"`
	SystemName       string          `json:"system_name"`
	State            string          `json:"state"`
	BackendVersion   string          `json:"backend_version"`
	DeploymentOption string          `json:"deployment_option"`
}

type contentJSON struct {
	serviceJSON
	BackendAuthenticationType  string    `json:"backend_authentication_type,omitempty"`
	BackendAuthenticationValue string    `json:"backend_authentication_value,omitempty"`
	Proxy                      proxyJSON `json:"proxy"`
}

type configJSON struct {
	Version     int64       `json:"version"`
	Environment string      `json:"environment"`
	Content     contentJSON `json:"content"`
}

type serviceEnvelope struct {
	Service serviceJSON `json:"service"`
}

type servicesEnvelope struct {
	Services []serviceEnvelope `json:"services"`
}

type proxyEnvelope struct {
	Proxy proxyJSON `json:"proxy"`
}

type configEnvelope struct {
	ProxyConfig configJSON `json:"proxy_config"`
}

type configsEnvelope struct {
	ProxyConfigs []configEnvelope `json:"proxy_configs"`
}

// idJSON writes a service id as 3scale's clients expect it, a number, when
// it is one (digits without a leading zero, within int64); any other id as
// a string (APIcast reads either; the porta Go client needs numbers).
func idJSON(id string) json.RawMessage {
	num := len(id) > 0 && len(id) <= 18 && (id[0] != '0' || len(id) == 1)
	for i := 0; num && i < len(id); i++ {
		num = id[i] >= '0' && id[i] <= '9'
	}
	if num {
		return json.RawMessage(id)
	}
	b, _ := json.Marshal(id) // a string: cannot fail
	return b
}

// backendVersion is 3scale's name of a service's authentication mode.
func backendVersion(m catalog.AuthMode) string {
	switch m {
	case catalog.AuthAppID:
		return "2"
	case catalog.AuthOAuth:
		return "oauth"
	}
	return "1"
}

func serviceOf(s *catalog.Service) serviceJSON {
	state := catalog.StateActive
	if s.State == catalog.Suspended {
		state = catalog.StateSuspended
	}
	return serviceJSON{
		ID:               idJSON(s.ID),
		Name:             s.ID,
		SystemName:       s.ID,
		State:            state,
		BackendVersion:   backendVersion(s.AuthMode),
		DeploymentOption: "self_managed",
	}
}

// APIcast's texts and statuses for a gateway's own answers (its defaults in
// configuration.lua; 3scale's admin portal starts a service with the same
// texts).
const (
	textAuthFailed     = "Authentication failed"
	textAuthMissing    = "Authentication parameters missing"
	textLimitsExceeded = "Limits exceeded"
	textNoMatch        = "No Mapping Rule matched"
	errorContentType   = "text/plain; charset=us-ascii"
)

func (a *API) proxyOf(s *catalog.Service, g *catalog.GatewaySpec) proxyJSON {
	p := proxyJSON{
		ServiceID:                  idJSON(s.ID),
		Hosts:                      g.Hosts,
		Backend:                    a.backend,
		CredentialsLocation:        g.CredentialsLocation,
		AuthUserKey:                g.AuthUserKey,
		AuthAppID:                  g.AuthAppID,
		AuthAppKey:                 g.AuthAppKey,
		AuthenticationMethod:       backendVersion(s.AuthMode),
		ErrorAuthFailed:            textAuthFailed,
		ErrorStatusAuthFailed:      403,
		ErrorHeadersAuthFailed:     errorContentType,
		ErrorAuthMissing:           textAuthMissing,
		ErrorStatusAuthMissing:     401,
		ErrorHeadersAuthMissing:    errorContentType,
		ErrorLimitsExceeded:        textLimitsExceeded,
		ErrorStatusLimitsExceeded:  429,
		ErrorHeadersLimitsExceeded: errorContentType,
		ErrorNoMatch:               textNoMatch,
		ErrorStatusNoMatch:         404,
		ErrorHeadersNoMatch:        errorContentType,
		PolicyChain:                []policyJSON{{Name: "apicast", Version: "builtin", Configuration: map[string]any{}}},
		ProxyRules:                 make([]ruleJSON, 0, len(g.MappingRules)),
	}
	if g.APIBackend != "" {
		p.APIBackend = &g.APIBackend
	}
	for i, r := range g.MappingRules {
		params, query := catalog.PatternParameters(r.Pattern)
		if query == nil {
			query = map[string]string{}
		}
		p.ProxyRules = append(p.ProxyRules, ruleJSON{
			HTTPMethod:            r.HTTPMethod,
			Pattern:               r.Pattern,
			MetricSystemName:      r.Metric,
			Delta:                 r.Delta,
			Parameters:            params,
			QuerystringParameters: query,
			Last:                  r.Last,
			Position:              i + 1,
		})
	}
	return p
}

func (a *API) configOf(s *catalog.Service, v *configlog.GatewayVersion) configJSON {
	c := contentJSON{serviceJSON: serviceOf(s), Proxy: a.proxyOf(s, &v.Gateway)}
	switch {
	case len(s.Tokens) > 0:
		c.BackendAuthenticationType, c.BackendAuthenticationValue = "service_token", s.Tokens[0]
	case s.ProviderKey != "":
		c.BackendAuthenticationType, c.BackendAuthenticationValue = "provider_key", s.ProviderKey
	}
	return configJSON{Version: v.Version, Environment: v.Environment, Content: c}
}
