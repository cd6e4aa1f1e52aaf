package catalog

import (
	"reflect"
	"testing"
)

// TestJSONAppsStreamedAsTree: decoding applications as they are read gives
// the document and the problems, in order and with their paths, that
// decoding the whole syntax tree gives.
func TestJSONAppsStreamedAsTree(t *testing.T) {
	tests := []struct{ name, in string }{
		{"valid", `{"tenants":[{"id":"a","admin_token":"t","services":[{"id":"s","plans":[{"id":"p"}],
			"applications":[{"id":"a1","plan":"p","user_key":"u1"},{"id":"a2","plan":"p","user_key":"u2","keys":["k"]}]},
			{"id":"s2","applications":[]}]}]}`},
		{"problems around and inside applications", `{"tenants":[{"id":"a","services":[{"id":"s",
			"applications":[{"id":"a1","plan":"p","secret":1},{"id":2},"x",null,{"keys":"k"}],"colour":1},
			{"applications":{}}],"admin_token":true},{"services":[{"applications":[{"nope":[1]}]}]}]}`},
		{"applications elsewhere are not streamed", `{"applications":[{"id":1}],"tenants":[{"applications":[{"id":1}]}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			streamed, sprobs, err := parse([]byte(tc.in), FormatJSON)
			if err != nil {
				t.Fatal(err)
			}
			tree, err := parseJSON([]byte(tc.in), false)
			if err != nil {
				t.Fatal(err)
			}
			d := &decoder{}
			whole := &Document{}
			d.object(tree, "", schemaOf[Document](), reflect.ValueOf(whole).Elem())
			if !reflect.DeepEqual(streamed, whole) {
				t.Errorf("document:\nstreamed %+v\n   whole %+v", streamed, whole)
			}
			if !reflect.DeepEqual(sprobs, d.probs) {
				t.Errorf("problems:\nstreamed %q\n   whole %q", sprobs, d.probs)
			}
			if tc.name != "valid" && len(d.probs) == 0 {
				t.Error("the case has no problems: it tests nothing")
			}
		})
	}
}
