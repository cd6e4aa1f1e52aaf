package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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

	// A list of applications of a JSON document is decoded as it is read
	// (see appStream): pre holds the []AppSpec, preProbs their problems.
	pre      reflect.Value
	preProbs []Problem
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

func parseJSONTree(data []byte) (*node, error) { return parseJSON(data, false) }

// appStream is where a JSON document's reader is in the schema, so that it
// decodes each application as soon as it has read it and keeps the
// AppSpec, not its syntax tree: a document of a million applications then
// costs its Document and one application's tree, where the whole tree
// would cost several times the Document (and exceed maxTreeNodes).
type appStream uint8

const (
	inNothing appStream = iota // streaming off, or outside the path below
	inRoot
	inTenants  // the document's tenants list
	inTenant   // one tenant
	inServices // a tenant's services list
	inService  // one service
	inAppList  // a service's applications list: decoded as read
)

// The keys on the way to applications, as the schema names them.
var keyTenants, keyServices, keyApplications = func() (string, string, string) {
	var d Document
	var t TenantSpec
	var s ServiceSpec
	return FieldName(&d, &d.Tenants), FieldName(&t, &t.Services), FieldName(&s, &s.Applications)
}()

func parseJSON(data []byte, stream bool) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	budget := maxTreeNodes
	at := inNothing
	if stream {
		at = inRoot
	}
	n, err := jsonValue(dec, 0, &budget, at, "")
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

// child returns where the value under key of a mapping at is.
func (at appStream) child(key string) appStream {
	switch {
	case at == inRoot && key == keyTenants:
		return inTenants
	case at == inTenant && key == keyServices:
		return inServices
	case at == inService && key == keyApplications:
		return inAppList
	}
	return inNothing
}

// item returns where the items of a list at are.
func (at appStream) item() appStream {
	switch at {
	case inTenants:
		return inTenant
	case inServices:
		return inService
	}
	return inNothing
}

func jsonValue(dec *json.Decoder, depth int, budget *int, at appStream, path string) (*node, error) {
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
			if at == inAppList {
				return jsonApps(dec, depth, budget, path)
			}
			n := &node{kind: nodeSeq}
			for i := 0; dec.More(); i++ {
				ip := ""
				if at != inNothing {
					ip = index(path, i)
				}
				item, err := jsonValue(dec, depth+1, budget, at.item(), ip)
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
				kat, kp := at.child(k), ""
				if kat != inNothing {
					kp = field(path, k)
				}
				v, err := jsonValue(dec, depth+1, budget, kat, kp)
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

// jsonApps reads a list of applications at path (its '[' read), decoding
// each into an AppSpec as soon as it is read; the tree of one application
// is all it holds at a time, and only that counts against the budget.
func jsonApps(dec *json.Decoder, depth int, budget *int, path string) (*node, error) {
	var apps []AppSpec
	d := &decoder{}
	st := schemaOf[AppSpec]()
	for i := 0; dec.More(); i++ {
		left := *budget
		item, err := jsonValue(dec, depth+1, budget, inNothing, "")
		if err != nil {
			return nil, err
		}
		*budget = left
		apps = append(apps, AppSpec{})
		d.object(item, index(path, i), st, reflect.ValueOf(&apps[len(apps)-1]).Elem())
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, err
	}
	return &node{kind: nodeSeq, pre: reflect.ValueOf(apps), preProbs: d.probs}, nil
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

// object fills v, a value of the schema type st, from a mapping node. A key
// names a field by its tag; unknown keys are problems.
func (d *decoder) object(n *node, path string, st *schemaType, v reflect.Value) {
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
		f := st.byName[k]
		if f == nil {
			d.add(p, "unknown field")
			continue
		}
		fv := v.Field(f.index)
		switch f.kind {
		case kindString:
			fv.SetString(d.str(n.vals[i], p))
		case kindBool:
			fv.SetBool(d.boolean(n.vals[i], p))
		case kindInt:
			fv.SetInt(d.integer(n.vals[i], p))
		case kindStrings:
			d.strings(n.vals[i], p, fv)
		case kindInts:
			d.ints(n.vals[i], p, fv)
		case kindList:
			d.list(n.vals[i], p, f.elem, fv)
		case kindStruct:
			if n.vals[i].kind == nodeNull {
				fv.SetZero()
				continue
			}
			b := reflect.New(fv.Type().Elem())
			d.object(n.vals[i], p, f.elem, b.Elem())
			fv.Set(b)
		}
	}
}

// seq returns the items of a sequence node; null is no items.
func (d *decoder) seq(n *node, path string) []*node {
	switch n.kind {
	case nodeNull:
		return nil
	case nodeSeq:
		return n.items
	}
	d.add(path, "expected a list, got %s", describe(n))
	return nil
}

// list appends the items of a sequence node to v, a slice of the schema type
// st. An empty list adds nothing, so that a document equals itself after a
// round trip through the file format, which omits empty lists.
func (d *decoder) list(n *node, path string, st *schemaType, v reflect.Value) {
	if n.pre.IsValid() {
		d.probs = append(d.probs, n.preProbs...)
		switch {
		case n.pre.Len() == 0 || v.Type() != n.pre.Type():
		case v.Len() == 0:
			v.Set(n.pre) // no copy: the list is the document's
		default:
			v.Set(reflect.AppendSlice(v, n.pre))
		}
		return
	}
	items := d.seq(n, path)
	if len(items) == 0 {
		return
	}
	base := v.Len()
	v.Grow(len(items))
	v.SetLen(base + len(items))
	for i, item := range items {
		d.object(item, index(path, i), st, v.Index(base+i))
	}
}

// strings sets v, a []string, to the items of a sequence node: nil when
// there are none.
func (d *decoder) strings(n *node, path string, v reflect.Value) {
	v.SetZero()
	items := d.seq(n, path)
	if len(items) == 0 {
		return
	}
	v.Grow(len(items))
	v.SetLen(len(items))
	for i, item := range items {
		v.Index(i).SetString(d.str(item, index(path, i)))
	}
}

// ints sets v, a []int64, to the items of a sequence node: nil when there
// are none.
func (d *decoder) ints(n *node, path string, v reflect.Value) {
	v.SetZero()
	items := d.seq(n, path)
	if len(items) == 0 {
		return
	}
	v.Grow(len(items))
	v.SetLen(len(items))
	for i, item := range items {
		v.Index(i).SetInt(d.integer(item, index(path, i)))
	}
}
