package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Document is the declarative configuration: the YAML or JSON file of
// docs/configuration.md, and the form the admin API and the config log speak.
// A Document is plain data; Validate checks it and Build indexes it into a
// Snapshot. Field order here is the order of the exported file.
type Document struct {
	Tenants []TenantSpec `yaml:"tenants" json:"tenants"`
}

// TenantSpec is one tenant (API provider) of a Document.
type TenantSpec struct {
	ID          string   `yaml:"id" json:"id"`
	AdminToken  string   `yaml:"admin_token" json:"admin_token"`
	QueryTokens []string `yaml:"query_tokens,omitempty" json:"query_tokens,omitempty"`
	// WebhookURL, if set, receives the tenant's utilization alerts as JSON
	// POSTs signed with WebhookSecret (see ingest/alerts).
	WebhookURL    string        `yaml:"webhook_url,omitempty" json:"webhook_url,omitempty"`
	WebhookSecret string        `yaml:"webhook_secret,omitempty" json:"webhook_secret,omitempty"`
	Services      []ServiceSpec `yaml:"services,omitempty" json:"services,omitempty"`
}

// ServiceSpec is one service of a tenant. Empty AuthMode means user_key and
// empty State means active.
type ServiceSpec struct {
	ID                      string       `yaml:"id" json:"id"`
	Tokens                  []string     `yaml:"tokens,omitempty" json:"tokens,omitempty"`
	ProviderKey             string       `yaml:"provider_key,omitempty" json:"provider_key,omitempty"`
	Default                 bool         `yaml:"default,omitempty" json:"default,omitempty"`
	AuthMode                string       `yaml:"auth_mode,omitempty" json:"auth_mode,omitempty"`
	ReferrerFiltersRequired bool         `yaml:"referrer_filters_required,omitempty" json:"referrer_filters_required,omitempty"`
	State                   string       `yaml:"state,omitempty" json:"state,omitempty"`
	Metrics                 []MetricSpec `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	Plans                   []PlanSpec   `yaml:"plans,omitempty" json:"plans,omitempty"`
	Applications            []AppSpec    `yaml:"applications,omitempty" json:"applications,omitempty"`
	// Gateway is what an API gateway (APIcast) needs to front the service:
	// its staging configuration, and production's when a file sets it (see
	// GatewaySpec). Nil means 3scale's defaults for a new service.
	Gateway *GatewaySpec `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// AlertThresholds are the percentages of a limit whose crossing raises a
	// utilization alert; empty means DefaultAlertThresholds.
	AlertThresholds []int64 `yaml:"alert_thresholds,omitempty" json:"alert_thresholds,omitempty"`
}

// MetricSpec is one metric of a service, named by Name. Its position in the
// service's list is the order of listings only: the limiter knows it by a
// limiter.MetricID given by name (see KeyRegistry), which adding, deleting or
// reordering other metrics never changes.
type MetricSpec struct {
	Name   string `yaml:"name" json:"name"`
	Parent string `yaml:"parent,omitempty" json:"parent,omitempty"`
}

// PlanSpec is one application plan of a service.
type PlanSpec struct {
	ID     string      `yaml:"id" json:"id"`
	Name   string      `yaml:"name,omitempty" json:"name,omitempty"`
	Limits []LimitSpec `yaml:"limits,omitempty" json:"limits,omitempty"`
}

// LimitSpec is one usage limit of a plan: at most Max units of Metric per
// Period (minute, hour, day, week, month, year, eternity or sliding:<duration>).
// Consistency says how the API nodes of a cluster decide it: exact (empty
// means exact: the application's owner decides every call) or local (every
// node decides from its own projection of the usage log). Scope says whose
// usage counts toward it when regions run side by side: global (empty means
// global: every region's) or region (only the usage admitted in the deciding
// region). Strict, for a global limit with a calendar period, makes each
// region admit at most its share of max, so that the regions' admissions
// never add up past it (see ingest/region).
type LimitSpec struct {
	Metric      string `yaml:"metric" json:"metric"`
	Period      string `yaml:"period" json:"period"`
	Max         int64  `yaml:"max" json:"max"`
	Consistency string `yaml:"consistency,omitempty" json:"consistency,omitempty"`
	Scope       string `yaml:"scope,omitempty" json:"scope,omitempty"`
	Strict      bool   `yaml:"strict,omitempty" json:"strict,omitempty"`
}

