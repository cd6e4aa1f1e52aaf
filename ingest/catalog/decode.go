package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The decoder works on a small syntax tree that both YAML and JSON are first
// turned into, so that both formats get the same checks and the same paths in
// their messages, and so that every problem is reported rather than the first
// one (which is all yaml.v3's and encoding/json's strict modes give).

type nodeKind uint8

const (
	nodeNull nodeKind = iota
	nodeScalar
	nodeSeq
	nodeMap
)

type scalarType uint8

const (
	scalarString scalarType = iota
	scalarInt
	scalarFloat
	scalarBool
)

type node struct {
	kind  nodeKind
	typ   scalarType // nodeScalar only
	val   string     // nodeScalar: the text
	ival  int64      // scalarInt: the value
	ierr  bool       // scalarInt: out of int64 range
	typed bool       // a JSON scalar: its type is the writer's, never read as another
	items []*node    // nodeSeq
	keys  []string   // nodeMap, in document order
	vals  []*node    // nodeMap
}

// Bounds of the syntax tree, so that hostile input (deep nesting, YAML alias
// bombs) costs bounded time and memory.
const (
	maxTreeDepth  = 32
	maxTreeNodes  = 4 << 20
	maxAliasNodes = 1 << 16 // nodes reached through YAML aliases
)

var errTooLarge = errors.New("document too large or too deeply nested")

func parseTree(data []byte, format Format) (*node, error) {
	if format == FormatAuto {
		format = sniff(data)
	}
	if format == FormatJSON {
		return parseJSONTree(data)
	}
	return parseYAMLTree(data)
}

func parseYAMLTree(data []byte) (*node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("yaml: %w", trimYAMLErr(err))
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return &node{}, nil
	}
	b := yamlBudget{nodes: maxTreeNodes, alias: maxAliasNodes}
	return yamlToTree(root.Content[0], 0, &b, false)
}

func trimYAMLErr(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

type yamlBudget struct{ nodes, alias int }

func yamlToTree(y *yaml.Node, depth int, budget *yamlBudget, inAlias bool) (*node, error) {
	budget.nodes--
	if inAlias {
		budget.alias--
	}
	if depth > maxTreeDepth || budget.nodes < 0 || budget.alias < 0 {
		return nil, errTooLarge
	}
	switch y.Kind {
	case yaml.AliasNode:
		if y.Alias == nil {
			return &node{}, nil
		}
		return yamlToTree(y.Alias, depth+1, budget, true)
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{}, nil
		}
		return yamlToTree(y.Content[0], depth+1, budget, inAlias)
	case yaml.SequenceNode:
		n := &node{kind: nodeSeq, items: make([]*node, 0, len(y.Content))}
		for _, c := range y.Content {
			item, err := yamlToTree(c, depth+1, budget, inAlias)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, item)
		}
		return n, nil
	case yaml.MappingNode:
		n := &node{kind: nodeMap}
		seen := make(map[string]bool, len(y.Content)/2)
		for i := 0; i+1 < len(y.Content); i += 2 {
			k := y.Content[i]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping key is not a scalar", k.Line)
			}
			if seen[k.Value] {
				return nil, fmt.Errorf("line %d: key %q is repeated", k.Line, k.Value)
			}
			seen[k.Value] = true
			v, err := yamlToTree(y.Content[i+1], depth+1, budget, inAlias)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k.Value)
			n.vals = append(n.vals, v)
		}
		return n, nil
	case yaml.ScalarNode:
		n := &node{kind: nodeScalar, val: y.Value}
		switch y.ShortTag() {
		case "!!null":
			return &node{}, nil
		case "!!int":
			n.typ = scalarInt
			if err := y.Decode(&n.ival); err != nil {
				n.ierr = true
			}
		case "!!float":
			n.typ = scalarFloat
		case "!!bool":
			n.typ = scalarBool
			var b bool
			if err := y.Decode(&b); err == nil && b {
				n.val = "true"
			} else {
				n.val = "false"
			}
		}
		return n, nil
	}
	return &node{}, nil
}

func parseJSONTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	budget := maxTreeNodes
	n, err := jsonValue(dec, 0, &budget)
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("json: empty document")
		}
		return nil, fmt.Errorf("json: %w (at byte %d)", err, dec.InputOffset())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("json: data after the document (at byte %d)", dec.InputOffset())
	}
	return n, nil
}

