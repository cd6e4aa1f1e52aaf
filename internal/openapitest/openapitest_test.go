package openapitest

import (
	"strings"
	"testing"
)

const doc = `{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
 "paths": {"/things/{id}": {"get": {"operationId": "getThing", "responses": {
   "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
   "401": {"$ref": "#/components/responses/Unauthorized"}}}}},
 "components": {
  "schemas": {"Thing": {"type": "object", "additionalProperties": false, "required": ["id", "n"], "properties": {
     "id": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
     "n": {"type": "integer", "minimum": 0, "maximum": 9},
     "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "enum": ["a", "b"]}},
     "note": {"type": "string", "nullable": true},
     "ok": {"type": "boolean"}}}},
  "responses": {"Unauthorized": {"description": "no", "headers": {"WWW-Authenticate": {"required": true, "schema": {"type": "string"}}},
     "content": {"application/json": {"schema": {"type": "object"}}}}}}}`

func TestCheckResponse(t *testing.T) {
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	op := d.Paths["/things/{id}"]["get"]
	none := func(string) string { return "" }
	www := func(h string) string {
		if h == "WWW-Authenticate" {
			return "Bearer"
		}
		return ""
	}
	for _, tc := range []struct {
		name   string
		status int
		ct     string
		header func(string) string
		body   string
		err    string // substring; "" means valid
	}{
		{"valid", 200, "application/json", none, `{"id": "abc", "n": 3, "tags": ["a"], "note": null, "ok": true}`, ""},
		{"charset", 200, "application/json; charset=utf-8", none, `{"id": "abc", "n": 0}`, ""},
		{"undocumented status", 500, "application/json", none, `{}`, "status 500 is not documented"},
		{"content type", 200, "text/plain", none, `{"id": "abc", "n": 3}`, "answered"},
		{"required header", 401, "application/json", none, `{}`, "WWW-Authenticate"},
		{"with header", 401, "application/json", www, `{}`, ""},
		{"not JSON", 200, "application/json", none, `{`, "not JSON"},
		{"missing property", 200, "application/json", none, `{"id": "abc"}`, `required property "n"`},
		{"extra property", 200, "application/json", none, `{"id": "abc", "n": 1, "x": 1}`, `property "x" is not documented`},
		{"wrong type", 200, "application/json", none, `{"id": 1, "n": 1}`, "where a string"},
		{"not integer", 200, "application/json", none, `{"id": "a", "n": 1.5}`, "not an integer"},
		{"below minimum", 200, "application/json", none, `{"id": "a", "n": -1}`, "minimum"},
		{"above maximum", 200, "application/json", none, `{"id": "a", "n": 10}`, "maximum"},
		{"pattern", 200, "application/json", none, `{"id": "A", "n": 1}`, "does not match"},
		{"min length", 200, "application/json", none, `{"id": "", "n": 1}`, "shorter"},
		{"enum", 200, "application/json", none, `{"id": "a", "n": 1, "tags": ["c"]}`, "not one of"},
		{"max items", 200, "application/json", none, `{"id": "a", "n": 1, "tags": ["a", "b", "a"]}`, "more than"},
		{"null not nullable", 200, "application/json", none, `{"id": null, "n": 1}`, "null where"},
		{"boolean", 200, "application/json", none, `{"id": "a", "n": 1, "ok": "yes"}`, "where a boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.CheckResponse(op, tc.status, tc.ct, tc.header, []byte(tc.body))
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
	if got := d.Match("/things/x"); got != "/things/{id}" {
		t.Errorf("Match: %q", got)
	}
	if got := d.Match("/things/x/y"); got != "" {
		t.Errorf("Match of a longer path: %q", got)
	}
}

// TestParseRefusesUncheckedKeywords: a schema keyword Validate does not
// check would be a constraint no test enforces.
func TestParseRefusesUncheckedKeywords(t *testing.T) {
	for _, kw := range []string{`"oneOf": [{"type": "string"}]`, `"minProperties": 1`, `"exclusiveMinimum": true`} {
		bad := strings.Replace(doc, `"n": {"type": "integer",`, `"n": {`+kw+`, "type": "integer",`, 1)
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "not checked") {
			t.Errorf("%s: Parse error %v, want a refusal", kw, err)
		}
	}
}