// Limit consistencies.
const (
	ConsistencyExact = "exact"
	ConsistencyLocal = "local"
)

// Limit scopes.
const (
	ScopeGlobal = "global"
	ScopeRegion = "region"
)

// AppSpec is one application of a service. Empty State means active.
type AppSpec struct {
	ID              string   `yaml:"id" json:"id"`
	Plan            string   `yaml:"plan" json:"plan"`
	UserKey         string   `yaml:"user_key,omitempty" json:"user_key,omitempty"`
	Keys            []string `yaml:"keys,omitempty" json:"keys,omitempty"`
	ReferrerFilters []string `yaml:"referrer_filters,omitempty" json:"referrer_filters,omitempty"`
	RedirectURL     string   `yaml:"redirect_url,omitempty" json:"redirect_url,omitempty"`
	State           string   `yaml:"state,omitempty" json:"state,omitempty"`
}

// MarshalYAML writes a limit on one line, `{metric: hits, period: minute,
// max: 100}`, as docs/configuration.md shows it.
func (l LimitSpec) MarshalYAML() (any, error) {
	type plain LimitSpec // the same fields and tags, without this method
	return flowYAML(plain(l))
}

// flowYAML encodes v as a one-line YAML mapping.
func flowYAML(v any) (any, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return &n, nil
}

// Format is the syntax of a configuration file.
type Format uint8

const (
	// FormatAuto sniffs the syntax: JSON when the first non-blank byte is '{',
	// YAML otherwise.
	FormatAuto Format = iota
	FormatYAML
	FormatJSON
)

// String returns "yaml", "json" or "auto".
func (f Format) String() string {
	switch f {
	case FormatYAML:
		return "yaml"
	case FormatJSON:
		return "json"
	}
	return "auto"
}

// FormatOf returns the format a file name implies: .json is JSON, .yaml and
// .yml are YAML, anything else is FormatAuto.
func FormatOf(path string) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return FormatJSON
	case ".yaml", ".yml":
		return FormatYAML
	}
	return FormatAuto
}

// Load reads, parses and validates the configuration file at path. The
// format comes from the file's extension (or is sniffed). On any problem it
// returns a *ValidationError listing every problem found, shape and
// semantic ones together, each with its path.
func Load(path string) (*Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: read config: %w", err)
	}
	doc, probs, err := parse(data, FormatOf(path))
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", path, err)
	}
	probs = append(probs, doc.validate()...)
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	return doc, nil
}

// Parse decodes a document in the given format without validating its
// contents. Syntax errors are returned as they are; unknown fields and values
// of the wrong type are returned together as a *ValidationError.
func Parse(data []byte, format Format) (*Document, error) {
	doc, probs, err := parse(data, format)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	return doc, nil
}

// Decode decodes one entity of the document from JSON or YAML into v, which
// must be one of *Document, *TenantSpec, *ServiceSpec, *MetricSpec,
// *PlanSpec, *LimitSpec, *AppSpec, *GatewaySpec, *MappingRuleSpec or
// *[]string. Unknown fields and wrong
// types are reported as a *ValidationError with paths relative to v. The
// admin API decodes request bodies with it.
func Decode(data []byte, format Format, v any) error {
	n, err := parseTree(data, format)
	if err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("catalog: cannot decode into %T", v)
	}
	d := &decoder{}
	switch t := rv.Type().Elem(); {
	case schema[t] != nil:
		d.object(n, "", schema[t], rv.Elem())
	case t == reflect.TypeFor[[]string]():
		d.strings(n, "", rv.Elem())
	default:
		return fmt.Errorf("catalog: cannot decode into %T", v)
	}
	if len(d.probs) > 0 {
		return &ValidationError{Problems: d.probs}
	}
	return nil
}

