// Package openapitest lets tests hold an API to its OpenAPI 3.0 document:
// the operations it lists, the responses each may give, and a validator of
// JSON values against the document's schemas.
//
// The validator knows the schema keywords the repository's documents use
// (type, nullable, properties, required, additionalProperties: false, items,
// enum, minItems, maxItems, minLength, maxLength, minimum, maximum, pattern,
// $ref to #/components/...) and refuses a document using any other: a
// keyword it would silently skip is a check that cannot fail. CI runs
// schemathesis against the same documents over HTTP (.ci/openapi.sh); these
// helpers give the package tests the same contract without Python.
package openapitest

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Doc is a parsed OpenAPI document.
type Doc struct {
	root  map[string]any
	Paths map[string]map[string]*Operation // path template -> lower-case method -> operation
}

// Operation is one documented method of one path.
type Operation struct {
	Path, Method, ID string
	// Responses maps a status ("200", "404") to its response object, with
	// $refs to #/components/responses resolved.
	Responses map[string]map[string]any
	// Parameters are the operation's parameter objects.
	Parameters []map[string]any
}

var methods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// known are the schema keywords Validate checks; others are annotations.
var (
	checked     = []string{"type", "nullable", "properties", "required", "additionalProperties", "items", "enum", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "pattern", "$ref"}
	annotations = []string{"description", "example", "format"}
)

// Parse reads an OpenAPI 3.0 document and checks that every schema in it
// uses only keywords Validate understands.
func Parse(data []byte) (*Doc, error) {
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("openapitest: %w", err)
	}
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		return nil, fmt.Errorf("openapitest: openapi %q, want 3.0.x", root["openapi"])
	}
	d := &Doc{root: root, Paths: map[string]map[string]*Operation{}}
	paths, _ := root["paths"].(map[string]any)
	for p, item := range paths {
		ops := map[string]*Operation{}
		for m, raw := range item.(map[string]any) {
			if !slices.Contains(methods, m) {
				return nil, fmt.Errorf("openapitest: %s: unexpected key %q", p, m)
			}
			o := raw.(map[string]any)
			op := &Operation{Path: p, Method: m, Responses: map[string]map[string]any{}}
			op.ID, _ = o["operationId"].(string)
			for status, r := range o["responses"].(map[string]any) {
				rr, err := d.resolve(r.(map[string]any))
				if err != nil {
					return nil, err
				}
				op.Responses[status] = rr
			}
			if ps, ok := o["parameters"].([]any); ok {
				for _, pr := range ps {
					op.Parameters = append(op.Parameters, pr.(map[string]any))
				}
			}
			ops[m] = op
		}
		d.Paths[p] = ops
	}
	if err := d.checkKeywords(root, "", false); err != nil {
		return nil, err
	}
	return d, nil
}

// checkKeywords walks the document and refuses schema keywords Validate
// does not know.
func (d *Doc) checkKeywords(v any, at string, schema bool) error {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if schema && !slices.Contains(checked, k) && !slices.Contains(annotations, k) {
				return fmt.Errorf("openapitest: %s: schema keyword %q is not checked by Validate", at, k)
			}
			sub := false
			switch {
			case k == "schema" && !schema, k == "items" && schema, k == "additionalProperties" && schema:
				sub = true
			case !schema && strings.HasSuffix(at, "/components/schemas"):
				sub = true
			}
			if schema && k == "properties" {
				for pk, pc := range c.(map[string]any) {
					if err := d.checkKeywords(pc, at+"/properties/"+pk, true); err != nil {
						return err
					}
				}
				continue
			}
			if schema && (k == "enum" || k == "example") {
				continue
			}
			if err := d.checkKeywords(c, at+"/"+k, sub); err != nil {
				return err
			}
		}
	case []any:
		for i, c := range v {
			if err := d.checkKeywords(c, at+"/"+strconv.Itoa(i), schema); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve follows a local $ref.
func (d *Doc) resolve(o map[string]any) (map[string]any, error) {
	for range 10 {
		ref, ok := o["$ref"].(string)
		if !ok {
			return o, nil
		}
		var cur any = d.root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("openapitest: bad $ref %q", ref)
			}
			cur = m[part]
		}
		next, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("openapitest: $ref %q resolves to nothing", ref)
		}
		o = next
	}
	return nil, fmt.Errorf("openapitest: $ref loop")
}