func jsonValue(dec *json.Decoder, depth int, budget *int) (*node, error) {
	*budget--
	if depth > maxTreeDepth || *budget < 0 {
		return nil, errTooLarge
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &node{}, nil
	case bool:
		return &node{kind: nodeScalar, typ: scalarBool, val: strconv.FormatBool(t), typed: true}, nil
	case string:
		return &node{kind: nodeScalar, typ: scalarString, val: t, typed: true}, nil
	case json.Number:
		s := string(t)
		if strings.ContainsAny(s, ".eE") {
			return &node{kind: nodeScalar, typ: scalarFloat, val: s, typed: true}, nil
		}
		i, err := strconv.ParseInt(s, 10, 64)
		return &node{kind: nodeScalar, typ: scalarInt, val: s, ival: i, ierr: err != nil, typed: true}, nil
	case json.Delim:
		switch t {
		case '[':
			n := &node{kind: nodeSeq}
			for dec.More() {
				item, err := jsonValue(dec, depth+1, budget)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, item)
			}
			_, err := dec.Token() // ']'
			return n, err
		case '{':
			n := &node{kind: nodeMap}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				if seen[k] {
					return nil, fmt.Errorf("key %q is repeated", k)
				}
				seen[k] = true
				v, err := jsonValue(dec, depth+1, budget)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			_, err := dec.Token() // '}'
			return n, err
		}
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// decoder fills Document types from a tree, collecting every problem.
type decoder struct {
	probs []Problem
}

func (d *decoder) add(path, format string, args ...any) {
	d.probs = append(d.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func describe(n *node) string {
	switch n.kind {
	case nodeNull:
		return "null"
	case nodeSeq:
		return "a list"
	case nodeMap:
		return "a mapping"
	}
	switch n.typ {
	case scalarInt:
		return "an integer"
	case scalarFloat:
		return "a number"
	case scalarBool:
		return "a boolean"
	}
	return "a string"
}

// fields calls set for each key of a mapping node; set reports whether it
// knows the key. Unknown keys are problems.
func (d *decoder) fields(n *node, path string, set func(key string, v *node, p string) bool) {
	switch n.kind {
	case nodeNull:
		return
	case nodeMap:
	default:
		d.add(path, "expected a mapping, got %s", describe(n))
		return
	}
	for i, k := range n.keys {
		p := field(path, k)
		if !set(k, n.vals[i], p) {
			d.add(p, "unknown field")
		}
	}
}

// list calls each for every item of a sequence node and returns the count;
// an empty list is nil (so a document equals itself after a round trip
// through the file format, which omits empty lists).
func (d *decoder) list(n *node, path string, each func(i int, v *node, p string)) int {
	switch n.kind {
	case nodeNull:
		return 0
	case nodeSeq:
	default:
		d.add(path, "expected a list, got %s", describe(n))
		return 0
	}
	for i, v := range n.items {
		each(i, v, index(path, i))
	}
	return len(n.items)
}

func (d *decoder) str(n *node, path string) string {
	switch {
	case n.kind == nodeNull:
		return ""
	case n.kind == nodeScalar && n.typ == scalarString:
		return n.val
	case n.kind == nodeScalar && n.typ != scalarBool && !n.typed:
		// In YAML, unquoted numbers are accepted as text: `id:
		// 2555417777820` means the service id "2555417777820", which is
		// what people write. A JSON number is a number: its writer chose
		// the type, and reading 12 as "12" would hide a mistake (a key
		// generated as a number, a field shifted by one).
		return n.val
	}
	d.add(path, "expected a string, got %s", describe(n))
	return ""
}

func (d *decoder) boolean(n *node, path string) bool {
	switch {
	case n.kind == nodeNull:
		return false
	case n.kind == nodeScalar && n.typ == scalarBool:
		return n.val == "true"
	}
	d.add(path, "expected true or false, got %s", describe(n))
	return false
}

func (d *decoder) integer(n *node, path string) int64 {
	switch {
	case n.kind == nodeNull:
		return 0
	case n.kind == nodeScalar && n.typ == scalarInt:
		if n.ierr {
			d.add(path, "integer %s out of range", n.val)
			return 0
		}
		return n.ival
	}
	d.add(path, "expected an integer, got %s", describe(n))
	return 0
}

func (d *decoder) strings(n *node, path string) []string {
	var out []string
	if n.kind == nodeSeq && len(n.items) > 0 {
		out = make([]string, 0, len(n.items))
	}
	d.list(n, path, func(_ int, v *node, p string) { out = append(out, d.str(v, p)) })
	return out
}

func (d *decoder) document(n *node, doc *Document) {
	d.fields(n, "", func(k string, v *node, p string) bool {
		switch k {
		case "tenants":
			d.list(v, p, func(_ int, v *node, p string) {
				doc.Tenants = append(doc.Tenants, TenantSpec{})
				d.tenant(v, p, &doc.Tenants[len(doc.Tenants)-1])
			})
		default:
			return false
		}
		return true
	})
}

func (d *decoder) tenant(n *node, path string, t *TenantSpec) {
	d.fields(n, path, func(k string, v *node, p string) bool {
		switch k {
		case "id":
			t.ID = d.str(v, p)
		case "admin_token":
			t.AdminToken = d.str(v, p)
		case "query_tokens":
			t.QueryTokens = d.strings(v, p)
		case "services":
			d.list(v, p, func(_ int, v *node, p string) {
				t.Services = append(t.Services, ServiceSpec{})
				d.service(v, p, &t.Services[len(t.Services)-1])
			})
		default:
			return false
		}
		return true
	})
}

func (d *decoder) service(n *node, path string, s *ServiceSpec) {
	d.fields(n, path, func(k string, v *node, p string) bool {
		switch k {
		case "id":
			s.ID = d.str(v, p)
		case "tokens":
			s.Tokens = d.strings(v, p)
		case "provider_key":
			s.ProviderKey = d.str(v, p)
		case "default":
			s.Default = d.boolean(v, p)
		case "auth_mode":
			s.AuthMode = d.str(v, p)
		case "referrer_filters_required":
			s.ReferrerFiltersRequired = d.boolean(v, p)
		case "state":
			s.State = d.str(v, p)
		case "metrics":
			d.list(v, p, func(_ int, v *node, p string) {
				s.Metrics = append(s.Metrics, MetricSpec{})
				d.metric(v, p, &s.Metrics[len(s.Metrics)-1])
			})
		case "plans":
			d.list(v, p, func(_ int, v *node, p string) {
				s.Plans = append(s.Plans, PlanSpec{})
				d.plan(v, p, &s.Plans[len(s.Plans)-1])
			})
		case "applications":
			d.list(v, p, func(_ int, v *node, p string) {
				s.Applications = append(s.Applications, AppSpec{})
				d.app(v, p, &s.Applications[len(s.Applications)-1])
			})
		default:
			return false
		}
		return true
	})
}

func (d *decoder) metric(n *node, path string, m *MetricSpec) {
	d.fields(n, path, func(k string, v *node, p string) bool {
		switch k {
		case "name":
			m.Name = d.str(v, p)
		case "parent":
			m.Parent = d.str(v, p)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) plan(n *node, path string, pl *PlanSpec) {
	d.fields(n, path, func(k string, v *node, p string) bool {
		switch k {
		case "id":
			pl.ID = d.str(v, p)
		case "name":
			pl.Name = d.str(v, p)
		case "limits":
			d.list(v, p, func(_ int, v *node, p string) {
				pl.Limits = append(pl.Limits, LimitSpec{})
				d.limit(v, p, &pl.Limits[len(pl.Limits)-1])
			})
		default:
			return false
		}
		return true
	})
}

func (d *decoder) limit(n *node, path string, l *LimitSpec) {
	d.fields(n, path, func(k string, v *node, p string) bool {
		switch k {
		case "metric":
			l.Metric = d.str(v, p)
		case "period":
			l.Period = d.str(v, p)
		case "max":
			l.Max = d.integer(v, p)
		case "consistency":
			l.Consistency = d.str(v, p)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) app(n *node, path string, a *AppSpec) {
	d.fields(n, path, func(k string, v *node, p string) bool {
		switch k {
		case "id":
			a.ID = d.str(v, p)
		case "plan":
			a.Plan = d.str(v, p)
		case "user_key":
			a.UserKey = d.str(v, p)
		case "keys":
			a.Keys = d.strings(v, p)
		case "referrer_filters":
			a.ReferrerFilters = d.strings(v, p)
		case "redirect_url":
			a.RedirectURL = d.str(v, p)
		case "state":
			a.State = d.str(v, p)
		default:
			return false
		}
		return true
	})
}