func parse(data []byte, format Format) (*Document, []Problem, error) {
	if format == FormatAuto {
		format = sniff(data)
	}
	var n *node
	var err error
	if format == FormatJSON {
		n, err = parseJSON(data, true) // applications decoded as read
	} else {
		n, err = parseTree(data, format)
	}
	if err != nil {
		return nil, nil, err
	}
	d := &decoder{}
	doc := &Document{}
	d.object(n, "", schemaOf[Document](), reflect.ValueOf(doc).Elem())
	return doc, d.probs, nil
}

func sniff(data []byte) Format {
	if t := bytes.TrimLeft(data, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '{' {
		return FormatJSON
	}
	return FormatYAML
}

// WriteYAML writes d in the configuration file's YAML form. Load of the
// output gives a Document equal to d.
func (d *Document) WriteYAML(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("catalog: encode yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("catalog: encode yaml: %w", err)
	}
	return nil
}

// EncodeYAML returns d in YAML, as WriteYAML writes it.
func (d *Document) EncodeYAML() ([]byte, error) {
	var b bytes.Buffer
	if err := d.WriteYAML(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteJSON writes d as indented JSON, the configuration file's JSON form.
func (d *Document) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("catalog: encode json: %w", err)
	}
	return nil
}

// Write writes d in format f (FormatAuto means YAML).
func (d *Document) Write(w io.Writer, f Format) error {
	if f == FormatJSON {
		return d.WriteJSON(w)
	}
	return d.WriteYAML(w)
}

// Clone returns a deep copy of d, so that a change to the copy never shows
// through a Document someone else holds.
func (d *Document) Clone() *Document {
	if d == nil {
		return &Document{}
	}
	c := cloneSpec(*d)
	return &c
}

// Tenant returns the tenant with the given id, or nil.
func (d *Document) Tenant(id string) *TenantSpec {
	return byID(d.Tenants, id, func(x *TenantSpec) string { return x.ID })
}

// Clone returns a deep copy of t.
func (t TenantSpec) Clone() TenantSpec {
	return cloneSpec(t)
}

// Service returns the tenant's service with the given id, or nil.
func (t *TenantSpec) Service(id string) *ServiceSpec {
	return byID(t.Services, id, func(x *ServiceSpec) string { return x.ID })
}

// Clone returns a deep copy of s.
func (s ServiceSpec) Clone() ServiceSpec {
	return cloneSpec(s)
}

// Metric returns the index of the named metric in s.Metrics, or -1.
func (s *ServiceSpec) Metric(name string) int {
	for i := range s.Metrics {
		if s.Metrics[i].Name == name {
			return i
		}
	}
	return -1
}

// Plan returns the plan with the given id, or nil.
func (s *ServiceSpec) Plan(id string) *PlanSpec {
	return byID(s.Plans, id, func(x *PlanSpec) string { return x.ID })
}

// App returns the application with the given id, or nil.
func (s *ServiceSpec) App(id string) *AppSpec {
	return byID(s.Applications, id, func(x *AppSpec) string { return x.ID })
}

// Clone returns a deep copy of p.
func (p PlanSpec) Clone() PlanSpec {
	return cloneSpec(p)
}

// Clone returns a deep copy of a.
func (a AppSpec) Clone() AppSpec {
	return cloneSpec(a)
}

// byID returns the item of list whose id (as idOf reads it) is id, or nil.
func byID[T any](list []T, id string, idOf func(*T) string) *T {
	for i := range list {
		if idOf(&list[i]) == id {
			return &list[i]
		}
	}
	return nil
}