// Operations lists every operation, sorted by path and method.
func (d *Doc) Operations() []*Operation {
	var out []*Operation
	for _, ops := range d.Paths {
		for _, op := range ops {
			out = append(out, op)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Methods returns the upper-case methods documented for a path template.
func (d *Doc) Methods(path string) []string {
	var out []string
	for m := range d.Paths[path] {
		out = append(out, strings.ToUpper(m))
	}
	sort.Strings(out)
	return out
}

// Match returns the path template a concrete path (segments already
// unescaped, or free of '/') matches, or "".
func (d *Doc) Match(path string) string {
	segs := strings.Split(path, "/")
	for p := range d.Paths {
		ts := strings.Split(p, "/")
		if len(ts) != len(segs) {
			continue
		}
		ok := true
		for i := range ts {
			if !(strings.HasPrefix(ts[i], "{") && strings.HasSuffix(ts[i], "}") && segs[i] != "") && ts[i] != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	return ""
}

// CheckResponse checks an answer of op: its status is documented, its
// content type is one the status lists, its documented required headers are
// present (header returns a header's value), and a JSON body matches the
// schema of its content type.
func (d *Doc) CheckResponse(op *Operation, status int, contentType string, header func(string) string, body []byte) error {
	r, ok := op.Responses[strconv.Itoa(status)]
	if !ok {
		return fmt.Errorf("%s %s: status %d is not documented", strings.ToUpper(op.Method), op.Path, status)
	}
	if hs, ok := r["headers"].(map[string]any); ok {
		for name, h := range hs {
			if req, _ := h.(map[string]any)["required"].(bool); req && header(name) == "" {
				return fmt.Errorf("%s %s: %d without the required header %s", strings.ToUpper(op.Method), op.Path, status, name)
			}
		}
	}
	content, _ := r["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) != 0 {
			return fmt.Errorf("%s %s: %d has a body, documented without one", strings.ToUpper(op.Method), op.Path, status)
		}
		return nil
	}
	mt := strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0])
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s: %d answered %q, documented %v", strings.ToUpper(op.Method), op.Path, status, contentType, keys(content))
	}
	if mt != "application/json" {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s %s: %d body is not JSON: %v", strings.ToUpper(op.Method), op.Path, status, err)
	}
	if err := d.Validate(media["schema"], v, "body"); err != nil {
		return fmt.Errorf("%s %s: %d: %w", strings.ToUpper(op.Method), op.Path, status, err)
	}
	return nil
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Validate checks a decoded JSON value (from encoding/json into any)
// against a schema object of the document.
func (d *Doc) Validate(schema any, v any, at string) error {
	s, ok := schema.(map[string]any)
	if !ok {
		return nil // no schema: anything
	}
	s, err := d.resolve(s)
	if err != nil {
		return err
	}
	if v == nil {
		if n, _ := s["nullable"].(bool); n {
			return nil
		}
		if _, typed := s["type"]; typed {
			return fmt.Errorf("%s: null where %v is documented", at, s["type"])
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return e == v }) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	switch t, _ := s["type"].(string); t {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T where an object is documented", at, v)
		}
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := m[r.(string)]; !ok {
					return fmt.Errorf("%s: required property %q missing", at, r)
				}
			}
		}
		for k, c := range m {
			ps, ok := props[k]
			if !ok {
				if ap, isBool := s["additionalProperties"].(bool); isBool && !ap {
					return fmt.Errorf("%s: property %q is not documented", at, k)
				}
				continue
			}
			if err := d.Validate(ps, c, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T where an array is documented", at, v)
		}
		if n, ok := s["minItems"].(float64); ok && float64(len(a)) < n {
			return fmt.Errorf("%s: %d items, fewer than %v", at, len(a), n)
		}
		if n, ok := s["maxItems"].(float64); ok && float64(len(a)) > n {
			return fmt.Errorf("%s: %d items, more than %v", at, len(a), n)
		}
		for i, c := range a {
			if err := d.Validate(s["items"], c, at+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T where a string is documented", at, v)
		}
		if n, ok := s["minLength"].(float64); ok && float64(len([]rune(str))) < n {
			return fmt.Errorf("%s: shorter than %v", at, n)
		}
		if n, ok := s["maxLength"].(float64); ok && float64(len([]rune(str))) > n {
			return fmt.Errorf("%s: longer than %v", at, n)
		}
		if p, ok := s["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				return fmt.Errorf("%s: pattern %q: %w", at, p, err)
			}
			if !re.MatchString(str) {
				return fmt.Errorf("%s: %q does not match %s", at, str, p)
			}
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: %T where a %s is documented", at, v, t)
		}
		if t == "integer" && f != math.Trunc(f) {
			return fmt.Errorf("%s: %v is not an integer", at, f)
		}
		if n, ok := s["minimum"].(float64); ok && f < n {
			return fmt.Errorf("%s: %v below the minimum %v", at, f, n)
		}
		if n, ok := s["maximum"].(float64); ok && f > n {
			return fmt.Errorf("%s: %v above the maximum %v", at, f, n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T where a boolean is documented", at, v)
		}
	case "":
	default:
		return fmt.Errorf("%s: unknown type %q in the document", at, t)
	}
	return nil
}
